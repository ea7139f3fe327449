export { type BatchedFn, batchedFn } from './batched-fn.js';
export {
  BatchedFnError,
  type BatchedFnErrorCode,
  BatchSizeMismatchError,
  BatchTimeoutError,
  ClosedError,
  InvalidOutputError,
  InvalidPadError,
  ItemTooLargeError,
  QueueFullError,
  TimeoutError,
  UnavailableError,
  WorkerExitedError,
} from './errors.js';
export type {
  BatchCodec,
  BatchedFnOptions,
  BatchTracing,
  BatchingOptions,
  CallOptions,
  CloseOptions,
  Handler,
  InlineOptions,
  PackedBatch,
  RuntimeOptions,
  TracedCall,
  WorkerOptions,
} from './options.js';
export { DEFAULTS } from './option-schema.js';
export { MAX_TIMER_MS } from './validate.js';
export type {
  BatchedFnSettings,
  BatchedFnStats,
  BatchInfo,
  DispatchReason,
  Percentiles,
  WorkerStats,
} from './stats.js';
export { batchChannel } from './batch-report.js';
export { isMoved, move, transferListFor } from './transfer.js';
export { type BatchedStream, batchedStream } from './stream/batched-stream.js';
export type { BatchedStreamOptions, StepInfo, StepOutput } from './stream/stream-options.js';
export type { BatchedStreamStats } from './stream/stream-stats.js';
