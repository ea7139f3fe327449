import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { type BatchedFn, batchedFn, type BatchInfo, move } from 'batched-fn';
import type { OnnxWorkerData } from './onnx.worker.js';
import { type ModelSignature, readOnnxSignature } from './signature.js';
import type { InferItem, InferResult } from './tensor.js';

export interface BatchingSettings {
  maxBatchSize: number;
  maxDelay: number;
  channelCap: number;
}

export interface OnnxModelOptions extends Partial<BatchingSettings> {
  path: string;
  name?: string;
  workers?: number;
  threads?: number;
  onBatch?: (info: BatchInfo) => void;
}

/** A model the HTTP layer can serve: its signature, and a batched way to run it. */
export interface ServedModel {
  readonly name: string;
  readonly version: string;
  readonly platform: string;
  readonly signature: ModelSignature;
  readonly batcher: BatchedFn<InferItem, InferResult>;
  /** Runs one request; its rows count against the batch limit. */
  infer(item: InferItem, options: { signal?: AbortSignal; timeout?: number }): Promise<InferResult>;
}

export const SERVER_DEFAULTS = Object.freeze({ maxBatchSize: 64, maxDelay: 2, channelCap: 1024, workers: 1, threads: 2 });

/**
 * Loads an ONNX model into worker threads behind a batcher. The signature is
 * read from the file on this thread, so requests are validated before they
 * ever reach a worker.
 */
export function createOnnxModel(options: OnnxModelOptions): ServedModel {
  const signature = readOnnxSignature(readFileSync(options.path));
  const workerData: OnnxWorkerData = { modelPath: options.path, threads: options.threads ?? SERVER_DEFAULTS.threads };
  const name = options.name ?? basename(options.path).replace(/\.onnx$/, '');
  const batcher = batchedFn<InferItem, InferResult>({
    worker: new URL('./onnx.worker.js', import.meta.url),
    workers: options.workers ?? SERVER_DEFAULTS.workers,
    workerData,
    maxBatchSize: options.maxBatchSize ?? SERVER_DEFAULTS.maxBatchSize,
    maxDelay: options.maxDelay ?? SERVER_DEFAULTS.maxDelay,
    channelCap: options.channelCap ?? SERVER_DEFAULTS.channelCap,
    size: (item) => item.rows,
    name,
    ...(options.onBatch === undefined ? {} : { onBatch: options.onBatch }),
  });
  return {
    name,
    version: '1',
    platform: 'onnxruntime_onnx',
    signature,
    batcher,
    infer: (item, callOptions) => batcher(move(item), callOptions),
  };
}
