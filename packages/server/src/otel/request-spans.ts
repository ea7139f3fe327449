import type { FastifyInstance, FastifyRequest } from 'fastify';
import { endRequestSpan, SPAN_KIND_SERVER, type SpanAttributes, type SpanLike, type TracerLike } from './types.js';

/** Each traced request's server span, until it ends. */
const spans = new WeakMap<FastifyRequest, SpanLike>();

export const spanOf = (request: FastifyRequest): SpanLike | undefined => spans.get(request);

/** Ends a request's span once (a streamed answer ends it itself, before fastify's own hook would). */
export function endSpanOf(request: FastifyRequest, status: number, attributes?: SpanAttributes, message?: string): void {
  const span = spans.get(request);
  if (span === undefined) return;
  spans.delete(request);
  // The HTTP conventions: a 5xx is the server's error; a 4xx is the client's, not an error here.
  endRequestSpan(span, status >= 500, { 'http.response.status_code': status, ...attributes }, message);
}

/**
 * One server span per HTTP request to the plugin's routes, named `{method} {route}` after the
 * route's template (never the client's path), with the HTTP conventions' attributes.
 */
export function traceRequests(app: FastifyInstance, tracer: TracerLike): void {
  app.addHook('onRequest', async (request) => {
    const route = request.routeOptions.url;
    spans.set(
      request,
      tracer.startSpan(route === undefined ? request.method : `${request.method} ${route}`, {
        kind: SPAN_KIND_SERVER,
        attributes: { 'http.request.method': request.method, 'http.route': route, 'url.scheme': 'http', 'network.protocol.name': 'http' },
      }),
    );
  });
  app.addHook('onResponse', async (request, reply) => endSpanOf(request, reply.statusCode));
}
