import {
  type CancelKey,
  ClosedError,
  type FailureKey,
  failureKey,
  ItemTooLargeError,
  QueueFullError,
  TimeoutError,
} from '../errors.js';
import { type BatchTracing, type CallOptions, validateCallOptions } from '../options.js';
import type { Resolve } from '../queue.js';
import { captureTrace } from '../tracing.js';
import { describeValue, rowsOf } from '../validate.js';
import { CallHandle, type CallOwner } from './call-handle.js';
import type { LaneSet } from './lane-set.js';
import type { Lifecycle } from './lifecycle.js';
import { now, type Pump } from './pump.js';
import type { Runner, Shedding } from './runner.js';
import type { SequenceGate } from './sequence-gate.js';
import type { LiveSettings } from './settings.js';

/** Why a call is refused before it is queued: the error its caller gets and the key it is counted under. */
export interface Refusal {
  error: unknown;
  key: FailureKey;
}

/**
 * The checks every front makes on a call's options (batchedFn, the Redis
 * frontend's PendingCalls, batchedStream): they are valid, and the signal is
 * not already aborted. Returns the refusal, or undefined to go on. Never throws.
 */
export function refusalOf(options: CallOptions | undefined): Refusal | undefined {
  if (options === undefined) return undefined;
  try {
    validateCallOptions(options);
  } catch (error) {
    return { error, key: failureKey(error) };
  }
  if (options.signal?.aborted) return { error: options.signal.reason, key: 'aborted' };
  return undefined;
}

const refusalFor = (error: unknown): Refusal => ({ error, key: failureKey(error) });

export interface IntakeOptions<I> {
  size?: ((input: I) => number) | undefined;
  batchKey?: ((input: I) => string | number) | undefined;
  sequenceKey?: ((input: I) => string | number | undefined) | undefined;
  affinity?: ((input: I) => number | undefined) | undefined;
  /** With `affinity`: how many workers there are (a call's worker is from 0 to this, exclusive). */
  workers?: number | undefined;
  latencyTarget?: number | undefined;
  tracing?: BatchTracing | undefined;
  /** Worker mode: refuses an input that can never reach a thread (a buffer already transferred). */
  admit?: ((input: I) => Error | undefined) | undefined;
}

/** What the intake counts: every call, and the failure key of every refusal. */
export interface CallCounter {
  called(): void;
  fail(key: string): void;
}

/**
 * From a call to a queued entry: the checks (closed, admissible, size, the
 * queue cap, key, call options, predicted deadline), the cancel handle, and
 * the push. A call never throws: a refusal is a rejected promise, counted
 * under its failure key. Cancelled calls come back here (`cancel`) and leave
 * wherever they are.
 */
export class Intake<I, O> implements CallOwner<Resolve<O>> {
  readonly #lanes: LaneSet<I, O>;
  readonly #settings: LiveSettings;
  readonly #pump: Pump<I, O>;
  readonly #runner: Runner<I, O>;
  readonly #shedding: Shedding | undefined;
  readonly #life: Lifecycle;
  readonly #stats: CallCounter;
  readonly #options: IntakeOptions<I>;
  readonly #gate: SequenceGate<I, O> | undefined;
  readonly #release: (resolve: Resolve<O>) => void;
  /** No size, keys, latency target, admission check or tracing: plain calls take the short path. */
  readonly #plain: boolean;

  /** `shedding`, when the runner can predict finishes: calls that would miss their deadline are refused at once. */
  constructor(
    lanes: LaneSet<I, O>,
    settings: LiveSettings,
    pump: Pump<I, O>,
    runner: Runner<I, O>,
    shedding: Shedding | undefined,
    life: Lifecycle,
    stats: CallCounter,
    options: IntakeOptions<I>,
    gate: SequenceGate<I, O> | undefined,
    release: (resolve: Resolve<O>) => void,
  ) {
    this.#gate = gate;
    this.#release = release;
    this.#lanes = lanes;
    this.#settings = settings;
    this.#pump = pump;
    this.#runner = runner;
    this.#shedding = shedding;
    this.#life = life;
    this.#stats = stats;
    this.#options = options;
    this.#plain =
      options.size === undefined &&
      options.batchKey === undefined &&
      options.latencyTarget === undefined &&
      options.admit === undefined &&
      options.tracing === undefined &&
      gate === undefined &&
      options.affinity === undefined;
  }

  submit(input: I, options?: CallOptions): Promise<O> {
    this.#stats.called();
    // The common call (no options, no size, no keys, no latency target, inline) takes this short
    // path, small enough for V8 to inline into the caller; everything else goes through #submitChecked.
    if (options !== undefined || !this.#plain || this.#life.closing) return this.#submitChecked(input, options);
    const lanes = this.#lanes;
    if (lanes.items >= this.#settings.channelCap) return this.refuse(new QueueFullError(this.#settings.channelCap));
    // A closure made here captures the resolver. Capturing it through one module-level slot, to
    // save that closure, was measured slower: with the closure the queue benchmark ran 12-16 % more
    // calls/s than the same build with the shared slot, in paired rounds (likely the old-to-new
    // write barrier on every store of a new resolver into a long-lived slot, and an executor V8
    // can inline). The closure is garbage at once: a queued call still holds 189 bytes.
    let resolve!: Resolve<O>;
    const promise = new Promise<O>((settle) => {
      resolve = settle;
    });
    lanes.push(lanes.defaultLane, lanes.defaultQueue, input, resolve, this.#pump.arrive(1), 1, undefined);
    return promise;
  }

  #submitChecked(input: I, options: CallOptions | undefined): Promise<O> {
    let resolve!: Resolve<O>;
    const promise = new Promise<O>((settle) => {
      resolve = settle;
    });
    const refusal = this.enqueue(input, resolve, options, undefined);
    return refusal === undefined ? promise : this.refuse(refusal.error, refusal.key);
  }

  /** A cancel handle owned by this intake, for a front whose calls are always cancellable (a stream's `return()`). */
  handle(): CallHandle<Resolve<O>> {
    return new CallHandle<Resolve<O>>(this);
  }

  /**
   * Checks a call and queues `input`, to be settled through `resolve`: undefined once queued, else
   * why it was refused (not counted; the front counts and answers it). `handle`, if given, is armed
   * and travels with the call; otherwise one is made only when the call can be cancelled or is traced.
   */
  enqueue(
    input: I,
    resolve: Resolve<O>,
    options: CallOptions | undefined,
    handle: CallHandle<Resolve<O>> | undefined,
  ): Refusal | undefined {
    if (this.#life.closing) return { error: new ClosedError(), key: 'ERR_CLOSED' };
    const { admit, size, batchKey, latencyTarget, tracing, sequenceKey, affinity } = this.#options;
    const settings = this.#settings;
    if (admit !== undefined) {
      const refused = admit(input);
      if (refused !== undefined) return refusalFor(refused);
    }
    let rows = 1;
    if (size !== undefined) {
      try {
        rows = rowsOf(size, input);
      } catch (error) {
        return refusalFor(error);
      }
      if (rows > settings.maxBatchSize) return refusalFor(new ItemTooLargeError(rows, settings.maxBatchSize));
    }
    const lanes = this.#lanes;
    const gate = this.#gate;
    if (lanes.items + (gate?.parked ?? 0) >= settings.channelCap)
      return refusalFor(new QueueFullError(settings.channelCap));
    let key: unknown;
    if (batchKey !== undefined) {
      try {
        key = batchKey(input);
      } catch (error) {
        return refusalFor(error);
      }
      if (typeof key !== 'string' && typeof key !== 'number') {
        return refusalFor(
          new TypeError(`Expected \`batchKey(input)\` to return a string or a number, got ${describeValue(key)}`),
        );
      }
    }
    let sequence: unknown;
    if (sequenceKey !== undefined) {
      try {
        sequence = sequenceKey(input);
      } catch (error) {
        return refusalFor(error);
      }
      if (sequence !== undefined && typeof sequence !== 'string' && typeof sequence !== 'number') {
        return refusalFor(
          new TypeError(
            `Expected \`sequenceKey(input)\` to return a string, a number or undefined, got ${describeValue(sequence)}`,
          ),
        );
      }
    }
    let worker: number | undefined;
    if (affinity !== undefined) {
      try {
        worker = affinity(input);
      } catch (error) {
        return refusalFor(error);
      }
      const workers = this.#options.workers ?? 1;
      if (worker !== undefined && !(Number.isInteger(worker) && worker >= 0 && worker < workers)) {
        return refusalFor(
          new RangeError(
            `Expected \`affinity(input)\` to return a worker from 0 to ${workers - 1} or undefined, got ${describeValue(worker)}`,
          ),
        );
      }
      // Calls for different workers never share a lane, so never a batch.
      key = batchKey === undefined ? worker : `${worker ?? ''}\u0000${typeof key}:${String(key)}`;
    }
    const refusal = refusalOf(options);
    if (refusal !== undefined) return refusal;
    const timeout = options?.timeout;
    const trace = tracing === undefined ? undefined : (options?.trace ?? captureTrace(tracing));
    const shedding = this.#shedding;
    if (shedding !== undefined && (timeout !== undefined || latencyTarget !== undefined)) {
      const t = now();
      if (shedding.active(t)) {
        const budget = Math.min(timeout ?? Number.POSITIVE_INFINITY, latencyTarget ?? Number.POSITIVE_INFINITY);
        if (shedding.predictFinish(rows, t, lanes.rows) > t + budget) return refusalFor(new TimeoutError(budget, true));
      }
    }
    const signal = options?.signal;
    const priority = options?.priority ?? 0;
    const tick = this.#pump.arrive(rows);
    const arrival = options?.arrival;
    const arrived = arrival === undefined || arrival > tick ? tick : arrival;
    if (sequence !== undefined && !(gate as SequenceGate<I, O>).acquire(sequence)) {
      // Its sequence has a call queued or running: it waits behind it, outside the lanes.
      if (handle === undefined && (signal !== undefined || timeout !== undefined || trace !== undefined))
        handle = new CallHandle<Resolve<O>>(this);
      const place = (gate as SequenceGate<I, O>).park(
        sequence,
        input,
        resolve,
        arrived,
        rows,
        handle,
        key,
        worker,
        priority,
      );
      if (handle !== undefined) {
        handle.moveTo(place);
        handle.arm(arrived, trace, signal, timeout, tick);
      }
      return undefined;
    }
    if (sequence !== undefined) (gate as SequenceGate<I, O>).entered(resolve, sequence);
    const lane = lanes.laneFor(key, worker);
    const queue = lane.queueFor(priority);
    if (handle === undefined && signal === undefined && timeout === undefined && trace === undefined) {
      lanes.push(lane, queue, input, resolve, arrived, rows, undefined);
      return undefined;
    }
    handle ??= new CallHandle<Resolve<O>>(this);
    lanes.push(lane, queue, input, resolve, arrived, rows, handle);
    handle.arm(arrived, trace, signal, timeout, tick);
    return undefined;
  }

  /** The one cancel path: the call leaves its queue or its batch and fails with `error`. */
  cancel(handle: CallHandle<Resolve<O>>, error: unknown, key: CancelKey): void {
    const resolve = handle.leave();
    if (resolve === undefined) return;
    // A sequence's call that left its lane before running lets the next one of its sequence in.
    this.#release(resolve);
    this.#runner.fail(resolve, error, key);
    this.#life.checkIdle();
  }

  /** A call refused before it was queued: counted, and rejected without throwing. */
  refuse(error: unknown, key: FailureKey = failureKey(error)): Promise<never> {
    this.#stats.fail(key);
    return Promise.reject(error);
  }
}
