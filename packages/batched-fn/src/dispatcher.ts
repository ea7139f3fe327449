import { reportBatch, wantsReport } from './batch-report.js';
import type { CallHandle } from './call-handle.js';
import { type ChoiceRules, choose, type Choice, judge } from './choice.js';
import { BatchSizeMismatchError, BatchTimeoutError, failureKey, ItemTooLargeError, TimeoutError } from './errors.js';
import type { Executor } from './executor/types.js';
import type { Lane } from './lane.js';
import { LaneSet } from './lane-set.js';
import { LoopYield } from './loop-yield.js';
import type { ResolvedBatchingOptions } from './options.js';
import { AdaptivePolicy } from './policy/adaptive.js';
import { ArrivalRate, CostModel } from './policy/cost-model.js';
import { FixedDelayPolicy } from './policy/fixed-delay.js';
import type { PumpTrigger, SchedulingPolicy } from './policy/types.js';
import type { BatchInfo } from './stats.js';
import type { Resolve } from './queue.js';
import { isOutputArray, liveCount, padBatch, RunningBatch } from './running-batch.js';
import { Shedder } from './shedding.js';
import { StatsRecorder } from './stats-recorder.js';
import { traceBatch } from './tracing.js';
import { WakeTimer } from './wake-timer.js';

export const now = (): number => performance.now();

/** Taken once, so a promise whose own `then` was replaced cannot throw into the dispatcher. */
const promiseThen = Promise.prototype.then;

/**
 * The pump is scheduled as a reaction on a settled promise rather than with
 * `queueMicrotask`, which in Node wraps every callback in an async resource
 * and costs several times more per tick.
 */
const settled = Promise.resolve();

function onBatchTimeout<I, O>(dispatcher: Dispatcher<I, O>, batch: RunningBatch<I, O>): void {
  batch.timer = undefined;
  dispatcher.timeOut(batch);
}

/**
 * WHEN and WHAT: turns queued calls into batches and batches into answers.
 * A pump, run from a microtask and never inside a caller's stack, asks the
 * rules whether a lane's head should go now; the executor runs the batch;
 * `finish` hands each caller its output. The batcher owns intake and
 * lifecycle and shares this state with it.
 */
export class Dispatcher<I, O> implements ChoiceRules {
  readonly executor: Executor<I, O>;
  readonly lanes: LaneSet<I, O>;
  readonly running = new Set<RunningBatch<I, O>>();
  /** Callers in running batches that still wait. */
  inFlightItems = 0;
  readonly stats = new StatsRecorder();
  readonly cost = new CostModel();
  readonly arrivals = new ArrivalRate();
  readonly shedder = new Shedder(this.cost);
  readonly options: ResolvedBatchingOptions<I>;
  maxBatchSize: number;
  concurrency: number;
  policy: SchedulingPolicy;
  maxDelay: number | 'auto';
  readonly preferred: number[] | undefined;
  closing = false;
  destroyed = false;
  /** Set by close(): called once nothing is queued or running. */
  onIdle: (() => void) | undefined;

  pumpScheduled = false;
  /** Clock reading shared by every call until the scheduled pump runs (one reading per tick). */
  tickTime = 0;
  /** Rows that arrived since the last pump, for the arrival rate. */
  arrivedRows = 0;
  #inPump = false;
  readonly wake = new WakeTimer(() => this.pump('timer'));
  readonly #loopYield = new LoopYield();
  yielding: ReturnType<typeof setImmediate> | undefined;

  constructor(executor: Executor<I, O>, options: ResolvedBatchingOptions<I>) {
    this.executor = executor;
    this.options = options;
    this.lanes = new LaneSet<I, O>(options.batchKey !== undefined);
    this.maxBatchSize = options.maxBatchSize;
    this.concurrency = options.concurrency;
    this.preferred = options.preferredBatchSizes;
    this.maxDelay = options.maxDelay;
    this.policy = this.#policyFor(options.maxDelay);
    executor.onCapacity(() => this.pump('completion'));
  }

  setMaxDelay(maxDelay: number | 'auto'): void {
    this.maxDelay = maxDelay;
    this.policy = this.#policyFor(maxDelay);
  }

  #policyFor(maxDelay: number | 'auto'): SchedulingPolicy {
    return maxDelay === 'auto' ? new AdaptivePolicy(this.cost, this.arrivals, this.options.latencyTarget) : new FixedDelayPolicy(maxDelay);
  }

  /** The handler never runs inside a caller's stack: dispatch always starts from a microtask. */
  schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    this.tickTime = now();
    void settled.then(this.#pumpOnArrival);
  }

  readonly #pumpOnArrival = (): void => {
    this.pumpScheduled = false;
    if (this.arrivedRows > 0) {
      this.arrivals.add(this.arrivedRows, this.tickTime);
      this.arrivedRows = 0;
    }
    this.pump('arrival');
  };

  readonly #pumpAfterYield = (): void => {
    this.yielding = undefined;
    this.pump('completion');
  };

  pump(trigger: PumpTrigger): void {
    if (this.#inPump || this.destroyed) return;
    this.#inPump = true;
    try {
      const lanes = this.lanes;
      while (lanes.items > 0 && this.running.size < this.concurrency && this.executor.hasCapacity()) {
        // One clock reading serves the yield check, the policy and the batch's start time.
        const t = now();
        if (this.#loopYield.due(t)) {
          this.yielding ??= setImmediate(this.#pumpAfterYield);
          return;
        }
        const choice = lanes.keyed === undefined ? judge(lanes.defaultLane, t, trigger, this) : choose(lanes.keyed.values(), t, trigger, this);
        if (typeof choice === 'number') {
          this.wake.arm(choice);
          return;
        }
        this.#dispatch(choice, t);
      }
      // Nothing left to wait for: a batch finishing will pump again.
      this.wake.disarm();
      this.resolveIfIdle();
    } finally {
      this.#inPump = false;
    }
  }

  #dispatch(choice: Choice<I, O>, started: number): void {
    const { lane, reason } = choice;
    this.#rejectOversized(lane);
    // A batch always takes at least the head call (which fits in maxBatchSize once oversized calls are gone).
    const maxRows = Math.max(Math.min(choice.maxRows, this.maxBatchSize), lane.headQueue()?.headRows() ?? 0);
    const batch = new RunningBatch<I, O>(reason, started);
    this.lanes.take(lane, maxRows, started, batch, this.stats.wait);
    if (batch.handles !== undefined && this.shedder.active(started, this.running.size)) {
      this.shedder.shedHopeless(batch, (resolve, handle) => {
        handle.dispose();
        this.fail(resolve, new TimeoutError(handle.timeout, true), 'ERR_TIMEOUT');
      });
    }
    if (batch.inputs.length === 0) return;
    this.inFlightItems += batch.inputs.length;
    this.stats.dispatched(reason);
    this.running.add(batch);
    this.#run(batch);
  }

  /** Pads if asked, arms `batchTimeout`, and hands the batch to the executor, adopting whatever it returns. */
  #run(batch: RunningBatch<I, O>): void {
    let inputs = batch.inputs;
    const pad = this.options.pad;
    if (pad !== undefined) {
      const padded = padBatch(batch, pad, this.preferred?.find((size) => size >= batch.rows) ?? this.maxBatchSize);
      if ('error' in padded) {
        this.#finish(batch, undefined, padded.error, true);
        return;
      }
      inputs = padded.inputs;
    }
    batch.sent = inputs;
    const batchTimeout = this.options.batchTimeout;
    if (batchTimeout !== undefined) batch.timer = setTimeout(onBatchTimeout, batchTimeout, this, batch);
    let result: unknown;
    try {
      result = this.executor.run(inputs);
      batch.worker = this.executor.lastWorker;
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
    if (!this.running.has(batch)) return;
    this.executor.abandon(batch.sent as I[]);
    this.#finish(batch, undefined, new BatchTimeoutError(this.options.batchTimeout as number), true);
  }

  /** Only reachable after configure() lowered maxBatchSize below calls already queued. */
  #rejectOversized(lane: Lane<I, O>): void {
    const max = this.maxBatchSize;
    while ((lane.headQueue()?.headRows() ?? 0) > max) {
      const head = this.lanes.shiftHead(lane);
      if (head === undefined) return;
      head.handle?.dispose();
      this.fail(head.resolve, new ItemTooLargeError(head.rows, max), 'ERR_ITEM_TOO_LARGE');
    }
  }

  #finish(batch: RunningBatch<I, O>, outputs: unknown, error: unknown, failed: boolean): void {
    if (!this.running.delete(batch)) return; // destroy() or batchTimeout already released these callers
    if (batch.timer !== undefined) clearTimeout(batch.timer);
    const finished = now();
    const execMs = finished - batch.started;
    const { resolvers, handles } = batch;
    const size = resolvers.length;
    const expected = batch.padded > 0 ? batch.padded : size;
    this.inFlightItems -= liveCount(resolvers);
    if (!failed && (!isOutputArray(outputs) || outputs.length !== expected)) {
      failed = true;
      error = new BatchSizeMismatchError(expected, isOutputArray(outputs) ? outputs.length : undefined);
    }
    if (!failed) this.shedder.learned(batch.padded > 0 ? Math.max(batch.rows, batch.padded) : batch.rows, execMs, finished);
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
        this.fail(resolve, error, key);
      } else {
        const output = results[i];
        if (output instanceof Error) {
          this.fail(resolve, output, 'handler');
        } else {
          completed++;
          resolve(output as O);
        }
      }
    }
    this.stats.completed += completed;
    this.stats.recordBatch(batch.rows, execMs);
    const { onBatch, tracing } = this.options;
    if (wantsReport(onBatch) || tracing !== undefined) {
      const info: BatchInfo = { name: this.options.name, items: size, rows: batch.rows, reason: batch.reason, maxWaitMs: batch.maxWait, totalWaitMs: batch.totalWait, execMs, ok: !failed };
      if (batch.worker !== undefined) info.worker = batch.worker;
      if (wantsReport(onBatch)) reportBatch(onBatch, info);
      if (tracing !== undefined) traceBatch(tracing, info, batch, failed ? error : undefined);
    }
    this.resolveIfIdle();
    this.pump('completion');
  }

  /** A running call was released (abort, timeout): it leaves its batch; the batch runs on for the others. */
  releaseRunning(batch: { resolvers: unknown[] }, index: number, handle: CallHandle<I, O>, error: unknown, key: string): void {
    const resolvers = batch.resolvers as (Resolve<O> | undefined)[];
    const resolve = resolvers[index];
    resolvers[index] = undefined;
    handle.dispose();
    if (resolve === undefined) return;
    // No longer in flight, so calls = completed + failed + queued + inFlightItems holds.
    this.inFlightItems--;
    this.fail(resolve, error, key);
  }

  /**
   * Rejects through the resolver: adopting a rejected promise settles the
   * caller's promise as rejected. Not keeping each call's `reject` function
   * saves about 50 bytes per queued call; failures pay two extra microtask turns.
   */
  fail(resolve: Resolve<O>, error: unknown, key: string): void {
    this.stats.fail(key);
    resolve(Promise.reject(error));
  }

  resolveIfIdle(): void {
    if (this.onIdle !== undefined && this.lanes.items === 0 && this.running.size === 0) {
      const onIdle = this.onIdle;
      this.onIdle = undefined;
      onIdle();
    }
  }
}
