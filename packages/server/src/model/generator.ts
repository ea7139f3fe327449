import { type BatchedStream, batchedStream, type StepInfo } from 'batched-fn';
import { CHARLM, ensureCharLm } from './charlm.js';
import type { CharLmRequest } from './charlm.worker.js';

/** A model that answers with a stream of tokens (Triton's generate extension). */
export interface GenerativeModel {
  readonly name: string;
  readonly version: string;
  readonly generate: BatchedStream<CharLmRequest, string>;
}

export interface CharLmOptions {
  name?: string;
  /** Most sequences in one step. @default 16 */
  maxActive?: number;
  /** 'continuous' re-forms the batch at every step; 'static' runs a group to its longest sequence. @default 'continuous' */
  batching?: 'continuous' | 'static';
  /** Sequences waiting to join; beyond it, 503. @default 1024 */
  queueCap?: number;
  cacheDir?: string;
  onStep?: (info: StepInfo) => void;
}

/** charlm served by a batchedStream in a worker thread (session.run blocks its thread). */
export function createCharLmGenerator(options: CharLmOptions = {}): GenerativeModel {
  const name = options.name ?? 'charlm';
  const generate = batchedStream<CharLmRequest, unknown, string>({
    worker: new URL('./charlm.worker.js', import.meta.url),
    workerData: { modelPath: ensureCharLm(CHARLM, options.cacheDir), hidden: CHARLM.hidden },
    maxBatchSize: options.maxActive ?? 16,
    maxDelay: 'auto',
    channelCap: options.queueCap ?? 1024,
    mode: options.batching ?? 'continuous',
    name,
    ...(options.onStep === undefined ? {} : { onStep: options.onStep }),
  });
  return { name, version: '1', generate };
}
