import type { CallOptions } from '../options.js';
import { StreamBatcher } from './stream-batcher.js';
import { type BatchedStreamOptions, resolveStreamOptions } from './stream-options.js';
import type { BatchedStreamStats } from './stream-stats.js';

/** A batched stream: call it with one input, read its values as they are produced. */
export interface BatchedStream<I, T> {
  /** Never throws: refusals (ERR_QUEUE_FULL, ERR_CLOSED, bad options) surface on the first `next()`. */
  (input: I, options?: CallOptions): AsyncIterableIterator<T>;
  readonly stats: BatchedStreamStats;
  /** Builds the context now. */
  ready(): Promise<void>;
  /** Refuses new sequences, runs waiting and active ones to the end, then resolves. */
  close(): Promise<void>;
  /** Ends every sequence at once, with `reason` or ERR_CLOSED. */
  destroy(reason?: unknown): void;
}

/**
 * Continuous batching for any step function: the batch is re-formed at every
 * step, so finished sequences leave and waiting ones join at once, as LLM
 * engines do after Orca. `mode: 'static'` keeps a group's membership fixed.
 */
export function batchedStream<I, S = I, T = unknown, C = undefined>(options: BatchedStreamOptions<I, S, T, C>): BatchedStream<I, T> {
  const batcher = new StreamBatcher<I, S, T, C>(resolveStreamOptions(options));
  const generate = ((input: I, callOptions?: CallOptions) => batcher.call(input, callOptions)) as BatchedStream<I, T>;
  Object.defineProperties(generate, {
    stats: { get: () => batcher.stats, enumerable: true },
    ready: { value: () => batcher.ready() },
    close: { value: () => batcher.close() },
    destroy: { value: (reason?: unknown) => batcher.destroy(reason) },
  });
  return generate;
}
