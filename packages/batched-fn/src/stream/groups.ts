import type { EngineLink } from '../engine/engine.js';
import type { Runner } from '../engine/runner.js';
import type { RunningBatch } from '../engine/running-batch.js';
import { BatchSizeMismatchError, BatchTimeoutError, type FailureKey } from '../errors.js';
import { WorkerPool } from '../executor/worker-pool.js';
import { LoopYield } from '../loop-yield.js';
import type { Resolve } from '../queue.js';
import type { Ending, Sequence } from './sequence.js';
import { newSlot, readSlot } from './step-output.js';
import type { ResolvedStreamOptions } from './stream-options.js';
import type { StreamStats } from './stream-stats.js';
import { type RunHost, ThreadRun } from './thread-run.js';

const now = (): number => performance.now();

/** A running group, inline or in a thread, as the runner counts and ends it. */
interface Running {
  /** Sequences stepped now that have not ended. */
  readonly active: number;
  /** Every stream of the group ends with `error` (destroy). */
  fail(error: unknown): void;
}

/** One inline group: a running batch whose membership changes at every step boundary. */
class InlineGroup<I, S, T> implements Running {
  members: Sequence<I, S, T>[] = [];
  /** Sequences in a running `start`: not members yet, but destroy() and a timeout end them too. */
  joining: Sequence<I, S, T>[] = [];
  /** A step failed as a whole (threw, timed out, wrong count), or a start timed out: the group ends. */
  failed = false;

  get active(): number {
    let active = 0;
    for (const s of this.members) if (!s.ended) active++;
    return active;
  }

  fail(error: unknown): void {
    this.failed = true;
    for (const s of this.members) s.end('error', true, error);
    for (const s of this.joining) s.end('error', true, error);
  }
}

/**
 * batchedStream's runner, on the engine's queue and policies: the pump forms
 * a group's first batch by the same rules as batchedFn (`maxDelay`, `'auto'`,
 * close), and the group then runs step after step, taking waiting sequences
 * at every step boundary up to `maxBatchSize` (continuous) or none (static),
 * and dropping finished and cancelled ones before the next step. In worker
 * mode each group leases a slot of the one WorkerPool, whose thread keeps its
 * states by id and steps them on its own (thread-run.ts).
 */
export class Groups<I, S, T, C> implements Runner<Sequence<I, S, T>, Ending> {
  readonly #groups = new Set<Running>();
  readonly #options: ResolvedStreamOptions<I, S, T, C>;
  readonly #stats: StreamStats;
  readonly #link: EngineLink<Sequence<I, S, T>, Ending>;
  readonly #pool: WorkerPool | undefined;
  #built: { value: C } | undefined;
  #building: Promise<C> | undefined;
  #destroyed = false;

  constructor(
    options: ResolvedStreamOptions<I, S, T, C>,
    stats: StreamStats,
    link: EngineLink<Sequence<I, S, T>, Ending>,
  ) {
    this.#options = options;
    this.#stats = stats;
    this.#link = link;
    const worker = options.worker;
    // One thread per group slot: a group keeps its thread (and its states there) for its whole life.
    this.#pool =
      worker === undefined
        ? undefined
        : new WorkerPool({
            module: new URL(worker.moduleUrl),
            workers: options.concurrency,
            workerData: worker.data,
            resourceLimits: undefined,
            name: options.name,
            kind: 'stream',
          });
  }

  get size(): number {
    return this.#groups.size;
  }

  /** Sequences in running groups. */
  get active(): number {
    let active = 0;
    for (const group of this.#groups) active += group.active;
    return active;
  }

  /** Worker mode: sequence states the threads hold, as they last reported. */
  get held(): number {
    return this.#pool?.held ?? 0;
  }

  hasCapacity(): boolean {
    return this.#pool === undefined || this.#pool.hasCapacity();
  }

  onCapacity(listener: () => void): void {
    this.#pool?.onCapacity(listener);
  }

  /** A group's first batch left the queue. */
  run(batch: RunningBatch<Sequence<I, S, T>, Ending>): void {
    const pool = this.#pool;
    if (pool === undefined) {
      const group = new InlineGroup<I, S, T>();
      this.#groups.add(group);
      void this.#loop(group, batch.inputs);
      return;
    }
    const lease = pool.lease();
    if (lease === undefined) {
      // The pump asked hasCapacity() first; this would be an engine bug, and must not hang a caller.
      for (const s of batch.inputs) s.end('error', true, new Error('batched-fn: no free worker (engine bug)'));
      return;
    }
    // The thread steps the group on its own; the run hands out values and takes joiners as steps come.
    const groups = this.#groups;
    const link = this.#link;
    const options = this.#options;
    const isDestroyed = (): boolean => this.#destroyed;
    const host: RunHost<I, S, T> = {
      continuous: options.mode === 'continuous',
      batchTimeout: options.batchTimeout,
      get maxBatchSize() {
        return link.settings.maxBatchSize;
      },
      get destroyed() {
        return isDestroyed();
      },
      get waiting() {
        return link.waiting;
      },
      join: (room) => link.join(room)?.inputs ?? [],
      stepped: (sequences, ms, values) => this.#stepped(sequences, ms, values),
      over: () => {
        lease.release();
        groups.delete(run);
        link.settled();
      },
    };
    const run = new ThreadRun(host, lease);
    groups.add(run);
    run.begin(batch.inputs);
  }

  fail(resolve: Resolve<Ending>, error: unknown, key: FailureKey): void {
    resolve({ error, key });
  }

  releaseAll(error: unknown): void {
    this.#destroyed = true;
    for (const group of [...this.#groups]) group.fail(error);
  }

  /** Builds the context now: inline here, in worker mode in every thread (started now, as batchedFn's are). */
  ready(): Promise<void> {
    if (this.#pool !== undefined) return this.#pool.ready();
    return this.#context().then(() => {});
  }

  close(): Promise<void> {
    return this.#pool?.close() ?? Promise.resolve();
  }

  destroy(reason: unknown): void {
    this.#pool?.destroy(reason);
  }

  /** Built once, shared by concurrent groups; a failed build is forgotten so the next group tries again. */
  async #context(): Promise<C> {
    if (this.#built !== undefined) return this.#built.value;
    if (this.#options.context === undefined) return undefined as C;
    this.#building ??= Promise.resolve()
      .then(this.#options.context)
      .finally(() => (this.#building = undefined));
    const value = await this.#building;
    this.#built = { value };
    return value;
  }

  /** A step of `sequences` took `ms` and handed out `values`: the cost model, the stats and `onStep` hear of it. */
  #stepped(sequences: number, ms: number, values: number): void {
    this.#link.cost.observe(sequences, ms);
    this.#stats.step(sequences, ms);
    const onStep = this.#options.onStep;
    if (onStep === undefined) return;
    try {
      onStep({ name: this.#options.name, sequences, values, ms });
    } catch (error) {
      // A broken observer must not break serving (as batchedFn's onBatch).
      process.emitWarning(`batched-fn: onStep threw: ${String(error)}`, 'BatchedFnWarning');
    }
  }

  /**
   * An inline group's step loop: join, step, hand out values, drop the finished; until nobody is
   * left. A step that fails as a whole ends the group rather than taking in waiting sequences.
   */
  async #loop(group: InlineGroup<I, S, T>, first: Sequence<I, S, T>[]): Promise<void> {
    const loopYield = new LoopYield();
    let joining = first;
    try {
      for (;;) {
        if (joining.length > 0) await this.#start(group, joining);
        this.#prune(group);
        if (group.failed || this.#destroyed) break;
        if (group.members.length === 0) {
          // Every joiner failed to start: in continuous mode, sequences still waiting take the room
          // now instead of waiting out a new group's window. Each pass takes at least one.
          joining = this.#options.mode === 'continuous' ? this.#join(group) : [];
          if (joining.length === 0) break;
          continue;
        }
        await this.#step(group);
        this.#prune(group);
        if (group.failed) break;
        joining = this.#options.mode === 'continuous' && !this.#destroyed ? this.#join(group) : [];
        if (group.members.length === 0 && joining.length === 0) break;
        // Sync steps would chain forever through microtasks: let timers and sockets run now and then.
        if (loopYield.due(now())) await new Promise((resolve) => setImmediate(resolve));
      }
    } catch (error) {
      // Nothing above throws by design; should it ever, the group's streams end with the error,
      // and the process (this promise is not awaited) never sees an unhandled rejection.
      group.fail(error);
    } finally {
      this.#groups.delete(group);
      this.#link.settled();
    }
  }

  /** A step boundary: waiting sequences join, up to maxBatchSize as it is now. */
  #join(group: InlineGroup<I, S, T>): Sequence<I, S, T>[] {
    return this.#link.join(this.#link.settings.maxBatchSize - group.members.length)?.inputs ?? [];
  }

  /** Drops finished and cancelled sequences. */
  #prune(group: InlineGroup<I, S, T>): void {
    group.members = group.members.filter((s) => !s.ended);
  }

  /**
   * `run()` bounded by `batchTimeout`. When it passes, the group ends with ERR_BATCH_TIMEOUT at
   * once, whatever `run` does later: its late result is dropped. Either way the group's slot is
   * free, so close() can finish.
   */
  #bounded<R>(group: InlineGroup<I, S, T>, run: () => Promise<R>): Promise<R> {
    const limit = this.#options.batchTimeout;
    if (limit === undefined) return run();
    return new Promise<R>((resolve, reject) => {
      const timer = setTimeout(() => {
        const error = new BatchTimeoutError(limit);
        group.fail(error);
        reject(error);
      }, limit);
      run().then(
        (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        (error: unknown) => {
          clearTimeout(timer);
          reject(error);
        },
      );
    });
  }

  async #start(group: InlineGroup<I, S, T>, joining: Sequence<I, S, T>[]): Promise<void> {
    const live = joining.filter((s) => !s.ended);
    if (live.length === 0) return;
    group.joining = live;
    try {
      const start = this.#options.start;
      const states = await this.#bounded(group, async () => {
        const context = await this.#context();
        return start === undefined
          ? (live.map((s) => s.input) as unknown as S[])
          : start(
              live.map((s) => s.input),
              context,
            );
      });
      if (!Array.isArray(states) || states.length !== live.length)
        throw new BatchSizeMismatchError(live.length, Array.isArray(states) ? states.length : undefined);
      live.forEach((s, i) => {
        s.keep(states[i] as S);
      });
      group.members.push(...live);
    } catch (error) {
      for (const s of live) s.end('error', true, error);
    } finally {
      group.joining = [];
    }
  }

  async #step(group: InlineGroup<I, S, T>): Promise<void> {
    const members = group.members;
    const started = now();
    let outputs: unknown;
    try {
      outputs = await this.#bounded(group, async () => {
        const context = await this.#context();
        return this.#options.step(
          members.map((s) => s.state as S),
          context,
        );
      });
      if (!Array.isArray(outputs) || outputs.length !== members.length)
        throw new BatchSizeMismatchError(members.length, Array.isArray(outputs) ? outputs.length : undefined);
    } catch (error) {
      group.fail(error);
      return;
    }
    const ms = now() - started;
    this.#stepped(members.length, ms, deliver(members, outputs as unknown[]));
  }
}

/**
 * Hands one step's outputs to their streams: a value, the end, or an error ending that stream
 * alone. A malformed slot (see readSlot) is that stream's error, never an exception here.
 * Returns the values handed out.
 */
function deliver<I, S, T>(members: readonly Sequence<I, S, T>[], outputs: readonly unknown[]): number {
  const slot = newSlot();
  let values = 0;
  for (let i = 0; i < members.length; i++) {
    const s = members[i] as Sequence<I, S, T>;
    if (s.ended) continue; // cancelled during the step: its output is dropped
    readSlot(outputs, i, slot);
    if (slot.failed) {
      s.end('error', true, slot.error);
      continue;
    }
    if (slot.hasValue) {
      s.push(slot.value as T);
      values++;
    }
    if (slot.done) s.end('done', false);
  }
  return values;
}
