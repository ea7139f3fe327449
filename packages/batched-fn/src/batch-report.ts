import diagnostics from 'node:diagnostics_channel';
import type { BatchInfo } from './stats.js';

/** Subscribers get a `BatchInfo` for every settled batch of every batcher. */
export const batchChannel = diagnostics.channel('batched-fn:batch');

/** Whether anyone listens, so a batch's `BatchInfo` is built only when it will be read. */
export function wantsReport(onBatch: ((info: BatchInfo) => void) | undefined): boolean {
  return onBatch !== undefined || batchChannel.hasSubscribers;
}

/** Publishes a settled batch to the diagnostics channel and the batcher's `onBatch`. */
export function reportBatch(onBatch: ((info: BatchInfo) => void) | undefined, info: BatchInfo): void {
  batchChannel.publish(info);
  if (onBatch === undefined) return;
  try {
    onBatch(info);
  } catch (error) {
    // A broken observer must not break serving; surface it the way Node surfaces other misuse.
    process.emitWarning(`batched-fn: onBatch threw: ${String(error)}`, 'BatchedFnWarning');
  }
}
