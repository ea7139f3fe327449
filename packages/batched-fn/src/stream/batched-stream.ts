import { Engine } from '../engine/engine.js';
import type { CallOptions } from '../options.js';
import { Groups } from './groups.js';
import { type Ending, Sequence } from './sequence.js';
import { type BatchedStreamOptions, resolveStreamOptions } from './stream-options.js';
import { type BatchedStreamStats, endReasonOf, StreamStats } from './stream-stats.js';

/** A batched stream: call it with one input, read its values as they are produced. */
export interface BatchedStream<I, T> {
  /** Never throws: refusals (ERR_QUEUE_FULL, ERR_CLOSED, bad options) surface on the first `next()`. */
  (input: I, options?: CallOptions): AsyncIterableIterator<T>;
  readonly stats: BatchedStreamStats;
  /** Builds the context now (in worker mode, starts the threads and builds it in each); rejects with the build's error. */
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
 * A client of the same engine as batchedFn: the same intake, queue, policies
 * and cancel path; its runner runs groups that take joiners at step boundaries.
 */
export function batchedStream<I, S = I, T = unknown, C = undefined>(
  options: BatchedStreamOptions<I, S, T, C>,
): BatchedStream<I, T> {
  const resolved = resolveStreamOptions(options);
  const stats = new StreamStats();
  let groups!: Groups<I, S, T, C>;
  const engine = new Engine<Sequence<I, S, T>, Ending>(
    {
      maxBatchSize: resolved.maxBatchSize,
      maxDelay: resolved.maxDelay,
      channelCap: resolved.channelCap,
      concurrency: resolved.concurrency,
      destroyedMessage: 'The generator was destroyed',
    },
    stats,
    (link) => {
      groups = new Groups<I, S, T, C>(resolved, stats, link);
      return groups;
    },
  );
  let nextId = 1;
  const generate = ((input: I, callOptions?: CallOptions): AsyncIterableIterator<T> => {
    stats.called();
    const sequence = new Sequence<I, S, T>(nextId++, input, engine.handle(), stats);
    const refusal = engine.enqueue(sequence, sequence.settle, callOptions, sequence.handle);
    if (refusal !== undefined) sequence.end(endReasonOf(refusal.key), true, refusal.error);
    return sequence;
  }) as BatchedStream<I, T>;
  Object.defineProperties(generate, {
    stats: { get: () => stats.snapshot(groups.active, engine.queued, groups.held), enumerable: true },
    ready: { value: () => engine.ready() },
    close: { value: () => engine.close() },
    destroy: { value: (reason?: unknown) => engine.destroy(reason) },
  });
  return generate;
}
