import { pathToFileURL } from 'node:url';
import { Batcher } from './batcher.js';
import { InlineExecutor } from './executor/inline.js';
import type { Executor } from './executor/types.js';
import { WorkerPoolExecutor } from './executor/worker-pool.js';
import {
  type BatchedFnOptions,
  type CallOptions,
  type CloseOptions,
  DEFAULTS,
  describeValue,
  expectFunction,
  expectInteger,
  expectNumber,
  type InlineOptions,
  resolveBatchingOptions,
  type RuntimeOptions,
  type WorkerOptions,
} from './options.js';
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

const KNOWN_OPTIONS = new Set([
  'handler',
  'context',
  'worker',
  'workers',
  'workerData',
  'resourceLimits',
  'maxBatchSize',
  'maxDelay',
  'channelCap',
  'concurrency',
  'size',
  'onBatch',
  'latencyTarget',
  'batchKey',
  'preferredBatchSizes',
  'pad',
  'name',
  'batchTimeout',
]);

function toModuleUrl(worker: unknown): URL {
  if (worker instanceof URL) return worker;
  if (typeof worker === 'string' && worker.length > 0) {
    return /^(file|data):/.test(worker) ? new URL(worker) : pathToFileURL(worker);
  }
  throw new TypeError(`Expected \`worker\` to be a URL or a path to a module, got ${describeValue(worker)}`);
}

const RESOURCE_LIMITS = ['maxYoungGenerationSizeMb', 'maxOldGenerationSizeMb', 'codeRangeSizeMb', 'stackSizeMb'];

/** Node's Worker would ignore unknown keys and misread others: checked here like every option. */
function validateResourceLimits(limits: unknown): void {
  if (typeof limits !== 'object' || limits === null || Array.isArray(limits)) {
    throw new TypeError(`Expected \`resourceLimits\` to be an object, got ${describeValue(limits)}`);
  }
  for (const [key, value] of Object.entries(limits)) {
    if (!RESOURCE_LIMITS.includes(key)) {
      throw new TypeError(`Unknown \`resourceLimits\` key \`${key}\`; known keys are ${RESOURCE_LIMITS.map((k) => `\`${k}\``).join(', ')}`);
    }
    expectNumber(`resourceLimits.${key}`, value, 'a finite number of MB above 0', (n) => Number.isFinite(n) && n > 0);
  }
}

function createExecutor<I, O, C>(options: BatchedFnOptions<I, O, C>): { executor: Executor<I, O>; concurrency: number } {
  const hasHandler = options.handler !== undefined;
  const hasWorker = options.worker !== undefined;
  if (hasHandler === hasWorker) {
    throw new TypeError('Expected exactly one of `handler` (run inline) or `worker` (run in worker threads)');
  }
  if (hasHandler) {
    const inline = options as InlineOptions<I, O, C>;
    expectFunction('handler', inline.handler);
    if (inline.context !== undefined) expectFunction('context', inline.context);
    return { executor: new InlineExecutor(inline.handler, inline.context), concurrency: DEFAULTS.concurrency };
  }
  const pooled = options as WorkerOptions<I>;
  const workers = pooled.workers === undefined ? DEFAULTS.workers : expectInteger('workers', pooled.workers, 1);
  if (pooled.resourceLimits !== undefined) validateResourceLimits(pooled.resourceLimits);
  try {
    structuredClone(pooled.workerData);
  } catch (error) {
    throw new TypeError(`Expected \`workerData\` to be structured-cloneable: ${(error as Error).message}`);
  }
  const executor = new WorkerPoolExecutor<I, O>({
    module: toModuleUrl(pooled.worker),
    workers,
    workerData: pooled.workerData,
    resourceLimits: pooled.resourceLimits,
    name: pooled.name ?? 'batched-fn',
  });
  return { executor, concurrency: workers };
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
  for (const key of Object.keys(options)) {
    if (!KNOWN_OPTIONS.has(key)) throw new TypeError(`Unknown option \`${key}\``);
  }
  // Validate everything before creating the executor, so a bad option never leaves threads behind.
  const { executor, concurrency } = createExecutor(options);
  let resolved;
  try {
    resolved = resolveBatchingOptions(options, concurrency);
  } catch (error) {
    executor.destroy(error);
    throw error;
  }
  const batcher = new Batcher<I, O>(executor, resolved);
  const predict = ((input: I, callOptions?: CallOptions) => batcher.call(input, callOptions)) as BatchedFn<I, O>;
  Object.defineProperties(predict, {
    stats: { get: () => batcher.stats, enumerable: true },
    settings: { get: () => batcher.settings, enumerable: true },
    ready: { value: () => batcher.ready() },
    close: { value: (closeOptions?: CloseOptions) => batcher.close(closeOptions) },
    destroy: { value: (reason?: unknown) => batcher.destroy(reason) },
    configure: { value: (runtime: RuntimeOptions) => batcher.configure(runtime) },
  });
  return predict;
}
