export { type BatchedFn, batchedFn } from './batched-fn.js';
export {
  BatchedFnError,
  type BatchedFnErrorCode,
  BatchSizeMismatchError,
  BatchTimeoutError,
  ClosedError,
  InvalidPadError,
  ItemTooLargeError,
  QueueFullError,
  TimeoutError,
  UnavailableError,
  WorkerExitedError,
} from './errors.js';
export type {
  BatchedFnOptions,
  BatchingOptions,
  CallOptions,
  CloseOptions,
  Handler,
  InlineOptions,
  RuntimeOptions,
  WorkerOptions,
} from './options.js';
export { DEFAULTS, MAX_TIMER_MS } from './options.js';
export type { BatchedFnStats, BatchInfo, DispatchReason, Percentiles, WorkerStats } from './stats.js';
export { batchChannel } from './batcher.js';
/** For adapters that implement the BatchedFn interface elsewhere (such as @batched-fn/redis): the same counters and windows. */
export { StatsRecorder } from './stats-recorder.js';
export { move } from './transfer.js';
/**
 * The scheduling building blocks behind `maxDelay: 'auto'`, for batchers built
 * outside the core (such as @batched-fn/redis's remote workers).
 */
export { AdaptivePolicy } from './policy/adaptive.js';
export { ArrivalRate, CostModel } from './policy/cost-model.js';
export type { LaneView, PumpTrigger, SchedulingPolicy } from './policy/types.js';
