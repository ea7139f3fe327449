import { CallHandle, onCallTimeout } from './call-handle.js';
import { Dispatcher, now } from './dispatcher.js';
import { ClosedError, failureKey, ItemTooLargeError, QueueFullError, TimeoutError } from './errors.js';
import type { Executor } from './executor/types.js';
import type { Lane } from './lane.js';
import {
  type BatchTracing,
  type CallOptions,
  type CloseOptions,
  type ResolvedBatchingOptions,
  type RuntimeOptions,
  validateCallOptions,
  validateRuntimeOptions,
} from './options.js';
import { captureTrace } from './tracing.js';
import { describeValue, expectDuration, rowsOf } from './validate.js';
import type { CallQueue, Resolve } from './queue.js';
import type { BatchedFnSettings, BatchedFnStats } from './stats.js';


/**
 * Captures a new promise's resolver without allocating a closure per call:
 * the executor runs synchronously inside `new Promise`, so a shared slot is safe.
 */
let capturedResolve: Resolve<unknown> | undefined;
function captureResolve(resolve: Resolve<unknown>): void {
  capturedResolve = resolve;
}

function validateCloseOptions(options: CloseOptions): void {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`Expected close options to be an object, got ${describeValue(options)}`);
  }
  if (options.timeout !== undefined) expectDuration('timeout', options.timeout);
}

/**
 * The call API: intake (checks, cancellation, the queue cap, early
 * shedding) and lifecycle (ready, close, destroy, configure, stats). The
 * dispatcher it shares its state with decides when queued calls become
 * batches and runs them.
 */
export class Batcher<I, O> {
  readonly #d: Dispatcher<I, O>;
  readonly #size: ((input: I) => number) | undefined;
  readonly #batchKey: ((input: I) => string | number) | undefined;
  readonly #latencyTarget: number | undefined;
  readonly #tracing: BatchTracing | undefined;
  /** Worker mode: refuses an input that can never reach a thread (a buffer already transferred). */
  readonly #admit: ((input: I) => Error | undefined) | undefined;
  #channelCap: number;
  #closed: Promise<void> | undefined;

  constructor(executor: Executor<I, O>, options: ResolvedBatchingOptions<I>) {
    this.#d = new Dispatcher(executor, options);
    this.#size = options.size;
    this.#batchKey = options.batchKey;
    this.#latencyTarget = options.latencyTarget;
    this.#tracing = options.tracing;
    this.#admit = executor.admit?.bind(executor);
    this.#channelCap = options.channelCap;
  }

  call(input: I, options?: CallOptions): Promise<O> {
    const d = this.#d;
    d.stats.calls++;
    // The common call (no options, no size, no keys, no latency target, inline) takes this short
    // path, small enough for V8 to inline into the caller; everything else goes through #callWithOptions.
    if (options !== undefined || d.closing || this.#size !== undefined || this.#batchKey !== undefined || this.#latencyTarget !== undefined || this.#admit !== undefined || this.#tracing !== undefined) {
      return this.#callWithOptions(input, options);
    }
    if (d.lanes.items >= this.#channelCap) return this.#refuse(new QueueFullError(this.#channelCap));
    return this.#enqueue(d.lanes.defaultLane, d.lanes.defaultQueue, input, 1, undefined);
  }

  #callWithOptions(input: I, options: CallOptions | undefined): Promise<O> {
    const d = this.#d;
    if (d.closing) return this.#refuse(new ClosedError());
    if (this.#admit !== undefined) {
      const refused = this.#admit(input);
      if (refused !== undefined) return this.#refuse(refused);
    }
    let rows = 1;
    if (this.#size !== undefined) {
      try {
        rows = rowsOf(this.#size, input);
      } catch (error) {
        return this.#refuse(error);
      }
      if (rows > d.maxBatchSize) return this.#refuse(new ItemTooLargeError(rows, d.maxBatchSize));
    }
    if (d.lanes.items >= this.#channelCap) return this.#refuse(new QueueFullError(this.#channelCap));
    let key: unknown;
    if (this.#batchKey !== undefined) {
      try {
        key = this.#batchKey(input);
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
    let arrival: number | undefined;
    if (options !== undefined) {
      try {
        validateCallOptions(options);
      } catch (error) {
        return this.#refuse(error);
      }
      signal = options.signal;
      timeout = options.timeout;
      priority = options.priority ?? 0;
      arrival = options.arrival;
      if (signal?.aborted) return this.#refuse(signal.reason, 'aborted');
      if (signal !== undefined || timeout !== undefined) handle = new CallHandle<I, O>(this);
    }
    const trace = this.#tracing === undefined ? undefined : (options?.trace ?? captureTrace(this.#tracing));
    if (trace !== undefined) (handle ??= new CallHandle<I, O>(this)).trace = trace;
    if (timeout !== undefined || this.#latencyTarget !== undefined) {
      const t = now();
      if (d.shedder.active(t, d.running.size)) {
        const budget = Math.min(timeout ?? Number.POSITIVE_INFINITY, this.#latencyTarget ?? Number.POSITIVE_INFINITY);
        const finish = d.shedder.predictFinish(rows, t, d.running, d.concurrency, d.lanes.rows, d.maxBatchSize);
        if (finish > t + budget) return this.#refuse(new TimeoutError(budget, true));
      }
    }
    const lane = d.lanes.laneFor(key);
    const promise = this.#enqueue(lane, lane.queueFor(priority), input, rows, handle, arrival);
    if (handle !== undefined) {
      if (signal !== undefined) {
        handle.signal = signal;
        signal.addEventListener('abort', handle, { once: true });
      }
      if (timeout !== undefined) {
        handle.timeout = timeout;
        handle.deadline = d.tickTime + timeout;
        handle.timer = setTimeout(onCallTimeout, timeout, handle);
      }
    }
    return promise;
  }

  #enqueue(lane: Lane<I, O>, queue: CallQueue<I, O>, input: I, rows: number, handle: CallHandle<I, O> | undefined, arrival?: number): Promise<O> {
    const d = this.#d;
    const promise = new Promise<O>(captureResolve as (resolve: Resolve<O>) => void);
    // Reading the clock costs about as much as the rest of a call, so calls
    // made before the scheduled pump runs share one reading. They arrive in
    // the same run of microtasks, so their true arrival times differ by less
    // than the work queued ahead of the pump.
    if (!d.pumpScheduled) d.schedulePump();
    const arrived = arrival === undefined || arrival > d.tickTime ? d.tickTime : arrival;
    d.lanes.push(lane, queue, input, capturedResolve as Resolve<O>, arrived, rows, handle);
    if (handle !== undefined) handle.arrival = arrived;
    d.arrivedRows += rows;
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

  #release(handle: CallHandle<I, O>, error: unknown, key: string): void {
    const d = this.#d;
    const place = handle.place;
    if (place.state === 'queued') {
      const resolve = d.lanes.remove(place.lane, place.queue, place.seq);
      handle.dispose();
      if (resolve === undefined) return;
      d.fail(resolve, error, key);
      d.resolveIfIdle();
    } else if (place.state === 'running') {
      d.releaseRunning(place.batch, place.index, handle, error, key);
    }
  }

  ready(): Promise<void> {
    if (this.#d.closing) return Promise.reject(new ClosedError());
    return this.#d.executor.ready();
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
    const d = this.#d;
    if (this.#closed === undefined) {
      d.closing = true;
      const idle = new Promise<void>((resolve) => {
        d.onIdle = resolve;
      });
      this.#closed = idle.then(() => d.executor.close());
      d.schedulePump();
      d.resolveIfIdle();
    }
    const limit = options?.timeout;
    if (limit !== undefined && !d.destroyed) {
      const timer = setTimeout(() => this.destroy(new ClosedError(`close() timed out after ${limit} ms; calls still queued or running were rejected`)), limit);
      const clear = (): void => clearTimeout(timer);
      this.#closed.then(clear, clear);
    }
    return this.#closed;
  }

  destroy(reason?: unknown): void {
    const d = this.#d;
    if (d.destroyed) return;
    d.destroyed = true;
    d.closing = true;
    this.#closed ??= Promise.resolve();
    if (d.yielding !== undefined) clearImmediate(d.yielding);
    const error = reason ?? new ClosedError('The batcher was destroyed');
    const key = reason === undefined ? 'ERR_CLOSED' : failureKey(reason);
    d.wake.disarm();
    d.lanes.drain((resolve, handle) => {
      handle?.dispose();
      d.fail(resolve, error, key);
    });
    // Running batches are released too: a late result finds its batch gone and is neither
    // delivered nor reported, and a handler that never settles holds nothing.
    for (const batch of d.running) {
      if (batch.timer !== undefined) clearTimeout(batch.timer);
      batch.timer = undefined;
      const { resolvers, handles } = batch;
      for (let i = 0; i < resolvers.length; i++) {
        const resolve = resolvers[i];
        if (resolve === undefined) continue;
        resolvers[i] = undefined;
        d.inFlightItems--;
        handles?.[i]?.dispose();
        d.fail(resolve, error, key);
      }
    }
    d.running.clear();
    d.executor.destroy(error);
    const onIdle = d.onIdle;
    d.onIdle = undefined;
    onIdle?.();
  }

  configure(options: RuntimeOptions): void {
    const d = this.#d;
    const valid = validateRuntimeOptions(options);
    const largestPreferred = d.preferred?.at(-1);
    if (valid.maxBatchSize !== undefined && largestPreferred !== undefined && largestPreferred > valid.maxBatchSize) {
      throw new RangeError(`Expected \`maxBatchSize\` to be at least the largest preferredBatchSizes entry (${largestPreferred}), got ${valid.maxBatchSize}`);
    }
    if (valid.maxBatchSize !== undefined) d.maxBatchSize = valid.maxBatchSize;
    if (valid.maxDelay !== undefined) d.setMaxDelay(valid.maxDelay);
    if (valid.channelCap !== undefined) this.#channelCap = valid.channelCap;
    if (valid.concurrency !== undefined) d.concurrency = valid.concurrency;
    // A shorter delay or a smaller batch may make the queue due right now.
    d.wake.disarm();
    d.schedulePump();
  }

  get settings(): BatchedFnSettings {
    const d = this.#d;
    return { maxBatchSize: d.maxBatchSize, maxDelay: d.maxDelay, channelCap: this.#channelCap, concurrency: d.concurrency };
  }

  get stats(): BatchedFnStats {
    const d = this.#d;
    const cost = d.cost;
    return d.stats.snapshot({
      queued: d.lanes.items,
      queuedRows: d.lanes.rows,
      inFlight: d.running.size,
      inFlightItems: d.inFlightItems,
      workers: d.executor.workerStats(),
      costModel: cost.confident ? { fixedMs: cost.a, perRowMs: cost.b, samples: cost.samples } : undefined,
    });
  }

  #refuse(error: unknown, key = failureKey(error)): Promise<never> {
    this.#d.stats.fail(key);
    return Promise.reject(error);
  }
}
