/**
 * A caller's trace context on its way through a stream entry, as a W3C `traceparent`
 * (`00-{trace id}-{span id}-{flags}`). The frontend writes it from the call's span; the worker
 * parses it back into a span context its batch span links to. No tracing library is needed here:
 * a span is anything with `spanContext()`.
 */
export interface RemoteSpanContext {
  traceId: string;
  spanId: string;
  traceFlags: number;
  isRemote: true;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const INVALID_TRACE = '0'.repeat(32);
const INVALID_SPAN = '0'.repeat(16);

/** The call's `trace` (an OpenTelemetry span) as a traceparent, or '' when it has none. */
export function traceparentOf(trace: unknown): string {
  const context = (
    trace as { spanContext?: () => { traceId?: unknown; spanId?: unknown; traceFlags?: unknown } } | undefined
  )?.spanContext?.();
  if (context === undefined) return '';
  const flags =
    typeof context.traceFlags === 'number' && context.traceFlags >= 0 && context.traceFlags <= 255
      ? context.traceFlags
      : 0;
  const text = `00-${String(context.traceId)}-${String(context.spanId)}-${flags.toString(16).padStart(2, '0')}`;
  return parseTraceparent(text) === undefined ? '' : text;
}

/**
 * A traceparent from an entry, checked strictly (version 00, lowercase hex, non-zero ids). Whoever
 * can write to the stream can write anything: a malformed one is ignored, as W3C asks, and the
 * request runs untraced rather than failing.
 */
export function parseTraceparent(text: string | undefined): RemoteSpanContext | undefined {
  if (text === undefined || text.length !== 55) return undefined;
  const match = TRACEPARENT.exec(text);
  if (match === null || match[1] === INVALID_TRACE || match[2] === INVALID_SPAN) return undefined;
  return {
    traceId: match[1] as string,
    spanId: match[2] as string,
    traceFlags: Number.parseInt(match[3] as string, 16),
    isRemote: true,
  };
}
