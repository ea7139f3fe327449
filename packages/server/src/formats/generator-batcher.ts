import type { BatchedFn, BatchedFnSettings, BatchedFnStats, BatchedStream, Percentiles } from 'batched-fn';
import type { InferItem, InferResult } from '../model/tensor.js';

/**
 * The BatchedFn face of a generator's stream: what the registry (ready, close, destroy), the
 * metrics, the dashboard and the model configuration read of every model, taken from the stream.
 * Calling it refuses: a generator answers many responses per request, which one `infer` cannot
 * carry (Triton's decoupled models); the generation front (protocol/generation.ts) serves it.
 */
export function generatorBatcher(
  stream: BatchedStream<unknown, string>,
  settings: BatchedFnSettings,
): BatchedFn<InferItem, InferResult> {
  const refuse = (() =>
    Promise.reject(
      Object.assign(new Error('A generator answers through generation (generate, ModelStreamInfer), not infer'), {
        status: 400,
      }),
    )) as unknown as BatchedFn<InferItem, InferResult>;
  const stats = (): BatchedFnStats => {
    const s = stream.stats;
    const none: Percentiles = { count: 0, mean: 0, p50: 0, p90: 0, p99: 0, max: 0 };
    return {
      queued: s.waiting,
      queuedRows: s.waiting,
      inFlight: s.active,
      inFlightItems: s.active,
      calls: s.calls,
      completed: s.ended.done,
      failed: s.ended.error + s.ended.timeout,
      failures: {},
      batches: s.steps,
      dispatchReasons: { full: 0, delay: 0, backlog: 0, close: 0, adaptive: 0, preferred: 0 },
      batchSize: s.stepSize,
      waitMs: s.waitMs,
      execMs: s.stepMs.count === 0 ? none : s.stepMs,
      workers: [],
      costModel: undefined,
    };
  };
  Object.defineProperties(refuse, {
    stats: { get: stats, enumerable: true },
    settings: { get: () => ({ ...settings }), enumerable: true },
    ready: { value: () => stream.ready() },
    close: { value: () => stream.close() },
    destroy: { value: (reason?: unknown) => stream.destroy(reason) },
    // The registry flushes a retiring model's queue with `maxDelay: 0`: a stream has no window to
    // flush. Its other settings are fixed at load (reload the model to change them).
    configure: {
      value: (options: Record<string, unknown>) => {
        const fixed = Object.keys(options).filter((key) => key !== 'maxDelay' && options[key] !== undefined);
        if (fixed.length > 0)
          throw new TypeError(
            `A generator's \`${fixed[0]}\` is fixed when it loads: load the model again to change it`,
          );
      },
    },
  });
  return refuse;
}
