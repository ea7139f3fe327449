import type { ServedModel } from './onnx-model.js';

/** Triton's model states. */
export type ModelState = 'READY' | 'UNAVAILABLE' | 'LOADING' | 'UNLOADING';

export interface ModelEntry {
  readonly name: string;
  state: ModelState;
  /** Why the model is not READY (a load error, "unloaded"); empty when it is. */
  reason: string;
  /** The instance new requests go to; undefined unless READY (or LOADING a replacement). */
  model: ServedModel | undefined;
}

/** Builds a model by name (from a repository folder, a file); throws with the reason it cannot. */
export interface ModelLoader {
  (name: string): Promise<ServedModel>;
  /** Whether `name` exists to be loaded at all: a name that does not never gets an entry (or a metrics label). */
  has?(name: string): boolean;
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

  get(name: string): ModelEntry | undefined {
    return this.#entries.get(name);
  }

  entries(): ModelEntry[] {
    return [...this.#entries.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Every READY instance, for draining at shutdown. */
  ready(): ServedModel[] {
    return this.entries().flatMap((entry) => (entry.state === 'READY' && entry.model !== undefined ? [entry.model] : []));
  }

  /** Registers a name that could not be loaded, with the reason. */
  fail(name: string, reason: string): void {
    this.#set(name, 'UNAVAILABLE', reason, undefined);
  }

  /** Loads (or reloads) `name`; rejects with the reason when it cannot, leaving a READY old instance serving. */
  load(name: string): Promise<void> {
    return this.#serially(name, async () => {
      const loader = this.#loader;
      if (loader === undefined) throw new Error('This server has no model repository to load from');
      const entry = this.#entries.get(name);
      if (entry === undefined && loader.has !== undefined && !loader.has(name)) throw new Error(`No model \`${name}\` in the repository`);
      const old = entry?.model;
      if (entry === undefined || old === undefined) this.#set(name, 'LOADING', '', undefined);
      let fresh: ServedModel;
      try {
        fresh = await loader(name);
        await fresh.batcher.ready();
      } catch (error) {
        const reason = (error as Error)?.message ?? String(error);
        if (old === undefined) this.#set(name, 'UNAVAILABLE', reason, undefined);
        throw error;
      }
      this.#observer?.track(fresh);
      this.#set(name, 'READY', '', fresh);
      if (old !== undefined) await this.#retire(old);
    });
  }

  /** Refuses new requests for `name`, answers the accepted ones, then stops its workers. */
  unload(name: string): Promise<void> {
    return this.#serially(name, async () => {
      const entry = this.#entries.get(name);
      if (entry === undefined) throw new Error(`Unknown model \`${name}\``);
      const old = entry.model;
      this.#set(name, 'UNLOADING', '', undefined);
      if (old !== undefined) await this.#retire(old);
      this.#set(name, 'UNAVAILABLE', 'unloaded', undefined);
    });
  }

  async #retire(model: ServedModel): Promise<void> {
    // Accepted requests sit in the old batcher's queue: send them now rather than after a window.
    model.batcher.configure({ maxDelay: 0 });
    await model.batcher.close();
    this.#observer?.untrack(model);
  }

  #set(name: string, state: ModelState, reason: string, model: ServedModel | undefined): void {
    const entry = this.#entries.get(name);
    if (entry === undefined) this.#entries.set(name, { name, state, reason, model });
    else Object.assign(entry, { state, reason, model });
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
