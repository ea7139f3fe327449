import type { FastifyInstance, FastifyRequest } from 'fastify';
import { MODEL_ATTRIBUTE } from '../protocol/trace-switch.js';
import {
  endRequestSpan,
  type ExtractParent,
  SPAN_KIND_SERVER,
  type SpanAttributes,
  type SpanLike,
  type TracerLike,
} from './types.js';

/** The routes whose requests are inferences, as Triton's trace settings count them. */
const INFERENCE_ROUTE = /\/(infer|generate|generate_stream)$/;

/** Each traced request's server span, until it ends. */
const spans = new WeakMap<FastifyRequest, SpanLike>();

export const spanOf = (request: FastifyRequest): SpanLike | undefined => spans.get(request);

/** Ends a request's span once (a streamed answer ends it itself, before fastify's own hook would). */
export function endSpanOf(
  request: FastifyRequest,
  status: number,
  attributes?: SpanAttributes,
  message?: string,
): void {
  const span = spans.get(request);
  if (span === undefined) return;
  spans.delete(request);
  // The HTTP conventions: a 5xx is the server's error; a 4xx is the client's, not an error here.
  endRequestSpan(span, status >= 500, { 'http.response.status_code': status, ...attributes }, message);
}

/**
 * One server span per HTTP request, named `{method} {route}` after the route's template (never
 * the client's path), with the HTTP conventions' attributes; with `extract`, a child of the
 * client's span when the request carries a valid `traceparent`.
 */
export function traceRequests(app: FastifyInstance, tracer: TracerLike, extract?: ExtractParent): void {
  app.addHook('onRequest', async (request) => {
    const route = request.routeOptions.url;
    // An inference request names its model from the start: the trace settings sample per model
    // (trace-switch.ts). The infer front later sets the attribute again, to a name the server has.
    const model =
      route !== undefined && INFERENCE_ROUTE.test(route)
        ? (request.params as { name?: unknown } | undefined)?.name
        : undefined;
    const options = {
      kind: SPAN_KIND_SERVER,
      attributes: {
        'http.request.method': request.method,
        'http.route': route,
        'url.scheme': 'http',
        'network.protocol.name': 'http',
        ...(typeof model === 'string' ? { [MODEL_ATTRIBUTE]: model } : {}),
      },
    };
    const name = route === undefined ? request.method : `${request.method} ${route}`;
    spans.set(
      request,
      extract === undefined
        ? tracer.startSpan(name, options)
        : tracer.startSpan(name, options, extract(request.headers)),
    );
  });
  app.addHook('onResponse', async (request, reply) => endSpanOf(request, reply.statusCode));
}
