/**
 * The parts of an OpenTelemetry tracer the server uses, written structurally so the server's
 * types never need `@opentelemetry/api` (an optional package, loaded only with `--otel`). An
 * OpenTelemetry `Tracer` is one of these.
 */
export type SpanAttributes = Record<string, string | number | boolean | undefined>;

export interface SpanLike {
  setAttribute(key: string, value: string | number | boolean): unknown;
  setAttributes(attributes: SpanAttributes): unknown;
  setStatus(status: { code: number; message?: string }): unknown;
  addEvent(name: string, attributes?: SpanAttributes): unknown;
  end(endTime?: number): void;
}

export interface TracerLike {
  /** `parent`: an OpenTelemetry Context, only ever `extract`'s result (hence `never`), so a client's trace continues in ours. */
  startSpan(name: string, options?: { kind?: number; attributes?: SpanAttributes }, parent?: never): SpanLike;
}

/** Reads a W3C `traceparent` (and `tracestate`) from request headers or gRPC metadata into a parent context. */
export type ExtractParent = (carrier: Record<string, unknown>) => never;

/** OpenTelemetry's SpanKind.SERVER and SpanStatusCode.ERROR, as numbers. */
export const SPAN_KIND_SERVER = 1;
export const SPAN_STATUS_ERROR = 2;

/** Ends a server span with its outcome's attributes; `failed` (the server's fault, not the client's) sets error status. */
export function endRequestSpan(
  span: SpanLike | undefined,
  failed: boolean,
  attributes: SpanAttributes = {},
  message?: string,
): void {
  if (span === undefined) return;
  span.setAttributes(attributes);
  if (failed) span.setStatus({ code: SPAN_STATUS_ERROR, ...(message === undefined ? {} : { message }) });
  span.end();
}
