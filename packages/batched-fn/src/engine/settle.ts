import { reportBatch, wantsReport } from '../batch-report.js';
import { BatchSizeMismatchError, BatchTimeoutError, type FailureKey, failureKey, TimeoutError } from '../errors.js';
import type { Executor } from '../executor/types.js';
import type { BatchTracing } from '../options.js';
import type { Resolve } from '../queue.js';
import type { StatsRecorder } from '../stats-recorder.js';
import type { BatchInfo, DispatchReason, WorkerStats } from '../stats.js';
import { traceBatch } from '../tracing.js';
import type { QueuedHandle } from './lane.js';
import type { Runner, Shedding } from './runner.js';
import type { RunningBatch } from './running-batch.js';
import { isOutputArray } from './running-batch.js';
import type { Overlap } from '../policy/overlap.js';
import type { Traffic } from '../policy/traffic.js';
import type { EngineLink } from './engine.js';
import type { LiveSettings } from './settings.js';
import { Shedder } from './shedding.js';

const now = (): number => performance.now();

/** Taken once, so a promise whose own `then` was replaced cannot throw into the engine. */
const promiseThen = Promise.prototype.then;

export interface SettleOptions<I> {
  name: string;
  pad: ((batch: I[], targetRows: number) => I[]) | undefined;
  batchTimeout: number | undefined;
  onBatch: ((info: BatchInfo) => void) | undefined;
  tracing: BatchTracing | undefined;
}

/**
 * batchedFn's runner: runs dispatched batches on the executor (inline or the
 * worker pool) and settles every caller exactly once: with its output, its
 * slot's Error, the batch's failure, a batch timeout, or destroy(). Every
 * failure of a call, wherever it is decided, is counted and delivered through
 * `fail`. Callers who cannot be answered before their deadline are shed as
 * their batch starts.
 */
export class Settle<I, O> implements Runner<I, O>, Shedding {
  readonly #running = new Set<RunningBatch<I, O>>();
  readonly #executor: Executor<I, O>;
  readonly #settings: LiveSettings;
  readonly #stats: StatsRecorder;
  readonly #shedder: Shedder;
  readonly #traffic: Traffic;
  readonly #overlap: Overlap;
  readonly #options: SettleOptions<I>;
  /** After a batch settles: the engine checks for idle and pumps. */
  readonly #settled: () => void;
  /**
   * Timers run before the event loop reads its ports and sockets: when something else held this
   * thread past the limit, a worker's answer may be waiting there. The decision waits until they
   * are read (the poll phase comes before setImmediate's); an answer read meanwhile has settled it.
   */
  readonly #timedOut = (batch: RunningBatch<I, O>): void => {
    setImmediate(this.#timeOutAfterPoll, batch);
  };
  readonly #timeOutAfterPoll = (batch: RunningBatch<I, O>): void => this.#timeOut(batch);
  /** A caller whose deadline falls before its batch can finish: answered now with a predicted timeout. */
  readonly #shedHopeless = (resolve: Resolve<O>, handle: QueuedHandle<O>): void => {
    handle.dispose();
    this.fail(resolve, new TimeoutError(handle.timeout, true), 'ERR_TIMEOUT');
  };

  constructor(executor: Executor<I, O>, link: EngineLink<I, O>, stats: StatsRecorder, options: SettleOptions<I>) {
    this.#executor = executor;
    this.#settings = link.settings;
    this.#stats = stats;
    this.#shedder = new Shedder(link.cost);
    this.#traffic = link.traffic;
    this.#overlap = link.overlap;
    this.#options = options;
    this.#settled = link.settled;
  }

  get shedding(): Shedding {
    return this;
  }

  /** Batches running now. */
  get size(): number {
    return this.#running.size;
  }

  /** Callers in running batches that still wait. */
  get inFlightItems(): number {
    let live = 0;
    for (const batch of this.#running) live += batch.live;
    return live;
  }

  hasCapacity(): boolean {
    return this.#executor.hasCapacity();
  }

  onCapacity(listener: () => void): void {
    this.#executor.onCapacity(listener);
  }

  hasCapacityOn(worker: number): boolean {
    return this.#executor.hasCapacityOn?.(worker) ?? this.#executor.hasCapacity();
  }

  ready(): Promise<void> {
    return this.#executor.ready();
  }

  close(): Promise<void> {
    return this.#executor.close();
  }

  destroy(reason: unknown): void {
    this.#executor.destroy(reason);
  }

  workerStats(): WorkerStats[] {
    return this.#executor.workerStats();
  }

  active(t: number): boolean {
    return this.#shedder.active(t, this.#running.size);
  }

  /** When a call of `rows` made now would be answered, given what runs and `queuedRows` ahead of it. */
  predictFinish(rows: number, t: number, queuedRows: number): number {
    const settings = this.#settings;
    return this.#shedder.predictFinish(rows, t, this.#running, settings.concurrency, queuedRows, settings.maxBatchSize);
  }

  /**
   * Rejects through the resolver: adopting a rejected promise settles the
   * caller's promise as rejected. Not keeping each call's `reject` function
   * saves about 50 bytes per queued call; failures pay two extra microtask turns.
   */
  fail(resolve: Resolve<O>, error: unknown, key: FailureKey): void {
    this.#stats.fail(key);
    resolve(Promise.reject(error));
  }

  /** Sheds the hopeless, pads if asked, arms `batchTimeout`, and hands the batch to the executor, adopting whatever it returns. */
  run(batch: RunningBatch<I, O>): void {
    if (batch.handles !== undefined && this.#shedder.active(batch.started, this.#running.size)) {
      batch.shed(this.#shedder.batchFinish(batch.started, batch.rows), this.#shedHopeless);
      if (batch.inputs.length === 0) {
        batch.ended();
        return;
      }
    }
    this.#stats.dispatched(batch.reason as DispatchReason);
    this.#running.add(batch);
    // With one slot every batch runs alone, and Overlap would refit the engine's own cost curve batch by
    // batch: it watches only while a second slot may run (or batches it watches still run, after
    // configure() lowered concurrency, so their time beside others stays counted).
    if (this.#settings.concurrency > 1 || this.#overlap.watching) this.#overlap.began(batch, batch.started);
    let inputs = batch.inputs;
    const pad = this.#options.pad;
    if (pad !== undefined) {
      const padded = batch.pad(
        pad,
        this.#settings.preferred?.find((size) => size >= batch.rows) ?? this.#settings.maxBatchSize,
      );
      if ('error' in padded) {
        this.#finish(batch, undefined, padded.error, true);
        return;
      }
      inputs = padded.inputs;
    }
    batch.send(inputs, this.#options.batchTimeout, this.#timedOut);
    let result: unknown;
    try {
      result = this.#executor.run(inputs, batch);
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

  /** destroy(): every running batch is let go. A late result finds its batch gone and is neither delivered nor reported. */
  releaseAll(error: unknown, key: FailureKey): void {
    for (const batch of this.#running) batch.releaseAll((resolve) => this.fail(resolve, error, key));
    this.#running.clear();
    this.#overlap.clear();
  }

  /** `batchTimeout` passed: free the runner, then fail the batch's callers; a late result is dropped. */
  #timeOut(batch: RunningBatch<I, O>): void {
    if (!this.#running.has(batch)) return;
    this.#executor.abandon(batch.sent as I[]);
    this.#finish(batch, undefined, new BatchTimeoutError(this.#options.batchTimeout as number), true);
  }

  #finish(batch: RunningBatch<I, O>, outputs: unknown, error: unknown, failed: boolean): void {
    if (!this.#running.delete(batch)) return; // destroy() or batchTimeout already released these callers
    batch.ended();
    const finished = now();
    const execMs = finished - batch.started;
    const resolvers = batch.resolvers;
    const size = resolvers.length;
    const expected = batch.padded > 0 ? batch.padded : size;
    if (!failed && (!isOutputArray(outputs) || outputs.length !== expected)) {
      failed = true;
      error = new BatchSizeMismatchError(expected, isOutputArray(outputs) ? outputs.length : undefined);
    }
    const charged = batch.padded > 0 ? Math.max(batch.rows, batch.padded) : batch.rows;
    if (!failed) this.#shedder.learned(charged, execMs, finished);
    this.#overlap.ended(batch, finished, charged, execMs, !failed);
    // Answered, failed or not: under a closed loop these callers send again.
    this.#traffic.settled(batch.rows, finished);
    const key = failed ? failureKey(error) : 'handler';
    const cancellable = batch.handles !== undefined;
    // Filler rows from `pad` sit after the real ones; their outputs are never read.
    const results = outputs as ArrayLike<O | Error>;
    let completed = 0;
    if (!failed && !cancellable) {
      // The common batch: every output is delivered and no handle needs disposing. Only an object
      // (or a function) can be an Error, so a number or string output skips the prototype walk.
      for (let i = 0; i < size; i++) {
        const resolve = resolvers[i];
        if (resolve === undefined) continue;
        const output = results[i];
        if (
          ((typeof output === 'object' && output !== null) || typeof output === 'function') &&
          output instanceof Error
        )
          this.fail(resolve, output, 'handler');
        else {
          completed++;
          resolve(output as O);
        }
      }
    } else {
      for (let i = 0; i < size; i++) {
        const resolve = resolvers[i];
        if (resolve === undefined) continue; // released by abort or timeout; its output is dropped
        // A disposed handle makes later cancels no-ops; plain calls cannot be released, so their slot needs no clearing.
        if (cancellable) batch.disposeHandle(i);
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
    }
    this.#stats.succeeded(completed);
    this.#stats.recordBatch(batch.rows, execMs);
    const { onBatch, tracing } = this.#options;
    if (wantsReport(onBatch) || tracing !== undefined) {
      const info: BatchInfo = {
        name: this.#options.name,
        items: size,
        rows: batch.rows,
        reason: batch.reason as DispatchReason,
        maxWaitMs: batch.maxWait,
        totalWaitMs: batch.totalWait,
        execMs,
        ok: !failed,
      };
      if (batch.worker !== undefined) info.worker = batch.worker;
      if (wantsReport(onBatch)) reportBatch(onBatch, info);
      if (tracing !== undefined) traceBatch(tracing, info, batch, failed ? error : undefined);
    }
    this.#settled();
  }
}
