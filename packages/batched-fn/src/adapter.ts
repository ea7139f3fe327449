/**
 * For packages that build on the core's call lifecycle and options (such as
 * @batched-fn/redis): the same validators and vocabulary, so an adapter never
 * grows a second set of rules. Not part of the main entry.
 */
export { validateCallOptions } from './options.js';
/** Every option's row (type, default, rule, check): a server that exposes the options reads them here, not a copy. */
export { OPTION_SCHEMA, type OptionName, type OptionSpec } from './option-schema.js';
export { expectDuration, expectInteger, MAX_TIMER_MS, rowsOf, validateMaxDelay } from './validate.js';
export { DISPATCH_REASONS } from './stats.js';
export { deserializeError, isSerializedError, type SerializedError, serializeError } from './error-codec.js';
/** The same counters and percentile windows as `predict.stats`, for adapters that implement BatchedFn elsewhere. */
export { StatsRecorder } from './stats-recorder.js';
export { PendingCalls } from './pending-calls.js';
