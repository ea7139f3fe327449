import { constants } from 'node:buffer';
import { type BatchedFn, batchedFn, type BatchInfo, type BatchTracing, move } from 'batched-fn';
import { inferCodec } from '../model/infer-codec.js';
import { ComputeJoin } from '../model/compute-timing.js';
import {
  checkPriorityLevels,
  type ModelProtocolOptions,
  type ServedModel,
  type ServedModelConfig,
} from '../model/served-model.js';
import { maxOf, SETTING_DEFAULTS } from '../settings/settings.js';
import { servedMaxBatchSize } from './batch-dimension.js';
import type { Datatype, ModelSignature, NumericDatatype } from '../model/signature.js';
import {
  ARRAY_FOR,
  elementCount,
  type InferItem,
  type InferResult,
  ownsInputBuffers,
  type Tensor,
} from '../model/tensor.js';

export interface BatchingSettings {
  /**
   * Most rows per run. 0: the model has no batch dimension (Triton's `max_batch_size: 0`), and runs
   * one request at a time with its shapes exactly as declared. Left out, a model that can batch gets
   * `defaultMaxBatchSize` and one that cannot gets 0 (batch-dimension.ts).
   */
  maxBatchSize: number;
  /** The server's maxBatchSize, for a model that can batch and does not set its own. @default SETTING_DEFAULTS.maxBatchSize */
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

/** What the batcher of every served model (ONNX or JS) takes: its batching and protocol options. */
export interface ServedBatcherOptions extends Partial<BatchingSettings>, ModelProtocolOptions {
  name: string;
  workers?: number;
  onBatch?: (info: BatchInfo) => void;
  /** Traces each batch (OpenTelemetry, with `--otel`). */
  tracing?: BatchTracing;
  /**
   * A stateful model's: a request's `sequence` (formats/sequence-table.ts) runs one at a time per
   * sequence (the core's `sequenceKey`), on the worker holding its state (`affinity`).
   */
  sequences?: boolean;
  /** A channel to each worker, for a model that calls others (formats/model-calls-host.ts): the core's `connectWorker`. */
  connectWorker?: (port: import('node:worker_threads').MessagePort, worker: number) => void;
}

/**
 * Requests can share a session.run only if every input has the same
 * non-batch shape. For models with open non-batch dimensions (an image of any
 * height), the shapes become the batch key, so unlike requests never meet.
 */
function shapeKey(signature: ModelSignature): ((item: InferItem) => string) | undefined {
  const open = signature.inputs.some((spec) => spec.shape.slice(1).includes(-1));
  if (!open) return undefined;
  return (item) => signature.inputs.map((spec) => item.inputs[spec.name]?.shape.slice(1).join('x')).join('|');
}

/**
 * How large one padding tensor may be. A numeric one is one typed array, so it must fit one
 * ArrayBuffer (`buffer.constants.MAX_LENGTH`: 4 GiB on Node 20); past it every padded batch failed
 * with "Invalid typed array length". Node 22 raised that limit to 2^53 - 1, where a 17 GB padding is
 * allocated and then exhausts the memory instead, so the limit stays 4 GiB on every Node.
 * A BYTES one is a JS array of one shared empty element, 8 bytes a slot on the V8 heap: V8 refuses
 * arrays past about 2^27 slots and the filler is copied again into the worker, so it stops at 2^24
 * (128 MiB of slots).
 */
export const MAX_PAD_BYTES = Math.min(constants.MAX_LENGTH, 2 ** 32);
export const MAX_PAD_BYTES_ELEMENTS = 2 ** 24;
const NO_BYTES = new Uint8Array(0);

/** Why `elements` of `datatype` cannot be one padding tensor, or undefined when they can. */
function padProblem(datatype: Datatype, elements: number): string | undefined {
  if (datatype === 'BYTES')
    return elements > MAX_PAD_BYTES_ELEMENTS
      ? `${elements} BYTES elements, more than the ${MAX_PAD_BYTES_ELEMENTS} padding may hold`
      : undefined;
  const bytes = elements * ARRAY_FOR[datatype].BYTES_PER_ELEMENT;
  return bytes > MAX_PAD_BYTES ? `${bytes} bytes, more than one buffer holds (${MAX_PAD_BYTES})` : undefined;
}

/** Zero rows appended as one extra request, so a fixed-shape model always sees the sizes it wants. */
function zeroPad(batch: InferItem[], targetRows: number): InferItem[] {
  const first = batch[0] as InferItem;
  const rows = targetRows - batch.reduce((sum, item) => sum + item.rows, 0);
  const inputs: InferItem['inputs'] = {};
  for (const [name, tensor] of Object.entries(first.inputs)) {
    const shape = [rows, ...tensor.shape.slice(1)];
    const count = elementCount(shape);
    // Fixed shapes were checked at load; an open dimension is known only now, from the first request.
    const problem = padProblem(tensor.datatype, count);
    if (problem !== undefined)
      throw new RangeError(
        `Cannot pad input \`${name}\` to ${targetRows} rows of shape ${JSON.stringify(tensor.shape.slice(1))}: ${problem}`,
      );
    const data: Tensor['data'] =
      tensor.datatype === 'BYTES'
        ? new Array<Uint8Array>(count).fill(NO_BYTES)
        : new ARRAY_FOR[tensor.datatype as NumericDatatype](count);
    inputs[name] = { datatype: tensor.datatype, shape, data };
  }
  return [...batch, { rows, inputs }];
}

/** `maxBatchSize` as given: an integer, 0 (no batch dimension, batch-dimension.ts) or from 1 to the setting's limit. */
function checkMaxBatchSize(maxBatchSize: number | undefined): void {
  const most = maxOf('maxBatchSize');
  if (maxBatchSize !== undefined && (!Number.isInteger(maxBatchSize) || maxBatchSize < 0 || maxBatchSize > most)) {
    throw new RangeError(
      `Expected \`maxBatchSize\` to be an integer from 0 (no batch dimension) to ${most}, got ${maxBatchSize}`,
    );
  }
}

/** Refuses settings no batch could be built with, at load, rather than failing every request after it. */
function checkSettings(signature: ModelSignature, maxBatchSize: number, workers: number, pad: boolean): void {
  if (!Number.isInteger(workers) || workers < 1 || workers > maxOf('workers'))
    throw new RangeError(`Expected \`workers\` to be an integer from 1 to ${maxOf('workers')}, got ${workers}`);
  // Without a batch dimension there are no rows to pad or sizes to prefer: the server-wide `--pad`
  // and `--preferred-batch-sizes` do not apply (a model's own config asking for them with
  // `maxBatchSize: 0` is refused where it is read, repository/config-file.ts).
  if (maxBatchSize === 0 || !pad) return;
  // The worst padding is a lone 1-row request filled up to maxBatchSize rows.
  for (const spec of signature.inputs) {
    const row = spec.shape.slice(1);
    if (row.includes(-1)) continue;
    const problem = padProblem(spec.datatype, maxBatchSize * row.reduce((a, b) => a * b, 1));
    if (problem !== undefined)
      throw new RangeError(
        `\`pad\` with \`maxBatchSize\` ${maxBatchSize}: input \`${spec.name}\` padded to ${maxBatchSize} rows of ${JSON.stringify(row)} would take ${problem}; lower maxBatchSize`,
      );
  }
}

/** What every served model's worker is told beside its own data. */
export interface BatchedWorkerData {
  /** False for a model without a batch dimension: each run is one request, whose outputs are its answer as they are. */
  batched: boolean;
}

/**
 * The batcher every served model runs on (ONNX or JS): its module in worker threads, rows counted
 * through `size`, the model's batching settings over the server's defaults, shape-keyed batches for
 * open non-batch dimensions, and zero padding when asked.
 */
export function servedBatcher(
  worker: URL,
  workerData: object,
  signature: ModelSignature,
  options: ServedBatcherOptions,
): {
  batcher: BatchedFn<InferItem, InferResult>;
  batched: boolean;
  infer: ServedModel['infer'];
  config: ServedModelConfig;
} {
  checkMaxBatchSize(options.maxBatchSize);
  // 0 when the model has no batch dimension (batch-dimension.ts): then one request per run.
  const maxBatchSize = servedMaxBatchSize(
    options.name,
    signature,
    options.maxBatchSize,
    options.defaultMaxBatchSize ?? SETTING_DEFAULTS.maxBatchSize,
  );
  checkMaxBatchSize(maxBatchSize);
  const batched = maxBatchSize > 0;
  const workers = options.workers ?? SETTING_DEFAULTS.workers;
  checkSettings(signature, maxBatchSize, workers, options.pad === true);
  checkPriorityLevels(options);
  for (const output of Object.keys(options.labels ?? {})) {
    if (!signature.outputs.some((spec) => spec.name === output))
      throw new RangeError(
        `\`labels\` names output \`${output}\`, which the model does not have (its outputs: ${signature.outputs.map((o) => `\`${o.name}\``).join(', ')})`,
      );
  }
  const key = batched ? shapeKey(signature) : undefined;
  // Splits each batch's time into Triton's compute_input/infer/output (compute-timing.ts).
  const join = new ComputeJoin();
  const onBatch = options.onBatch;
  const batcher = batchedFn<InferItem, InferResult>({
    worker,
    workers,
    // The worker stacks and splits rows only for a model that has them.
    workerData: { ...workerData, batched } satisfies BatchedWorkerData,
    maxBatchSize: batched ? maxBatchSize : 1,
    maxDelay: options.maxDelay ?? SETTING_DEFAULTS.maxDelay,
    channelCap: options.channelCap ?? SETTING_DEFAULTS.channelCap,
    size: batched ? (item) => item.rows : () => 1,
    name: options.name,
    ...(options.latencyTarget === undefined ? {} : { latencyTarget: options.latencyTarget }),
    ...(options.preferredBatchSizes === undefined || !batched
      ? {}
      : { preferredBatchSizes: options.preferredBatchSizes }),
    ...(options.pad === true && batched ? { pad: zeroPad } : {}),
    ...(options.batchTimeout === undefined ? {} : { batchTimeout: options.batchTimeout }),
    ...(key === undefined ? {} : { batchKey: key }),
    ...(options.sequences === true
      ? {
          sequenceKey: (item: InferItem) => item.sequence?.id,
          affinity: (item: InferItem) => item.sequence?.worker,
        }
      : {}),
    ...(onBatch === undefined
      ? {}
      : {
          onBatch: (info: BatchInfo) => {
            join.onBatch(info);
            onBatch(info);
          },
        }),
    ...(options.tracing === undefined ? {} : { tracing: options.tracing }),
    ...(options.connectWorker === undefined ? {} : { connectWorker: options.connectWorker }),
    // One stacked tensor each way per batch rather than an object per request (model/infer-codec.ts);
    // the worker modules export the same codec.
    codec: inferCodec,
  });
  // What applies: a model without a batch dimension neither pads nor prefers sizes.
  const defined = <K extends keyof ServedModelConfig & keyof ServedBatcherOptions>(
    key: K,
  ): Partial<ServedModelConfig> =>
    options[key] === undefined || (!batched && (key === 'pad' || key === 'preferredBatchSizes'))
      ? {}
      : { [key]: options[key] };
  const config: ServedModelConfig = {
    ...defined('preferredBatchSizes'),
    ...defined('latencyTarget'),
    ...defined('pad'),
    ...defined('batchTimeout'),
    ...defined('priorityLevels'),
    ...defined('defaultPriorityLevel'),
    ...defined('labels'),
    ...defined('labelFiles'),
    ...defined('parameters'),
  };
  // A request whose tensors own their buffers gives them up: a batch of one crosses to its thread
  // without a copy. Views of a shared buffer (a small request's, in Node's Buffer pool) are copied.
  const infer: ServedModel['infer'] = (item, callOptions) =>
    batcher(ownsInputBuffers(item) ? move(item) : item, callOptions).then(join.take);
  return { batcher, batched, infer, config };
}

/**
 * The ServedModel of a served batcher. `maxBatchSize` is read from the batcher's live settings, not
 * copied: `batcher.configure({ maxBatchSize })` changes the one value the decoders, the model
 * configuration and the engine all read. A model without a batch dimension answers 0 (its batcher
 * runs one request at a time).
 */
export function liveModel(fields: Omit<ServedModel, 'maxBatchSize'>, batched: boolean): ServedModel {
  const { batcher } = fields;
  // Its infer (servedBatcher's) moves only requests that own their buffers, and the codec copies the rest.
  return Object.defineProperty({ ...fields, takesSharedViews: true }, 'maxBatchSize', {
    get: () => (batched ? batcher.settings.maxBatchSize : 0),
    enumerable: true,
  });
}
