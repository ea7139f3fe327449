import diagnostics from 'node:diagnostics_channel';
import {
  BatchedFnError,
  BatchSizeMismatchError,
  ClosedError,
  ItemTooLargeError,
  QueueFullError,
  TimeoutError,
} from './errors.js';
import type { Executor, Outputs } from './executor/types.js';
import {
  type CallOptions,
  type ResolvedBatchingOptions,
  type RuntimeOptions,
  validateCallOptions,
  validateRuntimeOptions,
} from './options.js';
import { CallHandle, onCallTimeout, QUEUED, RUNNING } from './call-handle.js';
import { FixedDelayPolicy } from './policy/fixed-delay.js';
import type { PumpTrigger, SchedulingPolicy } from './policy/types.js';
import { type BatchBuilder, CallQueue, type Resolve } from './queue.js';
import type { BatchedFnStats, BatchInfo, DispatchReason } from './stats.js';
import { StatsRecorder } from './stats-recorder.js';

/** Subscribers get a `BatchInfo` for every settled batch of every batcher. */
export const batchChannel = diagnostics.channel('batched-fn:batch');

const now = (): number => performance.now();

/**
 * Longest stretch the dispatcher may keep handing out batches without the
 * event loop turning. A synchronous handler, or callers that call again as
 * soon as they are answered, would otherwise chain dispatches through
 * microtasks forever and starve timers and sockets: the server would stop
 * accepting connections exactly when it is busiest. After this long we hop
 * through `setImmediate`, which costs one loop turn per stretch, not per batch.
 * A loop turn after a long synchronous stretch measured about 110 us on our
 * 2-core machines, so yielding after every 5 ms batch cost 2 % of throughput;
 * 25 ms keeps that under 0.5 % while bounding starvation to 25 ms plus one batch.
 */
const YIELD_AFTER_MS = 25;

/** A dispatched batch. A resolver slot is emptied when its caller is released early. */
class RunningBatch<I, O> implements BatchBuilder<I, O> {
  readonly inputs: I[] = [];
  readonly resolvers: (Resolve<O> | undefined)[] = [];
  handles: CallHandle<I, O>[] | undefined = undefined;
  rows = 0;
  maxWait = 0;
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

/**
 * Captures a new promise's resolver without allocating a closure per call:
 * the executor runs synchronously inside `new Promise`, so a shared slot is safe.
 */
let capturedResolve: Resolve<unknown> | undefined;

/**
 * The pump is scheduled as a reaction on a settled promise rather than with
 * `queueMicrotask`, which in Node wraps every callback in an async resource
 * and costs several times more per tick.
 */
const settled = Promise.resolve();
function captureResolve(resolve: Resolve<unknown>): void {
  capturedResolve = resolve;
}

function failureKey(error: unknown): string {
  return error instanceof BatchedFnError ? error.code : 'handler';
}

function isOutputArray(value: unknown): value is ArrayLike<unknown> {
  return Array.isArray(value) || (ArrayBuffer.isView(value) && !(value instanceof DataView));
}

/**
 * The queue and the dispatcher. Calls are queued as records; a pump decides
 * when the head of the queue becomes a batch and hands it to the executor.
 *
 * The pump runs in a microtask, never inside a caller's stack, so a burst of
 * synchronous calls lands in one batch and a handler calling back into the
 * batcher cannot re-enter the dispatch loop.
 */
export class Batcher<I, O> {
  readonly #executor: Executor<I, O>;
  readonly #policy: FixedDelayPolicy;
  readonly #size: ((input: I) => number) | undefined;
  readonly #onBatch: ((info: BatchInfo) => void) | undefined;
  readonly #name: string;
  #maxBatchSize: number;
  #channelCap: number;
  #concurrency: number;

  readonly #queue = new CallQueue<I, O>(256);
  #queuedItems = 0;
  #queuedRows = 0;
  readonly #running = new Set<RunningBatch<I, O>>();
  #inFlightItems = 0;
  readonly #stats = new StatsRecorder();

  #pumpScheduled = false;
  /** Clock reading shared by every call until the scheduled pump runs (one reading per tick). */
  #tickTime = 0;
  #inPump = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #immediate: ReturnType<typeof setImmediate> | undefined;
  #timerDue = Number.POSITIVE_INFINITY;
  #yielding: ReturnType<typeof setImmediate> | undefined;
  #streakStart = -1;

  #closing = false;
  #destroyed = false;
  #closed: Promise<void> | undefined;
  #onIdle: (() => void) | undefined;

  constructor(executor: Executor<I, O>, options: ResolvedBatchingOptions<I>) {
    this.#executor = executor;
    this.#policy = new FixedDelayPolicy(options.maxDelay);
    this.#size = options.size;
    this.#onBatch = options.onBatch;
    this.#name = options.name;
    this.#maxBatchSize = options.maxBatchSize;
    this.#channelCap = options.channelCap;
    this.#concurrency = options.concurrency;
    executor.onCapacity(() => this.#pump('completion'));
  }

  get policy(): SchedulingPolicy {
    return this.#policy;
  }

  call(input: I, options?: CallOptions): Promise<O> {
    this.#stats.calls++;
    if (this.#closing) return this.#refuse(new ClosedError());
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
    let handle: CallHandle<I, O> | undefined;
    let signal: AbortSignal | undefined;
    let timeout: number | undefined;
    if (options !== undefined) {
      try {
        validateCallOptions(options);
      } catch (error) {
        return this.#refuse(error);
      }
      signal = options.signal;
      timeout = options.timeout;
      if (signal?.aborted) return this.#refuse(signal.reason, 'aborted');
      if (signal !== undefined || timeout !== undefined) handle = new CallHandle<I, O>(this);
    }

    const promise = new Promise<O>(captureResolve as (resolve: Resolve<O>) => void);
    const resolve = capturedResolve as Resolve<O>;
    // Reading the clock costs about as much as the rest of a call, so calls
    // made before the scheduled pump runs share one reading. They arrive in
    // the same run of microtasks, so their true arrival times differ by less
    // than the work queued ahead of the pump.
    if (!this.#pumpScheduled) this.#schedulePump();
    const seq = this.#queue.push(input, resolve, this.#tickTime, rows, handle);
    this.#queuedItems++;
    this.#queuedRows += rows;
    if (handle !== undefined) {
      handle.seq = seq;
      if (signal !== undefined) {
        handle.signal = signal;
        signal.addEventListener('abort', handle, { once: true });
      }
      if (timeout !== undefined) {
        handle.timeout = timeout;
        handle.timer = setTimeout(onCallTimeout, timeout, handle);
      }
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

  close(): Promise<void> {
    if (this.#closed === undefined) {
      this.#closing = true;
      const idle = new Promise<void>((resolve) => {
        this.#onIdle = resolve;
      });
      this.#closed = idle.then(() => this.#executor.close());
      this.#schedulePump();
      this.#resolveIfIdle();
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
    this.#disarmTimer();
    const queue = this.#queue;
    while (queue.skipRemoved()) {
      const resolve = queue.headResolver();
      queue.headHandle()?.dispose();
      queue.shift();
      this.#fail(resolve, error, key);
    }
    this.#queuedItems = 0;
    this.#queuedRows = 0;
    for (const batch of this.#running) {
      const { resolvers, handles } = batch;
      for (let i = 0; i < resolvers.length; i++) {
        const resolve = resolvers[i];
        if (resolve === undefined) continue;
        resolvers[i] = undefined;
        handles?.[i]?.dispose();
        this.#fail(resolve, error, key);
      }
    }
    this.#executor.destroy(error);
    const onIdle = this.#onIdle;
    this.#onIdle = undefined;
    onIdle?.();
  }

  configure(options: RuntimeOptions): void {
    const valid = validateRuntimeOptions(options);
    if (valid.maxBatchSize !== undefined) this.#maxBatchSize = valid.maxBatchSize;
    if (valid.maxDelay !== undefined) this.#policy.maxDelay = valid.maxDelay;
    if (valid.channelCap !== undefined) this.#channelCap = valid.channelCap;
    if (valid.concurrency !== undefined) this.#concurrency = valid.concurrency;
    // A shorter delay or a smaller batch may make the queue due right now.
    this.#disarmTimer();
    this.#schedulePump();
  }

  get stats(): BatchedFnStats {
    return this.#stats.snapshot({
      queued: this.#queuedItems,
      queuedRows: this.#queuedRows,
      inFlight: this.#running.size,
      inFlightItems: this.#inFlightItems,
      workers: this.#executor.workerStats(),
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
    this.#pump('arrival');
  };

  readonly #pumpAfterYield = (): void => {
    this.#yielding = undefined;
    this.#pump('completion');
  };

  readonly #endStreak = (): void => {
    this.#streakStart = -1;
  };

  /** True once dispatching has gone on for YIELD_AFTER_MS without an event-loop turn in between. */
  #mustYield(t: number): boolean {
    if (this.#streakStart < 0) {
      this.#streakStart = t;
      setImmediate(this.#endStreak);
      return false;
    }
    return t - this.#streakStart >= YIELD_AFTER_MS;
  }

  readonly #pumpOnTimer = (): void => {
    this.#timer = undefined;
    this.#immediate = undefined;
    this.#timerDue = Number.POSITIVE_INFINITY;
    this.#pump('timer');
  };

  #pump(trigger: PumpTrigger): void {
    if (this.#inPump || this.#destroyed) return;
    this.#inPump = true;
    try {
      while (this.#queuedItems > 0 && this.#running.size < this.#concurrency && this.#executor.hasCapacity()) {
        // One clock reading serves the yield check, the policy and the batch's start time.
        const t = now();
        if (this.#mustYield(t)) {
          this.#yielding ??= setImmediate(this.#pumpAfterYield);
          return;
        }
        let reason: DispatchReason;
        if (this.#queuedRows >= this.#maxBatchSize) {
          // FIFO packing: once the queued rows reach the limit, the head batch cannot grow by waiting.
          reason = 'full';
        } else if (this.#closing) {
          reason = 'close';
        } else {
          this.#queue.skipRemoved();
          const decision = this.#policy.decide(this.#queue.headArrival(), t, trigger);
          if (typeof decision === 'number') {
            this.#armTimer(decision);
            return;
          }
          reason = decision;
        }
        this.#dispatch(reason, t);
      }
      // Nothing left to wait for: a batch finishing will pump again.
      this.#disarmTimer();
      this.#resolveIfIdle();
    } finally {
      this.#inPump = false;
    }
  }

  #dispatch(reason: DispatchReason, started: number): void {
    const queue = this.#queue;
    const maxRows = this.#maxBatchSize;
    // Only reachable after configure() lowered maxBatchSize below items already queued.
    while (queue.skipRemoved() && queue.headRows() > maxRows) {
      const rows = queue.headRows();
      const resolve = queue.headResolver();
      queue.headHandle()?.dispose();
      queue.shift();
      this.#queuedItems--;
      this.#queuedRows -= rows;
      this.#fail(resolve, new ItemTooLargeError(rows, maxRows), 'ERR_ITEM_TOO_LARGE');
    }
    const batch = new RunningBatch<I, O>(reason, started);
    queue.takeBatch(maxRows, batch.started, batch, this.#stats.wait);
    const items = batch.inputs.length;
    if (items === 0) return;
    this.#queuedItems -= items;
    this.#queuedRows -= batch.rows;
    this.#inFlightItems += items;
    this.#stats.dispatched(reason);
    this.#running.add(batch);

    let result: Outputs<O> | Promise<Outputs<O>>;
    try {
      result = this.#executor.run(batch.inputs);
    } catch (error) {
      this.#finish(batch, undefined, error, true);
      return;
    }
    if (result !== null && typeof (result as Promise<Outputs<O>>)?.then === 'function') {
      (result as Promise<Outputs<O>>).then(
        (outputs) => this.#finish(batch, outputs, undefined, false),
        (error: unknown) => this.#finish(batch, undefined, error, true),
      );
    } else {
      this.#finish(batch, result as Outputs<O>, undefined, false);
    }
  }

  #finish(batch: RunningBatch<I, O>, outputs: unknown, error: unknown, failed: boolean): void {
    if (!this.#running.delete(batch)) return; // destroy() already released these callers
    const execMs = now() - batch.started;
    const { resolvers, handles } = batch;
    const size = resolvers.length;
    this.#inFlightItems -= size;
    if (!failed && (!isOutputArray(outputs) || outputs.length !== size)) {
      failed = true;
      error = new BatchSizeMismatchError(size, isOutputArray(outputs) ? outputs.length : undefined);
    }
    const key = failed ? failureKey(error) : '';
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
      const rows = this.#queue.rowsAt(handle.seq);
      const resolve = this.#queue.remove(handle.seq);
      handle.dispose();
      if (resolve === undefined) return;
      this.#queuedItems--;
      this.#queuedRows -= rows;
      this.#fail(resolve, error, key);
      this.#resolveIfIdle();
    } else if (handle.state === RUNNING) {
      const resolvers = (handle.batch as RunningBatch<I, O>).resolvers;
      const resolve = resolvers[handle.index];
      resolvers[handle.index] = undefined;
      handle.dispose();
      if (resolve !== undefined) this.#fail(resolve, error, key);
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

  #armTimer(due: number): void {
    if (due >= this.#timerDue) return;
    this.#disarmTimer();
    this.#timerDue = due;
    const delay = due - now();
    // Node's timers tick in whole milliseconds; a sub-millisecond remainder
    // (fractional maxDelay, or a timer that fired a hair early) re-checks on
    // the next loop turn instead of rounding up to a full millisecond.
    if (delay >= 1) this.#timer = setTimeout(this.#pumpOnTimer, delay);
    else this.#immediate = setImmediate(this.#pumpOnTimer);
  }

  #disarmTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    if (this.#immediate !== undefined) clearImmediate(this.#immediate);
    this.#timer = undefined;
    this.#immediate = undefined;
    this.#timerDue = Number.POSITIVE_INFINITY;
  }

  #resolveIfIdle(): void {
    if (this.#onIdle !== undefined && this.#queuedItems === 0 && this.#running.size === 0) {
      const onIdle = this.#onIdle;
      this.#onIdle = undefined;
      onIdle();
    }
  }
}
