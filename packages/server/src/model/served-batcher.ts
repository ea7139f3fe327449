import { type BatchedFn, batchedFn } from 'batched-fn';
import { type OnnxModelOptions, SERVER_DEFAULTS } from './onnx-model.js';
import type { ModelSignature, NumericDatatype } from './signature.js';
import { ARRAY_FOR, elementCount, type InferItem, type InferResult, type Tensor } from './tensor.js';

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

/** Zero rows appended as one extra request, so a fixed-shape model always sees the sizes it wants. */
function zeroPad(batch: InferItem[], targetRows: number): InferItem[] {
  const first = batch[0] as InferItem;
  const rows = targetRows - batch.reduce((sum, item) => sum + item.rows, 0);
  const inputs: InferItem['inputs'] = {};
  for (const [name, tensor] of Object.entries(first.inputs)) {
    const shape = [rows, ...tensor.shape.slice(1)];
    const count = elementCount(shape);
    const data: Tensor['data'] = tensor.datatype === 'BYTES' ? Array.from({ length: count }, () => new Uint8Array(0)) : new ARRAY_FOR[tensor.datatype as NumericDatatype](count);
    inputs[name] = { datatype: tensor.datatype, shape, data };
  }
  return [...batch, { rows, inputs }];
}

/**
 * The batcher every served model runs on (ONNX or JS): its module in worker threads, rows counted
 * through `size`, the model's batching settings over the server's defaults, shape-keyed batches for
 * open non-batch dimensions, and zero padding when asked.
 */
export function servedBatcher(worker: URL, workerData: unknown, signature: ModelSignature, options: Omit<OnnxModelOptions, 'path'> & { name: string }): { batcher: BatchedFn<InferItem, InferResult>; maxBatchSize: number } {
  const maxBatchSize = options.maxBatchSize ?? SERVER_DEFAULTS.maxBatchSize;
  const key = shapeKey(signature);
  const batcher = batchedFn<InferItem, InferResult>({
    worker,
    workers: options.workers ?? SERVER_DEFAULTS.workers,
    workerData,
    maxBatchSize,
    maxDelay: options.maxDelay ?? SERVER_DEFAULTS.maxDelay,
    channelCap: options.channelCap ?? SERVER_DEFAULTS.channelCap,
    size: (item) => item.rows,
    name: options.name,
    ...(options.latencyTarget === undefined ? {} : { latencyTarget: options.latencyTarget }),
    ...(options.preferredBatchSizes === undefined ? {} : { preferredBatchSizes: options.preferredBatchSizes }),
    ...(options.pad === true ? { pad: zeroPad } : {}),
    ...(options.batchTimeout === undefined ? {} : { batchTimeout: options.batchTimeout }),
    ...(key === undefined ? {} : { batchKey: key }),
    ...(options.onBatch === undefined ? {} : { onBatch: options.onBatch }),
    ...(options.tracing === undefined ? {} : { tracing: options.tracing }),
  });
  return { batcher, maxBatchSize };
}
