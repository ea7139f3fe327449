import { pathToFileURL } from 'node:url';
import { InlineExecutor } from './executor/inline.js';
import type { Executor } from './executor/types.js';
import { WorkerPoolExecutor } from './executor/worker-pool.js';
import { Engine } from './engine/engine.js';
import { Settle } from './engine/settle.js';
import { StatsRecorder } from './stats-recorder.js';
import { DEFAULTS } from './option-schema.js';
import {
  type BatchedFnOptions,
  type CallOptions,
  type CloseOptions,
  type InlineOptions,
  type ResolvedBatchingOptions,
  resolveBatchingOptions,
  type RuntimeOptions,
  type WorkerOptions,
} from './options.js';
import { describeValue } from './validate.js';
import type { BatchedFnSettings, BatchedFnStats } from './stats.js';

/** A batched function: call it with one input, get one output. */
export interface BatchedFn<I, O> {
  (input: I, options?: CallOptions): Promise<O>;
  /** A plain snapshot of counters and recent percentiles. */
  readonly stats: BatchedFnStats;
  /** The tunables in force: `maxBatchSize`, `maxDelay`, `channelCap`, `concurrency`. */
  readonly settings: BatchedFnSettings;
  /** Builds the context (and starts workers) now instead of before the first batch. */
  ready(): Promise<void>;
  /**
   * Stops intake, finishes queued and running batches, releases workers, then resolves. With
   * `timeout` (ms), whatever is left when it is up is destroyed with ERR_CLOSED.
   */
  close(options?: CloseOptions): Promise<void>;
  /** Rejects everything queued or running at once (with `reason`, or `ERR_CLOSED`) and stops workers. */
  destroy(reason?: unknown): void;
  /** Changes tunables while running; validated like the constructor's options, effective from the next batch. */
  configure(options: RuntimeOptions): void;
}

function toModuleUrl(worker: URL | string): URL {
  if (worker instanceof URL) return worker;
  return /^(file|data):/.test(worker) ? new URL(worker) : pathToFileURL(worker);
}

/** WHERE batches run: the handler on this thread, or the module in worker threads. Options are already checked. */
function createExecutor<I, O, C>(
  options: BatchedFnOptions<I, O, C>,
  resolved: ResolvedBatchingOptions<I>,
): Executor<I, O> {
  if (options.handler !== undefined)
    return new InlineExecutor(options.handler, (options as InlineOptions<I, O, C>).context);
  const pooled = options as WorkerOptions<I>;
  return new WorkerPoolExecutor<I, O>({
    module: toModuleUrl(pooled.worker),
    workers: pooled.workers ?? DEFAULTS.workers,
    workerData: pooled.workerData,
    resourceLimits: pooled.resourceLimits,
    connect: pooled.connectWorker,
    codec: pooled.codec,
    name: resolved.name,
  });
}

/**
 * Creates a batched function. Callers `await predict(input)` one at a time;
 * the handler receives their inputs as batches.
 */
export function batchedFn<I, O, C = undefined>(options: InlineOptions<I, O, C>): BatchedFn<I, O>;
export function batchedFn<I = unknown, O = unknown>(options: WorkerOptions<I>): BatchedFn<I, O>;
export function batchedFn<I, O, C>(options: BatchedFnOptions<I, O, C>): BatchedFn<I, O> {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`Expected options to be an object, got ${describeValue(options)}`);
  }
  if ((options.handler !== undefined) === (options.worker !== undefined)) {
    throw new TypeError('Expected exactly one of `handler` (run inline) or `worker` (run in worker threads)');
  }
  // Everything is validated (by the option schema) before any thread starts.
  const inWorkers = options.worker !== undefined;
  const workers = inWorkers ? ((options as WorkerOptions<I>).workers ?? DEFAULTS.workers) : undefined;
  const resolved = resolveBatchingOptions(options, workers ?? DEFAULTS.concurrency);
  if (resolved.affinity !== undefined && !inWorkers) {
    throw new TypeError(
      'Expected `affinity` only with `worker`: inline handlers have no worker threads to pin calls to',
    );
  }
  if ((options as WorkerOptions<I>).codec !== undefined && !inWorkers) {
    throw new TypeError('Expected `codec` only with `worker`: inline handlers get their batch as it is, uncloned');
  }
  const executor = createExecutor(options, resolved);
  const stats = new StatsRecorder();
  const { name, pad, batchTimeout, onBatch, tracing } = resolved;
  let settle!: Settle<I, O>;
  const engine = new Engine<I, O>(
    { ...resolved, workers, admit: executor.admit?.bind(executor), destroyedMessage: 'The batcher was destroyed' },
    stats,
    (link) => {
      settle = new Settle<I, O>(executor, link, stats, { name, pad, batchTimeout, onBatch, tracing });
      return settle;
    },
  );
  const snapshot = (): BatchedFnStats =>
    stats.snapshot({
      queued: engine.queued,
      queuedRows: engine.queuedRows,
      inFlight: settle.size,
      inFlightItems: settle.inFlightItems,
      workers: settle.workerStats(),
      costModel: engine.costModel,
    });
  const predict = ((input: I, callOptions?: CallOptions) => engine.submit(input, callOptions)) as BatchedFn<I, O>;
  Object.defineProperties(predict, {
    stats: { get: snapshot, enumerable: true },
    settings: { get: () => engine.settings, enumerable: true },
    ready: { value: () => engine.ready() },
    close: { value: (closeOptions?: CloseOptions) => engine.close(closeOptions) },
    destroy: { value: (reason?: unknown) => engine.destroy(reason) },
    configure: { value: (runtime: RuntimeOptions) => engine.configure(runtime) },
  });
  return predict;
}
