import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import type { BatchTracing, BatchedFn, BatchInfo } from 'batched-fn';
import { FLAG_DEFAULTS, FLAGS } from '../flags.js';
import type { OnnxWorkerData } from './onnx.worker.js';
import { type ModelSignature, readOnnxSignature } from './signature.js';
import { servedBatcher } from './served-batcher.js';
import type { InferItem, InferResult } from './tensor.js';

/** A model file that cannot be served: said in one line, naming the file, instead of a stack trace. */
export class ModelLoadError extends Error {
  override name = 'ModelLoadError';
  readonly code: 'ERR_MODEL_LOAD' | 'ERR_LOAD_TIMEOUT' | 'ERR_LOAD_CANCELLED' = 'ERR_MODEL_LOAD';
}

/** A load that did not finish within its `loadTimeout`: its workers were stopped, and the model is UNAVAILABLE. */
export class LoadTimeoutError extends ModelLoadError {
  override name = 'LoadTimeoutError';
  override readonly code = 'ERR_LOAD_TIMEOUT';
}

/** A load given up because the model was unloaded meanwhile. */
export class LoadCancelledError extends ModelLoadError {
  override name = 'LoadCancelledError';
  override readonly code = 'ERR_LOAD_CANCELLED';
}

function loadSignature(path: string): ModelSignature {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : (error as Error).message;
    throw new ModelLoadError(`Cannot read model ${path}: ${why}`);
  }
  try {
    return readOnnxSignature(bytes);
  } catch (error) {
    throw new ModelLoadError(`${path} is not an ONNX model we can serve: ${(error as Error).message}`);
  }
}


export interface BatchingSettings {
  /**
   * Most rows per run. 0: the model has no batch dimension (Triton's `max_batch_size: 0`), and runs
   * one request at a time with its shapes exactly as declared. Left out, a model that can batch gets
   * `defaultMaxBatchSize` and one that cannot gets 0 (batch-dimension.ts).
   */
  maxBatchSize: number;
  /** The server's maxBatchSize, for a model that can batch and does not set its own. @default 64 */
  defaultMaxBatchSize?: number;
  maxDelay: number | 'auto';
  channelCap: number;
  /** Latency objective in ms: with 'auto' the policy never waits past it, and hopeless requests are shed early. */
  latencyTarget?: number;
  /** Row counts the model runs best at; also the sizes `pad` fills up to. */
  preferredBatchSizes?: number[];
  /** Pad each batch with zero rows up to the next preferred size (or maxBatchSize), for fixed-shape models. */
  pad?: boolean;
  /** Longest a batch may run (ms) before its callers get ERR_BATCH_TIMEOUT and its worker is restarted. */
  batchTimeout?: number;
}

/**
 * What the protocol reads per model, from its config.json: Triton's priority levels (the
 * schedule-policy extension, kserve/schedule-policy.ts) and class labels (the classification
 * extension).
 */
export interface ModelProtocolOptions {
  /** Priority levels 1 (highest) to N; without it, levels are unbounded and requests without a priority run last. */
  priorityLevels?: number;
  /** The level of requests without a priority (1 to `priorityLevels`). @default priorityLevels (the lowest) */
  defaultPriorityLevel?: number;
  /** Class labels per output name, index by index (`"value:index:label"` in classification answers). */
  labels?: Record<string, string[]>;
  /** The file in the model's folder each output's labels came from (Triton's `label_filename`). */
  labelFiles?: Record<string, string>;
  /** config.json's `parameters`, for the model itself (shown by the model configuration extension). */
  parameters?: Record<string, unknown>;
  /** Triton's `version_policy` of a Triton-layout model (model/triton-repository.ts); absent: `latest 1`. */
  versionPolicy?: object;
  /**
   * False when a request's own `timeout` is ignored (Triton's `allow_timeout_override`, read from a
   * config.pbtxt); absent: a request's timeout may shorten the model's.
   */
  allowTimeoutOverride?: boolean;
  /** False for a config.pbtxt without `dynamic_batching` (requests are not held to form batches). */
  dynamicBatching?: boolean;
}

/**
 * How a model is served, as its options (config.json over the server's flags) said: read by the
 * model configuration extension and the protocol's per-model rules. Live batcher settings
 * (maxBatchSize, maxDelay, queue cap, workers) are the batcher's own `settings`.
 */
export interface ServedModelConfig extends ModelProtocolOptions {
  preferredBatchSizes?: number[];
  latencyTarget?: number;
  pad?: boolean;
  batchTimeout?: number;
  /** ONNX Runtime intra-op threads per worker. */
  threads?: number;
}

export interface OnnxModelOptions extends Partial<BatchingSettings>, ModelProtocolOptions {
  path: string;
  name?: string;
  workers?: number;
  threads?: number;
  onBatch?: (info: BatchInfo) => void;
  /** Traces each batch (OpenTelemetry, with `--otel`). */
  tracing?: BatchTracing;
}

/** A model the HTTP layer can serve: its signature, and a batched way to run it. */
export interface ServedModel {
  readonly name: string;
  readonly version: string;
  readonly platform: string;
  readonly signature: ModelSignature;
  /**
   * Most rows one batch (and so one request) may hold; checked before a request's tensors are
   * allocated. 0: the model has no batch dimension (Triton's `max_batch_size: 0`): a request's shapes
   * are the model's own, it runs alone, and it counts as one row.
   */
  readonly maxBatchSize?: number;
  /** This model's default per-request deadline in ms (a request's own may only shorten it). */
  readonly timeout?: number;
  /** How it is served (absent for models built elsewhere, such as remote ones: the protocol's defaults apply). */
  readonly config?: ServedModelConfig;
  /**
   * Every version served under this name, ascending, this one (the highest, which answers requests
   * that name no version) included; absent for a model of one version (model/triton-repository.ts).
   */
  readonly versions?: readonly ServedModel[];
  readonly batcher: BatchedFn<InferItem, InferResult>;
  /** Runs one request; its rows count against the batch limit. */
  infer(item: InferItem, options: { signal?: AbortSignal; timeout?: number; priority?: number; trace?: unknown }): Promise<InferResult>;
}

/**
 * Server defaults. maxDelay is 'auto': measured on the default model, it served a lone client at
 * 250 req/s (p50 3 ms) where a fixed 2 ms window managed 153 (p50 6 ms), and matched or beat it under load.
 */
export const SERVER_DEFAULTS = Object.freeze({
  maxBatchSize: FLAG_DEFAULTS.maxBatchSize,
  maxDelay: FLAG_DEFAULTS.maxDelay,
  channelCap: FLAG_DEFAULTS.channelCap,
  workers: FLAG_DEFAULTS.workers,
  threads: FLAG_DEFAULTS.threads,
});

/**
 * Loads an ONNX model into worker threads behind a batcher. The signature is
 * read from the file on this thread, so requests are validated before they
 * ever reach a worker.
 */
export function createOnnxModel(options: OnnxModelOptions): ServedModel {
  const threads = options.threads ?? SERVER_DEFAULTS.threads;
  // ONNX Runtime starts every intra-op thread while it builds the session: an absurd count never
  // finishes (or takes the machine down with it), so it is refused before any thread starts.
  if (!Number.isInteger(threads) || threads < 1 || threads > FLAGS.threads.max) throw new RangeError(`Expected \`threads\` to be an integer from 1 to ${FLAGS.threads.max}, got ${threads}`);
  const signature = loadSignature(options.path);
  // onnxruntime-node cannot hand a bfloat16 tensor across (1.30 fails "Unsupported data type: 16"
  // building the session, even for models it could run): say so, naming the tensor, before any worker starts.
  const bf16 = [...signature.inputs, ...signature.outputs].find((spec) => spec.datatype === 'BF16');
  if (bf16 !== undefined) throw new ModelLoadError(`${options.path}: tensor \`${bf16.name}\` is BF16, which onnxruntime-node cannot pass into or out of a session; serve it as FP16 or FP32 (a Cast in the graph), or from a JS model`);
  const workerData: OnnxWorkerData = { modelPath: options.path, threads };
  const name = options.name ?? basename(options.path).replace(/\.onnx$/, '');
  const { batcher, maxBatchSize, infer, config } = servedBatcher(new URL('./onnx.worker.js', import.meta.url), workerData, signature, { ...options, name });
  return { name, version: '1', platform: 'onnxruntime_onnx', signature, maxBatchSize, batcher, infer, config: { ...config, threads } };
}
