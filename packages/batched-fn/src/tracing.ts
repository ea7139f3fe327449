import type { BatchTracing, TracedCall } from './options.js';
import type { BatchInfo } from './stats.js';

/**
 * The core's side of tracing: it only carries each caller's trace to its batch. What a trace is,
 * and what a batch span looks like, is the tracer's (see `batched-fn/otel`), so the core imports
 * no tracing library.
 */

/** The tracer's view of the caller; a throwing tracer costs the trace, never the call. */
export function captureTrace(tracing: BatchTracing): unknown {
  try {
    return tracing.capture();
  } catch (error) {
    process.emitWarning(`batched-fn: tracing.capture threw: ${String(error)}`, 'BatchedFnWarning');
    return undefined;
  }
}

/** Hands a settled batch and its traced callers to `tracing.batch`; a throwing tracer is a warning, never a failure. */
export function traceBatch(
  tracing: BatchTracing,
  info: BatchInfo,
  batch: { handles: readonly ({ trace: unknown; arrival: number } | undefined)[] | undefined; started: number },
  error: unknown,
): void {
  const callers: TracedCall[] = [];
  for (const handle of batch.handles ?? []) {
    if (handle?.trace !== undefined) callers.push({ trace: handle.trace, waitMs: batch.started - handle.arrival });
  }
  if (callers.length === 0) return;
  try {
    tracing.batch(info, callers, error);
  } catch (thrown) {
    process.emitWarning(`batched-fn: tracing.batch threw: ${String(thrown)}`, 'BatchedFnWarning');
  }
}
