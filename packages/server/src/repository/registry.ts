import { LoadCancelledError, ModelLoadError } from '../model/errors.js';
import { cycleText } from '../model/model-calls.js';
import type { ServedModel } from '../model/served-model.js';
import { servedVersions } from '../model/versions.js';
import { serverLog } from '../log.js';
import { untilAborted } from './abort.js';
import type { LoadOverride } from './load-override.js';

/** Triton's model states. */
export type ModelState = 'READY' | 'UNAVAILABLE' | 'LOADING' | 'UNLOADING';

export interface ModelEntry {
  readonly name: string;
  state: ModelState;
  /** Why the model is not READY (a load error, "unloaded"); empty when it is. */
  reason: string;
  /** The instance new requests go to; undefined unless READY (or LOADING a replacement). */
  model: ServedModel | undefined;
  /**
   * The versions the repository index lists for it while it has no instance: those it last served,
   * or those a failed load tried (a ModelLoadError's `versions`); absent: version 1.
   */
  versions?: readonly string[];
}

/** Every version instance of a served model (one, unless it serves several: triton-repository.ts). */
const instancesOf = servedVersions;

/**
 * Builds a model by name (from a repository folder, a file); throws with the reason it cannot. Once
 * `signal` aborts (the model was unloaded meanwhile), it should stop what it started and reject.
 */
export interface ModelLoader {
  (
    name: string,
    signal?: AbortSignal,
    override?: LoadOverride,
    /** Loads the models a model calls, before its workers start (its context() may call them). */
    loadDependencies?: (names: readonly string[]) => Promise<void>,
  ): Promise<ServedModel>;
  /** Whether `name` exists to be loaded at all: a name that does not never gets an entry (or a metrics label). */
  has?(name: string): boolean;
  /** Every name there is to load (a repository's folders), for the index to list those never loaded. */
  list?(): string[];
}

/** Tells metrics and statistics which instances exist. */
export interface ModelObserver {
  track(model: ServedModel): void;
  untrack(model: ServedModel): void;
}

/**
 * The models a server has, each in a state. Loading builds a new instance
 * and swaps it in only once it is ready: requests already accepted finish on
 * the old instance, which then drains and stops, and new requests go to the
 * new one, so a reload drops nothing. Unloading refuses new requests and
 * drains the accepted ones.
 */
export class ModelRegistry {
  readonly #entries = new Map<string, ModelEntry>();
  readonly #loader: ModelLoader | undefined;
  readonly #observer: ModelObserver | undefined;
  /** One load or unload at a time per model: a second waits for the first. */
  readonly #busy = new Map<string, Promise<unknown>>();
  /** The load running now, per model: an unload aborts it rather than queue behind it. */
  readonly #loading = new Map<string, AbortController>();
  /** Unloads asked for, per model: a load queued before one of them is cancelled when its turn comes. */
  readonly #unloads = new Map<string, number>();
  /** Told of every state change (the gRPC health service follows READY through them). */
  readonly #listeners = new Set<(entry: ModelEntry) => void>();
  /**
   * Models loaded while a model they call (`dependencies`: an ensemble's steps, a JS model's
   * `calls`) is not READY: UNAVAILABLE with that reason, and READY again as soon as it is.
   */
  readonly #waiting = new Map<string, ServedModel>();
  /** Loads started because a model calls them: a second model calling the same one waits for it, never loads it twice. */
  readonly #dependencyLoads = new Map<string, Promise<void>>();

  constructor(loader?: ModelLoader, observer?: ModelObserver) {
    this.#loader = loader;
    this.#observer = observer;
  }

  /** A registry of fixed, already-built models (no repository to load from). */
  static of(models: readonly ServedModel[], observer?: ModelObserver): ModelRegistry {
    const registry = new ModelRegistry(undefined, observer);
    for (const model of models) registry.#set(model.name, 'READY', '', model);
    return registry;
  }

  get canLoad(): boolean {
    return this.#loader !== undefined;
  }

  /** The names the loader could load (a repository's folders), loaded or not. */
  loadable(): string[] {
    return this.#loader?.list?.() ?? [];
  }

  get(name: string): ModelEntry | undefined {
    return this.#entries.get(name);
  }

  entries(): ModelEntry[] {
    return [...this.#entries.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  /**
   * Every loaded instance, for warming up and draining at shutdown: the READY ones, and those waiting
   * for a model they call to be READY again.
   */
  ready(): ServedModel[] {
    return [
      ...this.entries().flatMap((entry) =>
        entry.state === 'READY' && entry.model !== undefined ? [...instancesOf(entry.model)] : [],
      ),
      ...[...this.#waiting.values()].flatMap((model) => [...instancesOf(model)]),
    ];
  }

  /** Registers a name that could not be loaded, with the reason. */
  fail(name: string, reason: string): void {
    this.#set(name, 'UNAVAILABLE', reason, undefined);
  }

  /**
   * Loads (or reloads) `name`; rejects with the reason when it cannot, leaving a READY old instance
   * serving. An unload asked for meanwhile cancels it (ERR_LOAD_CANCELLED) and stops what it built.
   * `override`: Triton's load parameters (a config, the model's files), see load-override.ts.
   */
  load(name: string, override?: LoadOverride): Promise<void> {
    const unloads = this.#unloads.get(name) ?? 0;
    return this.#serially(name, async () => {
      const loader = this.#loader;
      if (loader === undefined) throw new Error('This server has no model repository to load from');
      if ((this.#unloads.get(name) ?? 0) !== unloads)
        throw new LoadCancelledError(`The load of \`${name}\` was cancelled: the model was unloaded before it started`);
      const entry = this.#entries.get(name);
      // A model given by its files (a load override) need not be in the repository, as in Triton.
      if (entry === undefined && override?.files === undefined && loader.has !== undefined && !loader.has(name))
        throw new Error(`No model \`${name}\` in the repository`);
      const old = entry?.model ?? this.#waiting.get(name);
      if (entry === undefined || entry.model === undefined) this.#set(name, 'LOADING', '', undefined);
      const controller = new AbortController();
      this.#loading.set(name, controller);
      let fresh: ServedModel | undefined;
      try {
        const building = loader(name, controller.signal, override, (deps) => this.#loadDependencies(deps));
        // Built after the load was given up: nobody will serve or stop it but this.
        building.then(
          (late) => {
            if (!controller.signal.aborted) return;
            for (const m of instancesOf(late)) m.batcher.destroy(controller.signal.reason);
          },
          () => {},
        );
        fresh = await untilAborted(building, controller.signal);
        // As Triton loads an ensemble's steps with it (the loader did for models whose context()
        // may call them; this is for any other).
        await untilAborted(this.#loadDependencies(fresh.dependencies ?? []), controller.signal);
        // After them: a cycle through a model loaded just now is a cycle too.
        this.#refuseCycle(name, fresh.dependencies);
        await untilAborted(Promise.all(instancesOf(fresh).map((m) => m.batcher.ready())), controller.signal);
      } catch (error) {
        if (fresh !== undefined) for (const m of instancesOf(fresh)) m.batcher.destroy(error);
        const reason = (error as Error)?.message ?? String(error);
        if (old === undefined)
          this.#set(
            name,
            'UNAVAILABLE',
            reason,
            undefined,
            (error as { versions?: readonly string[] } | null)?.versions,
          );
        if (old === undefined) serverLog.error('registry', `failed to load '${name}': ${reason}`);
        else serverLog.warning('registry', `failed to reload '${name}', the loaded version keeps serving: ${reason}`);
        throw error;
      } finally {
        this.#loading.delete(name);
      }
      for (const m of instancesOf(fresh)) this.#observer?.track(m);
      this.#install(name, fresh);
      const installed = this.#entries.get(name) as ModelEntry;
      serverLog.info(
        'registry',
        `successfully loaded '${name}' version ${instancesOf(fresh)
          .map((m) => m.version)
          .join(', ')}${installed.state === 'READY' ? '' : `, waiting: ${installed.reason}`}`,
      );
      if (old !== undefined) await this.#retire(old);
      // Loaded, but not serving: as Triton fails the load of an ensemble whose steps do not load, the
      // load answers why; the instance stays, and is READY as soon as the models it calls are.
      if (installed.state !== 'READY')
        throw new ModelLoadError(`\`${name}\` cannot serve until the models it calls can: ${installed.reason}`);
    });
  }

  /** Refuses new requests for `name`, answers the accepted ones, then stops its workers; cancels a pending load. */
  unload(name: string): Promise<void> {
    if (this.#entries.has(name)) {
      this.#unloads.set(name, (this.#unloads.get(name) ?? 0) + 1);
      this.#loading.get(name)?.abort(new LoadCancelledError(`The load of \`${name}\` was cancelled by an unload`));
    }
    return this.#serially(name, async () => {
      const entry = this.#entries.get(name);
      if (entry === undefined) throw new Error(`Unknown model \`${name}\``);
      const old = entry.model ?? this.#waiting.get(name);
      this.#waiting.delete(name);
      this.#set(name, 'UNLOADING', '', undefined);
      if (old !== undefined) await this.#retire(old);
      this.#set(name, 'UNAVAILABLE', 'unloaded', undefined);
      serverLog.info('registry', `successfully unloaded '${name}'`);
    });
  }

  async #retire(model: ServedModel): Promise<void> {
    await Promise.all(
      instancesOf(model).map(async (m) => {
        // Accepted requests sit in the old batcher's queue: send them now rather than after a window.
        m.batcher.configure({ maxDelay: 0 });
        await m.batcher.close();
        this.#observer?.untrack(m);
      }),
    );
  }

  /**
   * Loads the models in `names` that were never loaded, once each however many models call them; a
   * failure leaves the caller UNAVAILABLE with the reason (#install) rather than failing its load.
   */
  async #loadDependencies(names: readonly string[]): Promise<void> {
    const loader = this.#loader;
    await Promise.all(
      names.map((dep) => {
        const pending = this.#dependencyLoads.get(dep);
        if (pending !== undefined) return pending;
        if (this.#entries.has(dep) || loader?.has?.(dep) === false) return undefined;
        const loading = this.load(dep).catch(() => {});
        this.#dependencyLoads.set(dep, loading);
        void loading.then(() => this.#dependencyLoads.delete(dep));
        return loading;
      }),
    );
  }

  /**
   * Serves `model` under `name`: READY when every model it calls is, else waiting for them,
   * UNAVAILABLE with the reason (the first that is not READY).
   */
  #install(name: string, model: ServedModel): void {
    const blocked = (model.dependencies ?? []).find((dep) => this.#entries.get(dep)?.state !== 'READY');
    if (blocked === undefined) {
      this.#waiting.delete(name);
      this.#set(name, 'READY', '', model);
      return;
    }
    const dep = this.#entries.get(blocked);
    // One level of why: a model that itself waits for others says so, and its own entry says for which.
    const why =
      dep === undefined
        ? 'is not loaded'
        : this.#waiting.has(blocked)
          ? 'is waiting for the models it calls'
          : `is ${dep.state}${dep.reason === '' ? '' : ` (${dep.reason})`}`;
    const reason = `\`${blocked}\`, which it calls, ${why}`;
    const entry = this.#entries.get(name);
    this.#waiting.set(name, model);
    // Unchanged: nothing to announce (two models waiting on each other would otherwise echo forever).
    if (entry?.state === 'UNAVAILABLE' && entry.reason === reason && entry.model === undefined) return;
    this.#set(name, 'UNAVAILABLE', reason, undefined);
  }

  /** After `name` changed: the models that call it follow (READY only while it is). */
  #follow(name: string): void {
    for (const entry of this.#entries.values()) {
      const model = entry.model ?? this.#waiting.get(entry.name);
      if (model === undefined || !(model.dependencies ?? []).includes(name)) continue;
      if (entry.state !== 'READY' && !this.#waiting.has(entry.name)) continue;
      const ready = (model.dependencies ?? []).every((dep) => this.#entries.get(dep)?.state === 'READY');
      // Already as it should be: no change to announce.
      if (ready && entry.state === 'READY') continue;
      this.#install(entry.name, model);
    }
  }

  /**
   * Refuses a model whose calls lead back to it (A calls B calls A would wait on itself): through
   * the models loaded now, with `dependencies` as `name`'s.
   */
  #refuseCycle(name: string, dependencies: readonly string[] | undefined): void {
    const callsOf = (model: string): readonly string[] =>
      model === name
        ? (dependencies ?? [])
        : ((this.#entries.get(model)?.model ?? this.#waiting.get(model))?.dependencies ?? []);
    const path: string[] = [];
    // Models whose calls were all followed without a cycle: each is visited once, not once per path to it.
    const done = new Set<string>();
    const visit = (model: string): string[] | undefined => {
      if (path.includes(model)) return [...path.slice(path.indexOf(model)), model];
      if (done.has(model)) return undefined;
      path.push(model);
      for (const next of callsOf(model)) {
        const cycle = visit(next);
        if (cycle !== undefined) return cycle;
      }
      path.pop();
      done.add(model);
      return undefined;
    };
    const cycle = visit(name);
    if (cycle !== undefined)
      throw new ModelLoadError(`Model call cycle: ${cycleText(cycle.slice(0, -1), cycle.at(-1) as string)}`);
  }

  /** Calls `listener` after every change of a model's state (synchronously); returns what stops it. */
  onChange(listener: (entry: ModelEntry) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #set(
    name: string,
    state: ModelState,
    reason: string,
    model: ServedModel | undefined,
    versions?: readonly string[],
  ): void {
    let entry = this.#entries.get(name);
    if (entry === undefined) {
      entry = { name, state, reason, model };
      this.#entries.set(name, entry);
    } else Object.assign(entry, { state, reason, model });
    if (model !== undefined) entry.versions = instancesOf(model).map((m) => m.version);
    else if (versions !== undefined) entry.versions = versions;
    for (const listener of this.#listeners) listener(entry);
    this.#follow(name);
  }

  #serially(name: string, work: () => Promise<void>): Promise<void> {
    const before = this.#busy.get(name) ?? Promise.resolve();
    const next = before.then(work, work);
    const settled = next.catch(() => {});
    this.#busy.set(name, settled);
    void settled.then(() => {
      if (this.#busy.get(name) === settled) this.#busy.delete(name);
    });
    return next;
  }
}
