import {
  type Attributes,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  trace,
  type Tracer,
} from '@opentelemetry/api';
import type { BatchTracing } from './options.js';
import type { BatchInfo } from './stats.js';

/**
 * OpenTelemetry tracing for a batcher: `batchedFn({ ..., tracing: otelTracing() })`.
 *
 * Each batch is one span, `batch {name}`, with a link to the span of every call it served: the
 * messaging conventions' rule for batch processing (a batch has many parents, so it links them
 * rather than picking one). Each caller's span gets its queue wait and the batch it rode in.
 * A call's span is the active span where it was made, or the `trace` call option, which may
 * also be a span context from another process (a Redis stream entry's traceparent): linked too.
 *
 * This entry imports `@opentelemetry/api` (an optional peer); the main entry never does.
 */
export function otelTracing(tracer: Tracer = trace.getTracer('batched-fn')): BatchTracing {
  return {
    capture: () => trace.getActiveSpan(),
    batch(info, callers, error) {
      const contexts = callers
        .map((caller) => contextOf(caller.trace))
        .filter((c): c is SpanContext => c !== undefined);
      const end = Date.now();
      const span = tracer.startSpan(`batch ${info.name}`, {
        kind: SpanKind.CONSUMER,
        root: true,
        startTime: end - info.execMs,
        links: contexts.map((context) => ({ context })),
        attributes: batchAttributes(info),
      });
      callers.forEach((caller) => {
        if (!isSpan(caller.trace)) return;
        caller.trace.setAttributes({
          'batched_fn.queue_wait_ms': caller.waitMs,
          'batched_fn.batch.items': info.items,
          'batched_fn.batch.rows': info.rows,
          'batched_fn.batch.reason': info.reason,
        });
      });
      if (!info.ok) {
        if (error instanceof Error) span.recordException(error);
        span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
      }
      span.end(end);
    },
  };
}

/** The batch span's attributes: messaging conventions for the batch, `batched_fn.*` for the rest. */
export function batchAttributes(info: BatchInfo): Attributes {
  return {
    'messaging.system': 'batched-fn',
    'messaging.operation.type': 'process',
    'messaging.operation.name': 'batch',
    'messaging.destination.name': info.name,
    'messaging.batch.message_count': info.items,
    'batched_fn.batch.items': info.items,
    'batched_fn.batch.rows': info.rows,
    'batched_fn.batch.reason': info.reason,
    'batched_fn.batch.oldest_wait_ms': info.maxWaitMs,
    'batched_fn.batch.exec_ms': info.execMs,
    ...(info.worker === undefined ? {} : { 'batched_fn.worker.id': info.worker }),
  };
}

const HEX32 = /^[0-9a-f]{32}$/;
const HEX16 = /^[0-9a-f]{16}$/;

/** A caller's span context: from its span, or given as one (a remote parent's). */
function contextOf(trace: unknown): SpanContext | undefined {
  if (isSpan(trace)) return trace.spanContext();
  const c = trace as Partial<SpanContext> | undefined;
  if (
    typeof c === 'object' &&
    c !== null &&
    typeof c.traceId === 'string' &&
    HEX32.test(c.traceId) &&
    typeof c.spanId === 'string' &&
    HEX16.test(c.spanId)
  ) {
    return {
      traceId: c.traceId,
      spanId: c.spanId,
      traceFlags: typeof c.traceFlags === 'number' ? c.traceFlags : 0,
      isRemote: true,
    };
  }
  return undefined;
}

function isSpan(value: unknown): value is Span {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Span).spanContext === 'function' &&
    typeof (value as Span).setAttributes === 'function'
  );
}
