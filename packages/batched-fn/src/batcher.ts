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
import { onCallTimeout, PendingCall, QUEUED, RUNNING, SETTLED } from './pending-call.js';
import { FixedDelayPolicy } from './policy/fixed-delay.js';
import type { PumpTrigger, SchedulingPolicy } from './policy/types.js';
import { RingQueue } from './queue.js';
import type { BatchedFnStats, BatchInfo, DispatchReason } from './stats.js';
import { StatsRecorder } from './stats-recorder.js';

/** Subscribers get a `BatchInfo` for every settled batch of every batcher. */
export const batchChannel = diagnostics.channel('batched-fn:batch');

const now = (): number => performance.now();

class RunningBatch<I, O> {
  constructor(
    readonly calls: PendingCall<I, O>[],
    readonly rows: number,
    readonly reason: DispatchReason,
    readonly maxWaitMs: number,
    readonly started: number,
  ) {}
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

  readonly #queue = new RingQueue<PendingCall<I, O>>(256);
  #queuedItems = 0;
  #queuedRows = 0;
  readonly #running = new Set<RunningBatch<I, O>>();
  #inFlightItems = 0;
  readonly #stats = new StatsRecorder();

  #pumpScheduled = false;
  #inPump = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #immediate: ReturnType<typeof setImmediate> | undefined;
  #timerDue = Number.POSITIVE_INFINITY;

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
    }

    const call = new PendingCall<I, O>(this, input, rows, now());
    const promise = new Promise<O>((resolve, reject) => {
      call.resolve = resolve;
      call.reject = reject;
    });
    this.#queue.push(call);
    this.#queuedItems++;
    this.#queuedRows += rows;
    if (signal !== undefined) {
      call.signal = signal;
      signal.addEventListener('abort', call, { once: true });
    }
    if (timeout !== undefined) {
      call.timeout = timeout;
      call.timer = setTimeout(onCallTimeout, timeout, call);
    }
    this.#schedulePump();
    return promise;
  }

  /** AbortSignal fired: a queued call leaves the queue; a running one is released. */
  abort(call: PendingCall<I, O>): void {
    this.#release(call, (call.signal as AbortSignal).reason, 'aborted');
  }

  /** Deadline passed. */
  expire(call: PendingCall<I, O>): void {
    this.#release(call, new TimeoutError(call.timeout), 'ERR_TIMEOUT');
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
    const error = reason ?? new ClosedError('The batcher was destroyed');
    const key = reason === undefined ? 'ERR_CLOSED' : failureKey(reason);
    this.#disarmTimer();
    this.#queue.drain((call) => {
      if (call.state === QUEUED) this.#settleFailed(call, error, key);
    });
    this.#queuedItems = 0;
    this.#queuedRows = 0;
    for (const batch of this.#running) {
      for (const call of batch.calls) if (call.state === RUNNING) this.#settleFailed(call, error, key);
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
    queueMicrotask(this.#pumpOnArrival);
  }

  readonly #pumpOnArrival = (): void => {
    this.#pumpScheduled = false;
    this.#pump('arrival');
  };

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
        let reason: DispatchReason;
        if (this.#queuedRows >= this.#maxBatchSize) {
          // FIFO packing: once the queued rows reach the limit, the head batch cannot grow by waiting.
          reason = 'full';
        } else if (this.#closing) {
          reason = 'close';
        } else {
          const decision = this.#policy.decide(this.#oldestLive().arrival, now(), trigger);
          if (typeof decision === 'number') {
            this.#armTimer(decision);
            return;
          }
          reason = decision;
        }
        this.#dispatch(reason);
      }
      // Nothing left to wait for: a batch finishing will pump again.
      this.#disarmTimer();
      this.#resolveIfIdle();
    } finally {
      this.#inPump = false;
    }
  }

  #oldestLive(): PendingCall<I, O> {
    let head = this.#queue.peek() as PendingCall<I, O>;
    while (head.state !== QUEUED) {
      this.#queue.shift();
      head = this.#queue.peek() as PendingCall<I, O>;
    }
    return head;
  }

  #dispatch(reason: DispatchReason): void {
    const started = now();
    const calls: PendingCall<I, O>[] = [];
    const inputs: I[] = [];
    const maxRows = this.#maxBatchSize;
    let rows = 0;
    let maxWait = 0;
    for (let call = this.#queue.peek(); call !== undefined; call = this.#queue.peek()) {
      if (call.state !== QUEUED) {
        this.#queue.shift();
        continue;
      }
      if (rows + call.rows > maxRows) {
        if (calls.length > 0) break;
        // Only reachable after configure() lowered maxBatchSize below an item already queued.
        this.#queue.shift();
        this.#queuedItems--;
        this.#queuedRows -= call.rows;
        this.#settleFailed(call, new ItemTooLargeError(call.rows, maxRows), 'ERR_ITEM_TOO_LARGE');
        continue;
      }
      this.#queue.shift();
      call.state = RUNNING;
      calls.push(call);
      inputs.push(call.input);
      rows += call.rows;
      const wait = started - call.arrival;
      this.#stats.wait.record(wait);
      if (wait > maxWait) maxWait = wait;
      if (rows === maxRows) break;
    }
    if (calls.length === 0) return;
    this.#queuedItems -= calls.length;
    this.#queuedRows -= rows;
    this.#inFlightItems += calls.length;
    this.#stats.dispatched(reason);
    const batch = new RunningBatch(calls, rows, reason, maxWait, started);
    this.#running.add(batch);

    let result: Outputs<O> | Promise<Outputs<O>>;
    try {
      result = this.#executor.run(inputs);
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
    const { calls } = batch;
    this.#inFlightItems -= calls.length;
    if (!failed && (!isOutputArray(outputs) || outputs.length !== calls.length)) {
      failed = true;
      error = new BatchSizeMismatchError(calls.length, isOutputArray(outputs) ? outputs.length : undefined);
    }
    if (failed) {
      const key = failureKey(error);
      for (const call of calls) if (call.state === RUNNING) this.#settleFailed(call, error, key);
    } else {
      const results = outputs as ArrayLike<O | Error>;
      for (let i = 0; i < calls.length; i++) {
        const call = calls[i] as PendingCall<I, O>;
        if (call.state !== RUNNING) continue; // released by abort or timeout; its output is dropped
        const output = results[i];
        if (output instanceof Error) {
          this.#settleFailed(call, output, 'handler');
        } else {
          call.state = SETTLED;
          this.#cleanup(call);
          this.#stats.completed++;
          call.resolve(output as O);
        }
      }
    }
    this.#report(batch, execMs, !failed);
    this.#resolveIfIdle();
    this.#pump('completion');
  }

  #report(batch: RunningBatch<I, O>, execMs: number, ok: boolean): void {
    this.#stats.recordBatch(batch.rows, execMs);
    if (this.#onBatch === undefined && !batchChannel.hasSubscribers) return;
    const info: BatchInfo = {
      name: this.#name,
      items: batch.calls.length,
      rows: batch.rows,
      reason: batch.reason,
      maxWaitMs: batch.maxWaitMs,
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

  #release(call: PendingCall<I, O>, error: unknown, key: string): void {
    if (call.state === QUEUED) {
      this.#queuedItems--;
      this.#queuedRows -= call.rows;
      this.#settleFailed(call, error, key);
      this.#resolveIfIdle();
    } else if (call.state === RUNNING) {
      this.#settleFailed(call, error, key);
    }
  }

  #settleFailed(call: PendingCall<I, O>, error: unknown, key: string): void {
    call.state = SETTLED;
    this.#cleanup(call);
    this.#stats.fail(key);
    call.reject(error);
  }

  #cleanup(call: PendingCall<I, O>): void {
    if (call.timer !== undefined) {
      clearTimeout(call.timer);
      call.timer = undefined;
    }
    if (call.signal !== undefined) {
      call.signal.removeEventListener('abort', call);
      call.signal = undefined;
    }
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
