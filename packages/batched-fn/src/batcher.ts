import diagnostics from 'node:diagnostics_channel';
import { CallHandle, onCallTimeout, QUEUED, RUNNING } from './call-handle.js';
import {
  BatchedFnError,
  BatchSizeMismatchError,
  BatchTimeoutError,
  ClosedError,
  InvalidPadError,
  ItemTooLargeError,
  QueueFullError,
  TimeoutError,
} from './errors.js';
import type { Executor } from './executor/types.js';
import { Lane } from './lane.js';
import {
  type CallOptions,
  type CloseOptions,
  describeValue,
  expectDuration,
  type ResolvedBatchingOptions,
  type RuntimeOptions,
  validateCallOptions,
  validateRuntimeOptions,
} from './options.js';
import { AdaptivePolicy } from './policy/adaptive.js';
import { ArrivalRate, CostModel } from './policy/cost-model.js';
import { FixedDelayPolicy } from './policy/fixed-delay.js';
import type { PumpTrigger, SchedulingPolicy } from './policy/types.js';
import type { BatchBuilder, CallQueue, Resolve } from './queue.js';
import type { BatchedFnStats, BatchInfo, DispatchReason } from './stats.js';
import { StatsRecorder } from './stats-recorder.js';
import { LoopYield } from './loop-yield.js';
import { WakeTimer } from './wake-timer.js';

/** Subscribers get a `BatchInfo` for every settled batch of every batcher. */
export const batchChannel = diagnostics.channel('batched-fn:batch');

const now = (): number => performance.now();

/** A dispatched batch. A resolver slot is emptied when its caller is released early. */
class RunningBatch<I, O> implements BatchBuilder<I, O> {
  inputs: I[] = [];
  resolvers: (Resolve<O> | undefined)[] = [];
  handles: CallHandle<I, O>[] | undefined = undefined;
  rows = 0;
  maxWait = 0;
  /** Inputs handed to the handler, filler included, when `pad` grew the batch. */
  padded = 0;
  /** What the executor was given (the padded inputs, with `pad`): identifies the run to abandon. */
  sent: I[] | undefined = undefined;
  /** Armed with `batchTimeout`. */
  timer: ReturnType<typeof setTimeout> | undefined = undefined;
  readonly reason: DispatchReason;
  readonly started: number;

  constructor(reason: DispatchReason, started: number) {
    this.reason = reason;
    this.started = started;
  }

  addHandle(handle: CallHandle<I, O>, index: number): void {
    this.handles ??= [];
    this.handles[index] = handle;
    handle.state = RUNNING;
    handle.index = index;
    handle.batch = this;
  }
}

/** Which lane goes next, why, and how many rows it may take. */
interface Choice<I, O> {
  lane: Lane<I, O>;
  reason: DispatchReason;
  maxRows: number;
}

/**
 * Captures a new promise's resolver without allocating a closure per call:
 * the executor runs synchronously inside `new Promise`, so a shared slot is safe.
 */
let capturedResolve: Resolve<unknown> | undefined;
function captureResolve(resolve: Resolve<unknown>): void {
  capturedResolve = resolve;
}

/**
 * The pump is scheduled as a reaction on a settled promise rather than with
 * `queueMicrotask`, which in Node wraps every callback in an async resource
 * and costs several times more per tick.
 */
const settled = Promise.resolve();

function failureKey(error: unknown): string {
  return error instanceof BatchedFnError ? error.code : 'handler';
}

function liveCount(resolvers: readonly unknown[]): number {
  let live = 0;
  for (const resolve of resolvers) if (resolve !== undefined) live++;
  return live;
}

function isOutputArray(value: unknown): value is ArrayLike<unknown> {
  return Array.isArray(value) || (ArrayBuffer.isView(value) && !(value instanceof DataView));
}

/** Taken once, so a promise whose own `then` was replaced cannot throw into the dispatcher. */
const promiseThen = Promise.prototype.then;

function onBatchTimeout<I, O>(batcher: Batcher<I, O>, batch: RunningBatch<I, O>): void {
  batch.timer = undefined;
  batcher.timeOut(batch);
}

/** Why `pad`'s result cannot be run, or undefined when it is the batch followed by filler. */
function padProblem<I>(padded: unknown, batch: readonly I[]): string | undefined {
  if (!Array.isArray(padded)) return `got ${describeValue(padded)}`;
  if (padded.length < batch.length) return `got ${padded.length} inputs for a batch of ${batch.length}`;
  for (let i = 0; i < batch.length; i++) if (padded[i] !== batch[i]) return `input ${i} is not the batch's input ${i}`;
  return undefined;
}

/**
 * Shedding predicts from the learned cost curve, and only running batches
 * teach it. When nothing has run for this long, calls are let through
 * unshed, so a curve learned during a slowdown cannot refuse every call
 * forever: the batches they form are the evidence that the slowdown is over.
 */
const PROBE_AFTER_MS = 250;

function validateCloseOptions(options: CloseOptions): void {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`Expected close options to be an object, got ${describeValue(options)}`);
  }
  if (options.timeout !== undefined) expectDuration('timeout', options.timeout);
}

/**
 * The queue and the dispatcher. Calls wait in lanes (one, or one per batch
 * key); a pump decides when a lane's head becomes a batch and hands it to the
 * executor.
 *
 * The pump runs in a microtask, never inside a caller's stack, so a burst of
 * synchronous calls lands in one batch and a handler calling back into the
 * batcher cannot re-enter the dispatch loop.
 */
export class Batcher<I, O> {
  readonly #executor: Executor<I, O>;
  readonly #size: ((input: I) => number) | undefined;
  readonly #onBatch: ((info: BatchInfo) => void) | undefined;
  readonly #name: string;
  readonly #batchKey: ((input: I) => string | number) | undefined;
  readonly #preferred: number[] | undefined;
  readonly #pad: ((batch: I[], targetRows: number) => I[]) | undefined;
  readonly #latencyTarget: number | undefined;
  readonly #batchTimeout: number | undefined;
  /** Worker mode: refuses an input that can never reach a thread (a buffer already transferred). */
  readonly #admit: ((input: I) => Error | undefined) | undefined;
  /** When the cost curve last learned from a batch; see PROBE_AFTER_MS. */
  #lastCostAt = Number.NEGATIVE_INFINITY;
  #maxBatchSize: number;
  #channelCap: number;
  #concurrency: number;
  #policy: SchedulingPolicy;
  readonly #cost = new CostModel();
  readonly #arrivals = new ArrivalRate();

  readonly #defaultLane = new Lane<I, O>(undefined);
  /** The default lane's priority-0 queue, where almost every call goes. */
  readonly #defaultQueue = this.#defaultLane.queueFor(0);
  /** Lanes by key, only with `batchKey`; a lane leaves the map when it empties. */
  readonly #lanes: Map<unknown, Lane<I, O>> | undefined;
  #queuedItems = 0;
  #queuedRows = 0;
  #arrivedRows = 0;
  readonly #running = new Set<RunningBatch<I, O>>();
  #inFlightItems = 0;
  readonly #stats = new StatsRecorder();

  #pumpScheduled = false;
  /** Clock reading shared by every call until the scheduled pump runs (one reading per tick). */
  #tickTime = 0;
  #inPump = false;
  readonly #wake = new WakeTimer(() => this.#pump('timer'));
  readonly #loopYield = new LoopYield();
  #yielding: ReturnType<typeof setImmediate> | undefined;

  #closing = false;
  #destroyed = false;
  #closed: Promise<void> | undefined;
  #onIdle: (() => void) | undefined;

  constructor(executor: Executor<I, O>, options: ResolvedBatchingOptions<I>) {
    this.#executor = executor;
    this.#size = options.size;
    this.#onBatch = options.onBatch;
    this.#name = options.name;
    this.#batchKey = options.batchKey;
    this.#preferred = options.preferredBatchSizes;
    this.#pad = options.pad;
    this.#latencyTarget = options.latencyTarget;
    this.#batchTimeout = options.batchTimeout;
    this.#admit = executor.admit?.bind(executor);
    this.#maxBatchSize = options.maxBatchSize;
    this.#channelCap = options.channelCap;
    this.#concurrency = options.concurrency;
    this.#policy = this.#policyFor(options.maxDelay);
    this.#lanes = options.batchKey === undefined ? undefined : new Map();
    executor.onCapacity(() => this.#pump('completion'));
  }

  #policyFor(maxDelay: number | 'auto'): SchedulingPolicy {
    return maxDelay === 'auto' ? new AdaptivePolicy(this.#cost, this.#arrivals, this.#latencyTarget) : new FixedDelayPolicy(maxDelay);
  }

  call(input: I, options?: CallOptions): Promise<O> {
    this.#stats.calls++;
    // The common call (no options, no size, no keys, no latency target) takes this short path,
    // small enough for V8 to inline into the caller; everything else goes through #callWithOptions.
    if (
      options !== undefined ||
      this.#closing ||
      this.#size !== undefined ||
      this.#lanes !== undefined ||
      this.#latencyTarget !== undefined ||
      this.#admit !== undefined
    ) {
      return this.#callWithOptions(input, options);
    }
    if (this.#queuedItems >= this.#channelCap) return this.#refuse(new QueueFullError(this.#channelCap));
    return this.#enqueue(this.#defaultLane, this.#defaultQueue, input, 1, undefined);
  }

  #callWithOptions(input: I, options: CallOptions | undefined): Promise<O> {
    if (this.#closing) return this.#refuse(new ClosedError());
    if (this.#admit !== undefined) {
      const refused = this.#admit(input);
      if (refused !== undefined) return this.#refuse(refused);
    }
    let rows = 1;
    if (this.#size !== undefined) {
      try {
        rows = this.#size(input);
      } catch (error) {
        return this.#refuse(error);
      }
      if (typeof rows !== 'number' || !(rows > 0) || !Number.isFinite(rows)) {
        return this.#refuse(new RangeError(`Expected \`size(input)\` to return a finite number above 0, got ${String(rows)}`));
      }
      if (rows > this.#maxBatchSize) return this.#refuse(new ItemTooLargeError(rows, this.#maxBatchSize));
    }
    if (this.#queuedItems >= this.#channelCap) return this.#refuse(new QueueFullError(this.#channelCap));
    let key: unknown;
    if (this.#lanes !== undefined) {
      try {
        key = (this.#batchKey as (input: I) => string | number)(input);
      } catch (error) {
        return this.#refuse(error);
      }
      if (typeof key !== 'string' && typeof key !== 'number') {
        return this.#refuse(new TypeError(`Expected \`batchKey(input)\` to return a string or a number, got ${describeValue(key)}`));
      }
    }
    let handle: CallHandle<I, O> | undefined;
    let signal: AbortSignal | undefined;
    let timeout: number | undefined;
    let priority = 0;
    if (options !== undefined) {
      try {
        validateCallOptions(options);
      } catch (error) {
        return this.#refuse(error);
      }
      signal = options.signal;
      timeout = options.timeout;
      priority = options.priority ?? 0;
      if (signal?.aborted) return this.#refuse(signal.reason, 'aborted');
      if (signal !== undefined || timeout !== undefined) handle = new CallHandle<I, O>(this);
    }
    if ((timeout !== undefined || this.#latencyTarget !== undefined) && this.#sheds(now())) {
      const t = now();
      const budget = Math.min(timeout ?? Number.POSITIVE_INFINITY, this.#latencyTarget ?? Number.POSITIVE_INFINITY);
      if (this.#predictFinish(rows, t) > t + budget) return this.#refuse(new TimeoutError(budget, true));
    }
    let lane = this.#defaultLane;
    if (this.#lanes !== undefined) {
      lane = this.#lanes.get(key) ?? new Lane<I, O>(key);
      this.#lanes.set(key, lane);
    }
    const promise = this.#enqueue(lane, lane.queueFor(priority), input, rows, handle);
    if (handle !== undefined) {
      if (signal !== undefined) {
        handle.signal = signal;
        signal.addEventListener('abort', handle, { once: true });
      }
      if (timeout !== undefined) {
        handle.timeout = timeout;
        handle.deadline = this.#tickTime + timeout;
        handle.timer = setTimeout(onCallTimeout, timeout, handle);
      }
    }
    return promise;
  }

  #enqueue(lane: Lane<I, O>, queue: CallQueue<I, O>, input: I, rows: number, handle: CallHandle<I, O> | undefined): Promise<O> {
    const promise = new Promise<O>(captureResolve as (resolve: Resolve<O>) => void);
    const resolve = capturedResolve as Resolve<O>;
    // Reading the clock costs about as much as the rest of a call, so calls
    // made before the scheduled pump runs share one reading. They arrive in
    // the same run of microtasks, so their true arrival times differ by less
    // than the work queued ahead of the pump.
    if (!this.#pumpScheduled) this.#schedulePump();
    const seq = queue.push(input, resolve, this.#tickTime, rows, handle);
    lane.items++;
    lane.rows += rows;
    this.#queuedItems++;
    this.#queuedRows += rows;
    this.#arrivedRows += rows;
    if (handle !== undefined) {
      handle.seq = seq;
      handle.lane = lane;
      handle.queue = queue;
    }
    return promise;
  }

  /** AbortSignal fired: a queued call leaves the queue; a running one is released. */
  abort(handle: CallHandle<I, O>): void {
    this.#release(handle, (handle.signal as AbortSignal).reason, 'aborted');
  }

  /** Deadline passed. */
  expire(handle: CallHandle<I, O>): void {
    this.#release(handle, new TimeoutError(handle.timeout), 'ERR_TIMEOUT');
  }

  ready(): Promise<void> {
    if (this.#closing) return Promise.reject(new ClosedError());
    return this.#executor.ready();
  }

  /**
   * Stops intake and drains. With `timeout`, whatever is still queued or running when it is up
   * is destroyed (ERR_CLOSED), so a hung handler cannot hold shutdown forever.
   */
  close(options?: CloseOptions): Promise<void> {
    if (options !== undefined) {
      try {
        validateCloseOptions(options);
      } catch (error) {
        return Promise.reject(error);
      }
    }
    if (this.#closed === undefined) {
      this.#closing = true;
      const idle = new Promise<void>((resolve) => {
        this.#onIdle = resolve;
      });
      this.#closed = idle.then(() => this.#executor.close());
      this.#schedulePump();
      this.#resolveIfIdle();
    }
    const limit = options?.timeout;
    if (limit !== undefined && !this.#destroyed) {
      const timer = setTimeout(() => this.destroy(new ClosedError(`close() timed out after ${limit} ms; calls still queued or running were rejected`)), limit);
      const clear = (): void => clearTimeout(timer);
      this.#closed.then(clear, clear);
    }
    return this.#closed;
  }

  destroy(reason?: unknown): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#closing = true;
    this.#closed ??= Promise.resolve();
    if (this.#yielding !== undefined) clearImmediate(this.#yielding);
    const error = reason ?? new ClosedError('The batcher was destroyed');
    const key = reason === undefined ? 'ERR_CLOSED' : failureKey(reason);
    this.#wake.disarm();
    for (const lane of this.#allLanes()) {
      for (const queue of lane.drain()) {
        const resolve = queue.headResolver();
        queue.headHandle()?.dispose();
        queue.shift();
        this.#fail(resolve, error, key);
      }
      lane.items = 0;
      lane.rows = 0;
    }
    this.#lanes?.clear();
    this.#queuedItems = 0;
    this.#queuedRows = 0;
    // Running batches are released too: a late result finds its batch gone and is neither
    // delivered nor reported, and a handler that never settles holds nothing.
    for (const batch of this.#running) {
      if (batch.timer !== undefined) clearTimeout(batch.timer);
      batch.timer = undefined;
      this.#inFlightItems -= liveCount(batch.resolvers);
      const { resolvers, handles } = batch;
      for (let i = 0; i < resolvers.length; i++) {
        const resolve = resolvers[i];
        if (resolve === undefined) continue;
        resolvers[i] = undefined;
        handles?.[i]?.dispose();
        this.#fail(resolve, error, key);
      }
    }
    this.#running.clear();
    this.#executor.destroy(error);
    const onIdle = this.#onIdle;
    this.#onIdle = undefined;
    onIdle?.();
  }

  configure(options: RuntimeOptions): void {
    const valid = validateRuntimeOptions(options);
    if (valid.maxBatchSize !== undefined && this.#preferred !== undefined && (this.#preferred.at(-1) as number) > valid.maxBatchSize) {
      throw new RangeError(`Expected \`maxBatchSize\` to be at least the largest preferredBatchSizes entry (${this.#preferred.at(-1)}), got ${valid.maxBatchSize}`);
    }
    if (valid.maxBatchSize !== undefined) this.#maxBatchSize = valid.maxBatchSize;
    if (valid.maxDelay !== undefined) this.#policy = this.#policyFor(valid.maxDelay);
    if (valid.channelCap !== undefined) this.#channelCap = valid.channelCap;
    if (valid.concurrency !== undefined) this.#concurrency = valid.concurrency;
    // A shorter delay or a smaller batch may make the queue due right now.
    this.#wake.disarm();
    this.#schedulePump();
  }

  get stats(): BatchedFnStats {
    return this.#stats.snapshot({
      queued: this.#queuedItems,
      queuedRows: this.#queuedRows,
      inFlight: this.#running.size,
      inFlightItems: this.#inFlightItems,
      workers: this.#executor.workerStats(),
      costModel: this.#cost.confident ? { fixedMs: this.#cost.a, perRowMs: this.#cost.b, samples: this.#cost.samples } : undefined,
    });
  }

  /** The handler never runs inside a caller's stack: dispatch always starts from a microtask. */
  #schedulePump(): void {
    if (this.#pumpScheduled) return;
    this.#pumpScheduled = true;
    this.#tickTime = now();
    void settled.then(this.#pumpOnArrival);
  }

  readonly #pumpOnArrival = (): void => {
    this.#pumpScheduled = false;
    if (this.#arrivedRows > 0) {
      this.#arrivals.add(this.#arrivedRows, this.#tickTime);
      this.#arrivedRows = 0;
    }
    this.#pump('arrival');
  };

  readonly #pumpAfterYield = (): void => {
    this.#yielding = undefined;
    this.#pump('completion');
  };

  #pump(trigger: PumpTrigger): void {
    if (this.#inPump || this.#destroyed) return;
    this.#inPump = true;
    try {
      while (this.#queuedItems > 0 && this.#running.size < this.#concurrency && this.#executor.hasCapacity()) {
        // One clock reading serves the yield check, the policy and the batch's start time.
        const t = now();
        if (this.#loopYield.due(t)) {
          this.#yielding ??= setImmediate(this.#pumpAfterYield);
          return;
        }
        const choice = this.#lanes === undefined ? this.#judge(this.#defaultLane, t, trigger) : this.#choose(t, trigger);
        if (typeof choice === 'number') {
          this.#wake.arm(choice);
          return;
        }
        this.#dispatch(choice, t);
      }
      // Nothing left to wait for: a batch finishing will pump again.
      this.#wake.disarm();
      this.#resolveIfIdle();
    } finally {
      this.#inPump = false;
    }
  }

  /** Whether one lane should be sent now (and why), or when to look at it again. */
  #judge(lane: Lane<I, O>, t: number, trigger: PumpTrigger): Choice<I, O> | number {
    const max = this.#maxBatchSize;
    // FIFO packing: once the queued rows reach the limit, the head batch cannot grow by waiting.
    if (lane.rows >= max) return { lane, reason: 'full', maxRows: max };
    if (this.#closing) return { lane, reason: 'close', maxRows: max };
    if (this.#preferred !== undefined && lane.rows >= (this.#preferred[0] as number)) {
      // The largest preferred size the queue can fill that the head call fits in. A size smaller
      // than the head would take nothing: that decision, repeated, used to spin a core forever.
      const head = lane.headQueue()?.headRows() ?? 0;
      let target = 0;
      for (const size of this.#preferred) if (size <= lane.rows && size >= head) target = size;
      if (target > 0) return { lane, reason: 'preferred', maxRows: target };
    }
    lane.maxRows = max;
    const decision = this.#policy.decide(lane, t, trigger);
    return typeof decision === 'number' ? decision : { lane, reason: decision, maxRows: max };
  }

  /**
   * With batch keys: of the lanes ready to go, the one holding the most
   * urgent call (highest priority, then oldest) goes first; with none ready,
   * wake up when the first one will be.
   */
  #choose(t: number, trigger: PumpTrigger): Choice<I, O> | number {
    let best: Choice<I, O> | undefined;
    let bestPriority = Number.NEGATIVE_INFINITY;
    let bestArrival = Number.POSITIVE_INFINITY;
    let wake = Number.POSITIVE_INFINITY;
    for (const lane of (this.#lanes as Map<unknown, Lane<I, O>>).values()) {
      if (lane.items === 0) continue;
      const judged = this.#judge(lane, t, trigger);
      if (typeof judged === 'number') {
        if (judged < wake) wake = judged;
        continue;
      }
      const priority = lane.topPriority;
      const arrival = lane.oldestArrival;
      if (priority > bestPriority || (priority === bestPriority && arrival < bestArrival)) {
        best = judged;
        bestPriority = priority;
        bestArrival = arrival;
      }
    }
    return best ?? wake;
  }

  #dispatch(choice: Choice<I, O>, started: number): void {
    const { lane, reason } = choice;
    this.#rejectOversized(lane, this.#maxBatchSize);
    // A batch always takes at least the head call (which fits in maxBatchSize once oversized calls are gone).
    const maxRows = Math.max(Math.min(choice.maxRows, this.#maxBatchSize), lane.headQueue()?.headRows() ?? 0);
    const batch = new RunningBatch<I, O>(reason, started);
    const before = batch.rows;
    lane.take(maxRows, started, batch, this.#stats.wait);
    const items = batch.inputs.length;
    lane.items -= items;
    lane.rows -= batch.rows - before;
    this.#queuedItems -= items;
    this.#queuedRows -= batch.rows;
    this.#settleQueueTotals(lane);
    if (batch.handles !== undefined && this.#sheds(started)) this.#shedHopeless(batch);
    if (batch.inputs.length === 0) return;
    this.#inFlightItems += batch.inputs.length;
    this.#stats.dispatched(reason);
    this.#running.add(batch);

    let inputs = batch.inputs;
    if (this.#pad !== undefined) {
      const target = this.#preferred?.find((size) => size >= batch.rows) ?? this.#maxBatchSize;
      if (target > batch.rows) {
        let padded: unknown;
        try {
          padded = this.#pad(batch.inputs.slice(), target);
        } catch (error) {
          this.#finish(batch, undefined, error, true);
          return;
        }
        const problem = padProblem(padded, batch.inputs);
        if (problem !== undefined) {
          this.#finish(batch, undefined, new InvalidPadError(problem), true);
          return;
        }
        inputs = padded as I[];
        batch.padded = inputs.length;
      }
    }
    batch.sent = inputs;
    if (this.#batchTimeout !== undefined) batch.timer = setTimeout(onBatchTimeout, this.#batchTimeout, this, batch);
    let result: unknown;
    try {
      result = this.#executor.run(inputs);
    } catch (error) {
      this.#finish(batch, undefined, error, true);
      return;
    }
    if (isOutputArray(result)) {
      this.#finish(batch, result, undefined, false);
      return;
    }
    const ok = (outputs: unknown): void => this.#finish(batch, outputs, undefined, false);
    const fail = (error: unknown): void => this.#finish(batch, undefined, error, true);
    // Anything else is adopted as a promise would adopt it: a thenable whose `then` throws, or
    // resolves twice, settles the batch once and never throws here; a plain value is a mismatch.
    if (result instanceof Promise) promiseThen.call(result, ok, fail);
    else promiseThen.call(Promise.resolve(result), ok, fail);
  }

  /** `batchTimeout` passed: free the runner, then fail the batch's callers; a late result is dropped. */
  timeOut(batch: RunningBatch<I, O>): void {
    if (!this.#running.has(batch)) return;
    this.#executor.abandon(batch.sent as I[]);
    this.#finish(batch, undefined, new BatchTimeoutError(this.#batchTimeout as number), true);
  }

  /** Only reachable after configure() lowered maxBatchSize below calls already queued. */
  #rejectOversized(lane: Lane<I, O>, max: number): void {
    for (let queue = lane.headQueue(); queue !== undefined && queue.headRows() > max; queue = lane.headQueue()) {
      const rows = queue.headRows();
      const resolve = queue.headResolver();
      queue.headHandle()?.dispose();
      queue.shift();
      lane.items--;
      lane.rows -= rows;
      this.#queuedItems--;
      this.#queuedRows -= rows;
      this.#settleQueueTotals(lane);
      this.#fail(resolve, new ItemTooLargeError(rows, max), 'ERR_ITEM_TOO_LARGE');
    }
  }

  /** Whether predictions may shed calls now: a confident curve, and recent evidence (see PROBE_AFTER_MS). */
  #sheds(t: number): boolean {
    return this.#cost.confident && (this.#running.size > 0 || t - this.#lastCostAt < PROBE_AFTER_MS);
  }

  /** Queue totals are sums of fractional sizes: once a lane (or the queue) is empty, they are exactly 0. */
  #settleQueueTotals(lane: Lane<I, O>): void {
    if (lane.items === 0) {
      lane.rows = 0;
      if (lane !== this.#defaultLane) this.#lanes?.delete(lane.key);
    }
    if (this.#queuedItems === 0) this.#queuedRows = 0;
  }

  /**
   * Calls whose deadline falls before this batch can finish are answered now
   * with a predicted timeout, instead of spending model time on an answer
   * nobody will read.
   */
  #shedHopeless(batch: RunningBatch<I, O>): void {
    const handles = batch.handles as CallHandle<I, O>[];
    const finish = batch.started + this.#cost.predict(batch.rows);
    if (!handles.some((h) => h !== undefined && h.deadline < finish)) return;
    const inputs: I[] = [];
    const resolvers: (Resolve<O> | undefined)[] = [];
    const kept: CallHandle<I, O>[] = [];
    for (let i = 0; i < batch.inputs.length; i++) {
      const handle = handles[i];
      if (handle !== undefined && handle.deadline < finish) {
        handle.dispose();
        this.#fail(batch.resolvers[i] as Resolve<O>, new TimeoutError(handle.timeout, true), 'ERR_TIMEOUT');
        continue;
      }
      if (handle !== undefined) {
        handle.index = inputs.length;
        kept[inputs.length] = handle;
      }
      inputs.push(batch.inputs[i] as I);
      resolvers.push(batch.resolvers[i]);
    }
    batch.inputs = inputs;
    batch.resolvers = resolvers;
    batch.handles = kept;
  }

  /**
   * When would a call of `rows` rows made now be answered? The running
   * batches finish at their predicted cost; then the queue ahead drains in
   * full batches across the free slots; then this call's own batch runs.
   */
  #predictFinish(rows: number, t: number): number {
    const cost = this.#cost;
    const max = this.#maxBatchSize;
    let freeAt = t;
    if (this.#running.size >= this.#concurrency) {
      freeAt = Number.POSITIVE_INFINITY;
      for (const batch of this.#running) freeAt = Math.min(freeAt, batch.started + cost.predict(batch.rows));
      freeAt = Math.max(t, freeAt);
    }
    const fullBatchesAhead = Math.floor(this.#queuedRows / max);
    const start = freeAt + (fullBatchesAhead * cost.predict(max)) / this.#concurrency;
    return start + cost.predict(Math.min(max, this.#queuedRows - fullBatchesAhead * max + rows));
  }

  #finish(batch: RunningBatch<I, O>, outputs: unknown, error: unknown, failed: boolean): void {
    if (!this.#running.delete(batch)) return; // destroy() or batchTimeout already released these callers
    if (batch.timer !== undefined) clearTimeout(batch.timer);
    const finished = now();
    const execMs = finished - batch.started;
    const { resolvers, handles } = batch;
    const size = resolvers.length;
    const expected = batch.padded > 0 ? batch.padded : size;
    this.#inFlightItems -= liveCount(resolvers);
    if (!failed && (!isOutputArray(outputs) || outputs.length !== expected)) {
      failed = true;
      error = new BatchSizeMismatchError(expected, isOutputArray(outputs) ? outputs.length : undefined);
    }
    if (!failed) {
      this.#cost.observe(batch.padded > 0 ? Math.max(batch.rows, batch.padded) : batch.rows, execMs);
      this.#lastCostAt = finished;
    }
    const key = failed ? failureKey(error) : '';
    // Filler rows from `pad` sit after the real ones; their outputs are never read.
    const results = outputs as ArrayLike<O | Error>;
    let completed = 0;
    for (let i = 0; i < size; i++) {
      const resolve = resolvers[i];
      if (resolve === undefined) continue; // released by abort or timeout; its output is dropped
      // A disposed handle makes later aborts no-ops; plain calls cannot be released, so their slot needs no clearing.
      if (handles !== undefined) handles[i]?.dispose();
      if (failed) {
        this.#fail(resolve, error, key);
      } else {
        const output = results[i];
        if (output instanceof Error) {
          this.#fail(resolve, output, 'handler');
        } else {
          completed++;
          resolve(output as O);
        }
      }
    }
    this.#stats.completed += completed;
    this.#report(batch, size, execMs, !failed);
    this.#resolveIfIdle();
    this.#pump('completion');
  }

  #report(batch: RunningBatch<I, O>, items: number, execMs: number, ok: boolean): void {
    this.#stats.recordBatch(batch.rows, execMs);
    if (this.#onBatch === undefined && !batchChannel.hasSubscribers) return;
    const info: BatchInfo = {
      name: this.#name,
      items,
      rows: batch.rows,
      reason: batch.reason,
      maxWaitMs: batch.maxWait,
      execMs,
      ok,
    };
    batchChannel.publish(info);
    if (this.#onBatch !== undefined) {
      try {
        this.#onBatch(info);
      } catch (error) {
        // A broken observer must not break serving; surface it the way Node surfaces other misuse.
        process.emitWarning(`batched-fn: onBatch threw: ${String(error)}`, 'BatchedFnWarning');
      }
    }
  }

  #release(handle: CallHandle<I, O>, error: unknown, key: string): void {
    if (handle.state === QUEUED) {
      const lane = handle.lane as Lane<I, O>;
      const queue = handle.queue as CallQueue<I, O>;
      const rows = queue.rowsAt(handle.seq);
      const resolve = queue.remove(handle.seq);
      handle.dispose();
      if (resolve === undefined) return;
      lane.items--;
      lane.rows -= rows;
      this.#queuedItems--;
      this.#queuedRows -= rows;
      this.#settleQueueTotals(lane);
      this.#fail(resolve, error, key);
      this.#resolveIfIdle();
    } else if (handle.state === RUNNING) {
      const resolvers = (handle.batch as RunningBatch<I, O>).resolvers;
      const resolve = resolvers[handle.index];
      resolvers[handle.index] = undefined;
      handle.dispose();
      if (resolve !== undefined) {
        // Released from a running batch: no longer in flight, so calls = completed + failed + queued + inFlightItems holds.
        this.#inFlightItems--;
        this.#fail(resolve, error, key);
      }
    }
  }

  /**
   * Rejects through the resolver: adopting a rejected promise settles the
   * caller's promise as rejected. Not keeping each call's `reject` function
   * saves about 50 bytes per queued call; failures pay two extra microtask turns.
   */
  #fail(resolve: Resolve<O>, error: unknown, key: string): void {
    this.#stats.fail(key);
    resolve(Promise.reject(error));
  }

  #refuse(error: unknown, key = failureKey(error)): Promise<never> {
    this.#stats.fail(key);
    return Promise.reject(error);
  }

  #allLanes(): Lane<I, O>[] {
    return this.#lanes === undefined ? [this.#defaultLane] : [this.#defaultLane, ...this.#lanes.values()];
  }

  #resolveIfIdle(): void {
    if (this.#onIdle !== undefined && this.#queuedItems === 0 && this.#running.size === 0) {
      const onIdle = this.#onIdle;
      this.#onIdle = undefined;
      onIdle();
    }
  }
}
