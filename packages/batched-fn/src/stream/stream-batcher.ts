import { CallHandle, onCallTimeout } from '../call-handle.js';
import { type ChoiceRules, judge } from '../choice.js';
import { BatchSizeMismatchError, BatchTimeoutError, ClosedError, QueueFullError, TimeoutError } from '../errors.js';
import { LaneSet } from '../lane-set.js';
import { LoopYield } from '../loop-yield.js';
import type { CallOptions } from '../options.js';
import { AdaptivePolicy } from '../policy/adaptive.js';
import { ArrivalRate, CostModel } from '../policy/cost-model.js';
import { FixedDelayPolicy } from '../policy/fixed-delay.js';
import type { SchedulingPolicy } from '../policy/types.js';
import type { BatchBuilder, Resolve } from '../queue.js';
import { validateCallOptions } from '../options.js';
import { WakeTimer } from '../wake-timer.js';
import { Sequence } from './sequence.js';
import { type StreamThread, StreamThreads } from './stream-thread.js';
import type { ResolvedStreamOptions } from './stream-options.js';
import { deliver, StreamStats, type BatchedStreamStats } from './stream-stats.js';

const NOOP = (): void => {};
const now = (): number => performance.now();

/** The sequences taken from the queue at one step boundary; the queue's own batch builder. */
class Joiners<I, S, T> implements BatchBuilder<Sequence<I, S, T>, void> {
  inputs: Sequence<I, S, T>[] = [];
  resolvers: (Resolve<void> | undefined)[] = [];
  rows = 0;
  maxWait = 0;
  totalWait = 0;
  addHandle(handle: CallHandle<Sequence<I, S, T>, void>, index: number): void {
    handle.place = { state: 'running', batch: this, index };
  }
}

/** One running group: its active sequences, stepped together until none is left. */
interface Group<I, S, T> {
  active: Sequence<I, S, T>[];
  /** Sequences in a running `start`: not active yet, but destroy() and a timeout end them too. */
  joining: Sequence<I, S, T>[];
  /** A step failed as a whole (threw, timed out, wrong count), or a start timed out: the group ends. */
  failed: boolean;
  /** Worker mode: the thread holding this group's states, and the ids it may forget. */
  thread: StreamThread | undefined;
  drop: number[];
}

/**
 * Continuous (iteration-level) batching on the core's queue and policies.
 * Waiting sequences sit in a LaneSet (priorities, channelCap, cancellation);
 * an idle group slot forms its first batch through the same rules as
 * batchedFn (`maxDelay`, `'auto'`, close); a running group takes waiting
 * sequences at every step boundary up to `maxBatchSize` (continuous), or
 * none (static), and drops finished and cancelled ones before the next step.
 */
export class StreamBatcher<I, S, T, C> implements ChoiceRules {
  readonly #options: ResolvedStreamOptions<I, S, T, C>;
  readonly #lanes = new LaneSet<Sequence<I, S, T>, void>(false);
  readonly #groups = new Set<Group<I, S, T>>();
  /** Waiting sequences (the queue holds them too; this set is for destroy()). */
  readonly #queued = new Set<Sequence<I, S, T>>();
  readonly #wake = new WakeTimer(() => this.#pump());
  readonly #cost = new CostModel();
  readonly #arrivals = new ArrivalRate();
  readonly #stats = new StreamStats();
  readonly maxBatchSize: number;
  readonly preferred = undefined;
  readonly policy: SchedulingPolicy;
  closing = false;
  #destroyed = false;
  #closed: Promise<void> | undefined;
  #onIdle: (() => void) | undefined;
  #built: { value: C } | undefined;
  #building: Promise<C> | undefined;
  #pumpScheduled = false;
  #nextId = 1;
  /** Worker mode: one thread per group slot, replaced when it dies. */
  readonly #threads: StreamThreads | undefined;

  constructor(options: ResolvedStreamOptions<I, S, T, C>) {
    this.#options = options;
    this.maxBatchSize = options.maxBatchSize;
    this.#threads = options.worker === undefined ? undefined : new StreamThreads(options.worker.moduleUrl, options.worker.data, options.name, options.concurrency);
    this.policy = options.maxDelay === 'auto' ? new AdaptivePolicy(this.#cost, this.#arrivals, undefined) : new FixedDelayPolicy(options.maxDelay);
  }

  call(input: I, options?: CallOptions): AsyncIterableIterator<T> {
    const sequence: Sequence<I, S, T> = new Sequence<I, S, T>(this.#nextId++, input, (s) => this.#release(s, undefined, 'aborted'));
    this.#stats.calls++;
    if (options !== undefined) {
      try {
        validateCallOptions(options);
      } catch (error) {
        return this.#refuse(sequence, error);
      }
      if (options.signal?.aborted) return this.#refuse(sequence, options.signal.reason, 'aborted');
    }
    if (this.closing) return this.#refuse(sequence, new ClosedError());
    if (this.#lanes.items >= this.#options.channelCap) return this.#refuse(sequence, new QueueFullError(this.#options.channelCap));
    // The handle's owner is this sequence's own: abort and timeout release exactly it.
    const handle = new CallHandle<Sequence<I, S, T>, void>({
      abort: () => this.#release(sequence, options?.signal?.reason, 'aborted'),
      expire: () => this.#release(sequence, new TimeoutError(handle.timeout), 'timeout'),
    });
    sequence.handle = handle;
    this.#queued.add(sequence);
    const lane = this.#lanes.defaultLane;
    this.#lanes.push(lane, lane.queueFor(options?.priority ?? 0), sequence, NOOP, now(), 1, handle);
    this.#arrivals.add(1, now());
    if (options?.signal !== undefined) {
      handle.signal = options.signal;
      options.signal.addEventListener('abort', handle, { once: true });
    }
    if (options?.timeout !== undefined) {
      handle.timeout = options.timeout;
      handle.timer = setTimeout(onCallTimeout, options.timeout, handle);
    }
    this.#schedulePump();
    return sequence;
  }


  /** Leaves the queue (never to reach `start`) or its group (never to reach `step` again). */
  #release(sequence: Sequence<I, S, T>, error: unknown, reason: 'aborted' | 'timeout'): void {
    const handle = sequence.handle;
    if (handle !== undefined && handle.place.state === 'queued') {
      const { lane, queue, seq } = handle.place;
      this.#lanes.remove(lane, queue, seq);
      this.#queued.delete(sequence);
    }
    if (sequence.end(error, error !== undefined)) this.#stats.ended(reason);
    this.#resolveIfIdle();
  }

  #refuse(sequence: Sequence<I, S, T>, error: unknown, reason: 'error' | 'aborted' = 'error'): Sequence<I, S, T> {
    sequence.end(error);
    this.#stats.ended(reason);
    return sequence;
  }

  #schedulePump(): void {
    if (this.#pumpScheduled) return;
    this.#pumpScheduled = true;
    queueMicrotask(() => {
      this.#pumpScheduled = false;
      this.#pump();
    });
  }

  /** Forms new groups while slots are free and the rules say the queue should go. */
  #pump(): void {
    while (!this.#destroyed && this.#lanes.items > 0 && this.#groups.size < this.#options.concurrency) {
      const choice = judge(this.#lanes.defaultLane, now(), 'arrival', this);
      if (typeof choice === 'number') {
        this.#wake.arm(choice);
        return;
      }
      const joiners = this.#take(this.maxBatchSize);
      if (joiners.length === 0) return;
      const thread = this.#threads?.acquire(new Set([...this.#groups].map((g) => g.thread)));
      const group: Group<I, S, T> = { active: [], joining: [], failed: false, thread, drop: [] };
      this.#groups.add(group);
      void this.#run(group, joiners);
    }
    this.#wake.disarm();
    this.#resolveIfIdle();
  }

  #take(slots: number): Sequence<I, S, T>[] {
    if (slots <= 0 || this.#lanes.items === 0) return [];
    const builder = new Joiners<I, S, T>();
    this.#lanes.take(this.#lanes.defaultLane, slots, now(), builder, this.#stats.wait);
    for (const sequence of builder.inputs) this.#queued.delete(sequence);
    return builder.inputs;
  }

  /** Built once, shared by concurrent groups; a failed build is forgotten so the next group tries again. */
  async #context(): Promise<C> {
    if (this.#built !== undefined) return this.#built.value;
    if (this.#options.context === undefined) return undefined as C;
    this.#building ??= Promise.resolve().then(this.#options.context).finally(() => (this.#building = undefined));
    const value = await this.#building;
    this.#built = { value };
    return value;
  }

  /**
   * A group's step loop: join, step, hand out values, drop the finished; until nobody is left.
   * A step that fails as a whole ends the group rather than taking in waiting sequences: in
   * worker mode its thread may be dead or replaced, and the next group starts on a live one.
   */
  async #run(group: Group<I, S, T>, first: Sequence<I, S, T>[]): Promise<void> {
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
        joining = this.#options.mode === 'continuous' && !this.#destroyed ? this.#take(this.maxBatchSize - group.active.length) : [];
        if (group.active.length === 0 && joining.length === 0) break;
        // Sync steps would chain forever through microtasks: let timers and sockets run now and then.
        if (loopYield.due(now())) await new Promise((resolve) => setImmediate(resolve));
      }
    } catch (error) {
      // Nothing above throws by design; should it ever, the group's streams end with the error,
      // and the process (this promise is not awaited) never sees an unhandled rejection.
      this.#endGroup(group, error);
    } finally {
      this.#free(group);
      this.#groups.delete(group);
      this.#schedulePump();
    }
  }

  /** Drops finished and cancelled sequences; in worker mode their states are freed with the next step. */
  #prune(group: Group<I, S, T>): void {
    if (group.thread !== undefined) for (const s of group.active) if (s.ended) group.drop.push(s.id);
    group.active = group.active.filter((s) => !s.ended);
  }

  /**
   * Worker mode, as the group ends: the states it left in its thread (cancelled sequences not yet
   * dropped by a step, those of a failed step) are freed now, or they would stay there for good.
   */
  #free(group: Group<I, S, T>): void {
    const thread = group.thread;
    if (thread === undefined) return;
    const ids = group.drop;
    for (const s of group.active) ids.push(s.id);
    group.drop = [];
    // A dead or abandoned thread took its states with it. Messages are handled in order, so the
    // next group on this thread starts after these are gone.
    if (ids.length > 0 && thread.alive) thread.drop(ids).catch(NOOP);
  }

  /** Ends every stream of the group, stepping or joining, with `error`. */
  #endGroup(group: Group<I, S, T>, error: unknown): void {
    group.failed = true;
    for (const s of group.active) if (s.end(error, true)) this.#stats.ended('error');
    for (const s of group.joining) if (s.end(error, true)) this.#stats.ended('error');
  }

  /**
   * `run()` bounded by `batchTimeout`. When it passes, the group ends with ERR_BATCH_TIMEOUT at
   * once, whatever `run` does later: inline, its late result is dropped; in worker mode the
   * thread is abandoned (terminated, or retired if not interruptible) and the slot's next group
   * gets a new one. Either way the group's slot is free, so close() can finish.
   */
  #bounded<R>(group: Group<I, S, T>, run: () => Promise<R>): Promise<R> {
    const limit = this.#options.batchTimeout;
    if (limit === undefined) return run();
    return new Promise<R>((resolve, reject) => {
      const timer = setTimeout(() => {
        const error = new BatchTimeoutError(limit);
        this.#endGroup(group, error);
        if (group.thread !== undefined) this.#threads?.abandon(group.thread, error);
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
      const thread = group.thread;
      if (thread !== undefined) {
        await this.#bounded(group, () => thread.start(live.map((s) => s.id), live.map((s) => s.input)));
      } else {
        const start = this.#options.start;
        const states = await this.#bounded(group, async () => {
          const context = await this.#context();
          return start === undefined ? (live.map((s) => s.input) as unknown as S[]) : start(live.map((s) => s.input), context);
        });
        if (!Array.isArray(states) || states.length !== live.length) throw new BatchSizeMismatchError(live.length, Array.isArray(states) ? states.length : undefined);
        live.forEach((s, i) => {
          s.state = states[i];
        });
      }
      group.active.push(...live);
    } catch (error) {
      for (const s of live) if (s.end(error, true)) this.#stats.ended('error');
    } finally {
      group.joining = [];
    }
  }

  async #step(group: Group<I, S, T>): Promise<void> {
    const members = group.active;
    const started = now();
    let outputs: unknown;
    try {
      const thread = group.thread;
      if (thread !== undefined) {
        const drop = group.drop;
        group.drop = [];
        outputs = await this.#bounded(group, () => thread.step(members.map((s) => s.id), drop));
      } else {
        outputs = await this.#bounded(group, async () => {
          const context = await this.#context();
          return this.#options.step(members.map((s) => s.state as S), context);
        });
      }
      if (!Array.isArray(outputs) || outputs.length !== members.length) throw new BatchSizeMismatchError(members.length, Array.isArray(outputs) ? outputs.length : undefined);
    } catch (error) {
      this.#endGroup(group, error);
      return;
    }
    const ms = now() - started;
    this.#cost.observe(members.length, ms);
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
    deliver(members, outputs as unknown[], this.#stats);
  }

  close(): Promise<void> {
    this.#closed ??= new Promise<void>((resolve) => {
      this.closing = true;
      this.#onIdle = resolve;
      this.#schedulePump();
      this.#resolveIfIdle();
    }).then(() => this.#threads?.close());
    return this.#closed;
  }

  destroy(reason?: unknown): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.closing = true;
    this.#wake.disarm();
    const error = reason ?? new ClosedError('The generator was destroyed');
    this.#lanes.drain((_resolve, handle) => handle?.dispose());
    for (const s of this.#queued) if (s.end(error)) this.#stats.ended('error');
    this.#queued.clear();
    for (const group of this.#groups) this.#endGroup(group, error);
    this.#threads?.destroy(error);
    this.#closed ??= Promise.resolve();
    const onIdle = this.#onIdle;
    this.#onIdle = undefined;
    onIdle?.();
  }

  ready(): Promise<void> {
    return this.#context().then(() => {});
  }


  get stats(): BatchedStreamStats {
    let active = 0;
    for (const group of this.#groups) active += group.active.filter((s) => !s.ended).length;
    return this.#stats.snapshot(active, this.#lanes.items, this.#threads?.held ?? 0);
  }

  #resolveIfIdle(): void {
    if (this.#onIdle === undefined || this.#lanes.items > 0 || this.#groups.size > 0) return;
    const onIdle = this.#onIdle;
    this.#onIdle = undefined;
    onIdle();
  }
}
