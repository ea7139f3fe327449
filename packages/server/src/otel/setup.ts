import { defaultTextMapGetter, ROOT_CONTEXT, trace, TraceFlags } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, type Sampler, type SamplingDecision, TracerProvider } from '@opentelemetry/sdk-trace';
import { type BatchTracing, MAX_TIMER_MS } from 'batched-fn';
import { otelTracing } from 'batched-fn/otel';
import { SERVER_VERSION } from '../protocol/infer-front.js';
import { TraceSwitch } from '../protocol/trace-switch.js';
import type { ExtractParent, TracerLike } from './types.js';

export interface Telemetry {
  /** Starts the server spans (one per HTTP request and gRPC call). */
  tracer: TracerLike;
  /** The client's trace context, from `traceparent`/`tracestate` headers (W3C), as the server span's parent. */
  extract: ExtractParent;
  /** The batchers' tracing: a span per batch, linked to the request spans it served. */
  tracing: BatchTracing;
  /** What is traced, changed at run time by the trace extension (trace-switch.ts): the provider's sampler. */
  traceSwitch: TraceSwitch;
  /** Exports what is buffered, then stops. */
  shutdown(): Promise<void>;
}

/** The OTLP protocols this exporter speaks (OTLP over gRPC is not among them). */
const PROTOCOLS = ['http/protobuf', 'http/json'] as const;

function scheduleDelay(env: NodeJS.ProcessEnv): number | undefined {
  const raw = env.OTEL_BSP_SCHEDULE_DELAY;
  if (raw === undefined || raw === '') return undefined;
  const ms = /^[0-9]{1,10}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(ms <= MAX_TIMER_MS))
    throw new RangeError(
      `OTEL_BSP_SCHEDULE_DELAY must be milliseconds from 0 to ${MAX_TIMER_MS}, got ${JSON.stringify(raw.slice(0, 40))}`,
    );
  return ms;
}

/**
 * `--otel`: the standard SDK with a batching span processor and an OTLP/HTTP exporter, set up
 * from the standard environment: `OTEL_EXPORTER_OTLP_ENDPOINT` or `..._TRACES_ENDPOINT` (read by
 * the exporter), `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` or `OTEL_EXPORTER_OTLP_PROTOCOL`
 * (`http/protobuf`, the default, or `http/json`), `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_SERVICE_NAME`.
 */
export async function startTelemetry(env: NodeJS.ProcessEnv = process.env): Promise<Telemetry> {
  const protocol = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL ?? 'http/protobuf';
  if (!(PROTOCOLS as readonly string[]).includes(protocol))
    throw new RangeError(
      `--otel exports over ${PROTOCOLS.join(' or ')}, got OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=${JSON.stringify(protocol.slice(0, 40))}`,
    );
  const { OTLPTraceExporter } =
    protocol === 'http/json'
      ? await import('@opentelemetry/exporter-trace-otlp-http')
      : await import('@opentelemetry/exporter-trace-otlp-proto');
  const delay = scheduleDelay(env);
  const traceSwitch = new TraceSwitch();
  // The trace extension decides what is recorded; it replaces the SDK's default sampler (and OTEL_TRACES_SAMPLER).
  const sampler: Sampler = {
    shouldSample: (context, _traceId, _name, kind, attributes, links) => ({
      decision: traceSwitch.decide(
        kind,
        attributes,
        links.map((link) => link.context.traceFlags),
        ((trace.getSpanContext(context)?.traceFlags ?? 0) & TraceFlags.SAMPLED) !== 0,
      ) as SamplingDecision,
    }),
    toString: () => 'TraceSwitch',
  };
  const provider = new TracerProvider({
    sampler,
    resource: resourceFromAttributes({
      'service.name': env.OTEL_SERVICE_NAME ?? 'batched-fn',
      'service.version': SERVER_VERSION,
    }),
    // A batch span links to every request it served: up to the largest batch, not the SDK's 128.
    spanLimits: { linkCountLimit: 65_536 },
    spanProcessors: [
      new BatchSpanProcessor({
        exporter: new OTLPTraceExporter(),
        ...(delay === undefined ? {} : { scheduledDelayMillis: delay }),
      }),
    ],
  });
  const tracer = provider.getTracer('@batched-fn/server', SERVER_VERSION);
  // W3C Trace Context, checked by the propagator: a malformed traceparent starts a new trace.
  const propagator = new W3CTraceContextPropagator();
  const extract = ((carrier: Record<string, unknown>) =>
    propagator.extract(ROOT_CONTEXT, carrier, defaultTextMapGetter)) as ExtractParent;
  return {
    tracer,
    extract,
    tracing: otelTracing(tracer),
    traceSwitch,
    // Tracing never fails serving: a collector that is down at shutdown costs its spans, not the drain's exit code.
    shutdown: () =>
      provider
        .shutdown()
        .catch((error: unknown) =>
          process.emitWarning(`batched-fn: could not export the last spans: ${String(error)}`, 'BatchedFnWarning'),
        ),
  };
}
