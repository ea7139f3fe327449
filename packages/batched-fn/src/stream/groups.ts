import type { EngineLink } from '../engine/engine.js';
import type { Runner } from '../engine/runner.js';
import type { RunningBatch } from '../engine/running-batch.js';
import { BatchSizeMismatchError, BatchTimeoutError, type FailureKey } from '../errors.js';
import type { WorkerLease } from '../executor/worker-lease.js';
import { WorkerPool } from '../executor/worker-pool.js';
import { LoopYield } from '../loop-yield.js';
import type { Resolve } from '../queue.js';
import type { Ending, Sequence } from './sequence.js';
import { DONE, HAS_VALUE, newSlot, type PackedStep, readSlot } from './step-output.js';
import type { ResolvedStreamOptions } from './stream-options.js';
import type { StreamStats } from './stream-stats.js';

const NOOP = (): void => {};
const now = (): number => performance.now();

/** One running group: a running batch whose membership changes at every step boundary. */
interface Group<I, S, T> {
  active: Sequence<I, S, T>[];
  /** Sequences in a running `start`: not active yet, but destroy() and a timeout end them too. */
  joining: Sequence<I, S, T>[];
  /** A step failed as a whole (threw, timed out, wrong count), or a start timed out: the group ends. */
  failed: boolean;
  /** Worker mode: the pool slot holding this group's states, for the group's whole life. */
  lease: WorkerLease | undefined;
  /** Worker mode: ids whose states the thread may forget (sent with the next step). */
  drop: number[];
}

/**
 * batchedStream's runner, on the engine's queue and policies: the pump forms
 * a group's first batch by the same rules as batchedFn (`maxDelay`, `'auto'`,
 * close), and the group then runs step after step, taking waiting sequences
 * at every step boundary up to `maxBatchSize` (continuous) or none (static),
 * and dropping finished and cancelled ones before the next step. In worker
 * mode each group leases a slot of the one WorkerPool, whose thread keeps its
 * states by id.
 */
export class Groups<I, S, T, C> implements Runner<Sequence<I, S, T>, Ending> {
  readonly #groups = new Set<Group<I, S, T>>();
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
    for (const group of this.#groups) for (const s of group.active) if (!s.ended) active++;
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
    const lease = this.#pool?.lease();
    if (this.#pool !== undefined && lease === undefined) {
      // The pump asked hasCapacity() first; this would be an engine bug, and must not hang a caller.
      for (const s of batch.inputs) s.end('error', true, new Error('batched-fn: no free worker (engine bug)'));
      return;
    }
    const group: Group<I, S, T> = { active: [], joining: [], failed: false, lease, drop: [] };
    this.#groups.add(group);
    void this.#loop(group, batch.inputs);
  }

  fail(resolve: Resolve<Ending>, error: unknown, key: FailureKey): void {
    resolve({ error, key });
  }

  releaseAll(error: unknown): void {
    this.#destroyed = true;
    for (const group of this.#groups) this.#endGroup(group, error);
  }

  /** Inline: builds the context now. (Worker mode builds it in each thread before its first group.) */
  ready(): Promise<void> {
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

  /**
   * A group's step loop: join, step, hand out values, drop the finished; until nobody is left.
   * A step that fails as a whole ends the group rather than taking in waiting sequences: in
   * worker mode its thread may be dead or replaced, and the next group starts on a live one.
   */
  async #loop(group: Group<I, S, T>, first: Sequence<I, S, T>[]): Promise<void> {
    const loopYield = new LoopYield();
    let joining = first;
    try {
      for (;;) {
        if (joining.length > 0) await this.#start(group, joining);
        this.#prune(group);
        if (group.failed || group.active.length === 0 || this.#destroyed) break;
        await this.#step(group);
        this.#prune(group);
        if (group.failed) break;
        joining = this.#options.mode === 'continuous' && !this.#destroyed ? this.#join(group) : [];
        if (group.active.length === 0 && joining.length === 0) break;
        // Sync steps would chain forever through microtasks: let timers and sockets run now and then.
        // A worker-mode step waits for a message, so the event loop has turned at every step already.
        if (group.lease === undefined && loopYield.due(now())) await new Promise((resolve) => setImmediate(resolve));
      }
    } catch (error) {
      // Nothing above throws by design; should it ever, the group's streams end with the error,
      // and the process (this promise is not awaited) never sees an unhandled rejection.
      this.#endGroup(group, error);
    } finally {
      this.#free(group);
      this.#groups.delete(group);
      this.#link.settled();
    }
  }

  /** A step boundary: waiting sequences join, up to maxBatchSize as it is now. */
  #join(group: Group<I, S, T>): Sequence<I, S, T>[] {
    return this.#link.join(this.#link.settings.maxBatchSize - group.active.length)?.inputs ?? [];
  }

  /** Drops finished and cancelled sequences; in worker mode their states are freed with the next step. */
  #prune(group: Group<I, S, T>): void {
    if (group.lease !== undefined) for (const s of group.active) if (s.ended) group.drop.push(s.id);
    group.active = group.active.filter((s) => !s.ended);
  }

  /**
   * Worker mode, as the group ends: the states it left in its thread (cancelled sequences not yet
   * dropped by a step, those of a failed step) are freed now, or they would stay there for good;
   * then its slot may take another group. A dead or abandoned thread took its states with it.
   */
  #free(group: Group<I, S, T>): void {
    const lease = group.lease;
    if (lease === undefined) return;
    const ids = group.drop;
    for (const s of group.active) ids.push(s.id);
    group.drop = [];
    // Messages are handled in order, so the next group on this thread starts after these are gone.
    if (ids.length > 0 && lease.alive) lease.drop(ids).catch(NOOP);
    lease.release();
  }

  /** Ends every stream of the group, stepping or joining, with `error`. */
  #endGroup(group: Group<I, S, T>, error: unknown): void {
    group.failed = true;
    for (const s of group.active) s.end('error', true, error);
    for (const s of group.joining) s.end('error', true, error);
  }

  /**
   * `run()` bounded by `batchTimeout`. When it passes, the group ends with ERR_BATCH_TIMEOUT at
   * once, whatever `run` does later: inline, its late result is dropped; in worker mode the
   * thread is abandoned (terminated, or retired if not interruptible) and its slot gets a new
   * one. Either way the group's slot is free, so close() can finish.
   */
  #bounded<R>(group: Group<I, S, T>, run: () => Promise<R>): Promise<R> {
    const limit = this.#options.batchTimeout;
    if (limit === undefined) return run();
    return new Promise<R>((resolve, reject) => {
      const timer = setTimeout(() => {
        const error = new BatchTimeoutError(limit);
        this.#endGroup(group, error);
        group.lease?.abandon(error);
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

  async #start(group: Group<I, S, T>, joining: Sequence<I, S, T>[]): Promise<void> {
    const live = joining.filter((s) => !s.ended);
    if (live.length === 0) return;
    group.joining = live;
    try {
      const lease = group.lease;
      if (lease !== undefined) {
        await this.#bounded(group, () =>
          lease.start(
            live.map((s) => s.id),
            live.map((s) => s.input),
          ),
        );
      } else {
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
      }
      group.active.push(...live);
    } catch (error) {
      for (const s of live) s.end('error', true, error);
    } finally {
      group.joining = [];
    }
  }

  async #step(group: Group<I, S, T>): Promise<void> {
    const members = group.active;
    const started = now();
    let outputs: unknown;
    let packed: PackedStep | undefined;
    try {
      const lease = group.lease;
      if (lease !== undefined) {
        const drop = group.drop;
        group.drop = [];
        const ids = new Array<number>(members.length);
        for (let i = 0; i < members.length; i++) ids[i] = (members[i] as Sequence<I, S, T>).id;
        const answer = await this.#bounded(group, () => lease.step(ids, drop));
        if (answer === null || answer.values.length !== members.length)
          throw new BatchSizeMismatchError(members.length, answer === null ? undefined : answer.values.length);
        packed = answer;
        outputs = answer.values;
      } else {
        outputs = await this.#bounded(group, async () => {
          const context = await this.#context();
          return this.#options.step(
            members.map((s) => s.state as S),
            context,
          );
        });
      }
      if (!Array.isArray(outputs) || outputs.length !== members.length)
        throw new BatchSizeMismatchError(members.length, Array.isArray(outputs) ? outputs.length : undefined);
    } catch (error) {
      this.#endGroup(group, error);
      return;
    }
    const ms = now() - started;
    this.#link.cost.observe(members.length, ms);
    this.#stats.step(members.length, ms);
    const onStep = this.#options.onStep;
    if (onStep !== undefined) {
      try {
        onStep({ name: this.#options.name, sequences: members.length, ms });
      } catch (error) {
        // A broken observer must not break serving (as batchedFn's onBatch).
        process.emitWarning(`batched-fn: onStep threw: ${String(error)}`, 'BatchedFnWarning');
      }
    }
    if (packed !== undefined) deliverPacked(members, packed);
    else deliver(members, outputs as unknown[]);
  }
}

/** Worker mode: the same hand-out from a packed step (the thread has already read every slot). */
function deliverPacked<I, S, T>(members: readonly Sequence<I, S, T>[], packed: PackedStep): void {
  const { values, flags, failed } = packed;
  for (let i = 0; i < members.length; i++) {
    const s = members[i] as Sequence<I, S, T>;
    if (s.ended) continue; // cancelled during the step: its output is dropped
    if (failed?.has(i)) {
      s.end('error', true, failed.get(i));
      continue;
    }
    const flag = flags[i] as number;
    if ((flag & HAS_VALUE) !== 0) s.push(values[i] as T);
    if ((flag & DONE) !== 0) s.end('done', false);
  }
}

/**
 * Hands one step's outputs to their streams: a value, the end, or an error ending that stream
 * alone. A malformed slot (see readSlot) is that stream's error, never an exception here.
 */
function deliver<I, S, T>(members: readonly Sequence<I, S, T>[], outputs: readonly unknown[]): void {
  const slot = newSlot();
  for (let i = 0; i < members.length; i++) {
    const s = members[i] as Sequence<I, S, T>;
    if (s.ended) continue; // cancelled during the step: its output is dropped
    readSlot(outputs, i, slot);
    if (slot.failed) {
      s.end('error', true, slot.error);
      continue;
    }
    if (slot.hasValue) s.push(slot.value as T);
    if (slot.done) s.end('done', false);
  }
}
