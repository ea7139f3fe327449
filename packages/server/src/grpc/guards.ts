import type { EventEmitter } from 'node:events';
import { constants, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { MAX_TIMER_MS } from 'batched-fn';
import { type Metadata, type Server, ServerInterceptingCall, type ServerInterceptor, type ServiceDefinition, status as GrpcStatus } from '@grpc/grpc-js';
import { HttpError } from '../kserve/errors.js';
import { malformed, scanMessage, scanModelInferRequest, type WireLimits } from './wire-scan.js';

/**
 * What stands between a gRPC connection and the handlers: the limits of one HTTP/2 stream,
 * checked before grpc-js and protobufjs spend memory on it.
 */

/** A request the guard refused while deserializing: the handler answers with its error instead of running. */
export class RefusedRequest {
  constructor(readonly error: HttpError) {}
}

/**
 * The service definition with every method's request decoded through the wire scan: a malformed
 * message, or a ModelInferRequest with too many tensors or elements, becomes a RefusedRequest
 * (answered INVALID_ARGUMENT by the handler) instead of a throw, which grpc-js would answer
 * INTERNAL ("Error deserializing request"), or millions of objects.
 */
export function guardedService(service: ServiceDefinition, limits: WireLimits): ServiceDefinition {
  const guarded: Record<string, ServiceDefinition[string]> = {};
  for (const [name, method] of Object.entries(service)) {
    const type = `${name}Request`;
    const scan = name === 'ModelInfer' ? (bytes: Buffer) => scanModelInferRequest(bytes, limits) : (bytes: Buffer) => scanMessage(bytes, type);
    guarded[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer): unknown => {
        try {
          scan(bytes);
          return method.requestDeserialize(bytes);
        } catch (error) {
          // protobufjs's own errors (a map entry without a value, say) are the client's too.
          return new RefusedRequest(error instanceof HttpError ? error : malformed(type, (error as Error)?.message ?? String(error)));
        }
      },
    };
  }
  return guarded;
}

/**
 * grpc-timeout, as the gRPC spec writes it: 1 to 8 digits and a unit.
 * https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md
 */
const TIMEOUT = /^(\d{1,8})([HMSmun])$/;
const UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };
/** The longest deadline a timer can hold (2^31 - 1 ms, about 24.8 days), in a unit grpc-js reads right. */
const CLAMPED_TIMEOUT = `${Math.floor(MAX_TIMER_MS / 1000)}S`;
/** Where the hook leaves an invalid grpc-timeout for the interceptor to answer (a client's own copy is dropped). */
const INVALID_TIMEOUT = 'batched-fn-invalid-grpc-timeout';

/**
 * Puts our checks on every HTTP/2 stream, ahead of grpc-js's own `stream` listener:
 *
 * - grpc-timeout is fixed before grpc-js reads it. grpc-js 1.14 (server-interceptors.js,
 *   BaseServerInterceptingCall.handleTimeoutHeader) computes the deadline as
 *   `(value * unit) | 0`: a timeout past 2^31 ms (24.8 days; `2592000S` is 30 days) wraps to
 *   a negative or small number, and the call fails DEADLINE_EXCEEDED within milliseconds. Its
 *   regular expression is not anchored either (`123456789m` reads as 23456789 ms), and a value
 *   it cannot read is answered INTERNAL, where the client is at fault. grpc-js arms that timer
 *   in the call's constructor, before any interceptor runs, and keeps the raw header to
 *   itself, so the only place to act is here: a timeout past the longest timer is clamped to
 *   it (the call runs), an invalid one is removed and left for `timeoutHeaderGuard` to answer
 *   INVALID_ARGUMENT (grpc-js itself must answer: it still owns the stream's response).
 *
 * - A stream whose request has not fully arrived (its message and the end of the client's
 *   side) `receiveTimeoutMs` after its headers is answered DEADLINE_EXCEEDED and closed with
 *   RST_STREAM. grpc-js has no such timeout, and even its own answers (UNIMPLEMENTED, a
 *   RESOURCE_EXHAUSTED for a message too large) leave the stream half-closed while the client
 *   keeps its side open: Node frees a stream only when both sides have ended. Such streams,
 *   each with its buffers, were held until the client hung up (50,000 of them: +313 MB RSS).
 *
 * The HTTP/2 servers are grpc-js's private `http2Servers`; if a later version renames it,
 * this returns false and the server runs without these checks (grpc-hardening.test.ts then
 * fails, which is the signal to look again).
 */
export function hookStreams(server: Server, receiveTimeoutMs: number): boolean {
  const servers = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(servers instanceof Map) || servers.size === 0) return false;
  const onStream = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void => {
    fixTimeoutHeader(headers);
    cutIfIncomplete(stream, receiveTimeoutMs);
  };
  for (const http2Server of servers.keys() as IterableIterator<EventEmitter>) http2Server.prependListener('stream', onStream);
  return true;
}

function fixTimeoutHeader(headers: IncomingHttpHeaders): void {
  delete headers[INVALID_TIMEOUT];
  const raw = headers['grpc-timeout'];
  if (raw === undefined) return;
  const match = typeof raw === 'string' ? TIMEOUT.exec(raw) : null;
  if (match === null) {
    delete headers['grpc-timeout'];
    // Metadata takes printable ASCII only: the value travels encoded.
    headers[INVALID_TIMEOUT] = encodeURIComponent(String(raw).slice(0, 40));
    return;
  }
  if (Number(match[1]) * (UNIT_MS[match[2] as string] as number) > MAX_TIMER_MS) headers['grpc-timeout'] = CLAMPED_TIMEOUT;
}

function cutIfIncomplete(stream: ServerHttp2Stream, receiveTimeoutMs: number): void {
  const timer = setTimeout(() => {
    if (stream.closed || stream.destroyed) return;
    // No handler has run (it waits for the whole request), so the answer is still ours to give,
    // unless grpc-js already gave one; then only the stream is left to close.
    if (!stream.headersSent) {
      const details = `The request did not arrive within ${receiveTimeoutMs} ms of its headers (--grpc-receive-timeout)`;
      stream.respond({ ':status': 200, 'content-type': 'application/grpc+proto', 'grpc-status': String(GrpcStatus.DEADLINE_EXCEEDED), 'grpc-message': encodeURI(details) }, { endStream: true });
    }
    // NO_ERROR, after the answer is flushed: "stop sending, the response is complete" (RFC 9113, 8.1).
    // grpc-js sees the stream closed, cancels the call, and answers nothing more.
    stream.close(constants.NGHTTP2_NO_ERROR);
  }, receiveTimeoutMs);
  timer.unref();
  const stop = (): void => clearTimeout(timer);
  stream.once('end', stop);
  stream.once('close', stop);
}

/**
 * Answers INVALID_ARGUMENT to a call whose grpc-timeout header could not be read (the stream
 * hook leaves it in the metadata), where grpc-js would answer INTERNAL.
 */
export const timeoutHeaderGuard: ServerInterceptor = (_method, next) => {
  const call: ServerInterceptingCall = new ServerInterceptingCall(next, {
    start: (startNext) => {
      startNext({
        onReceiveMetadata: (metadata: Metadata, metadataNext) => {
          const invalid = metadata.get(INVALID_TIMEOUT)[0];
          metadata.remove(INVALID_TIMEOUT);
          if (invalid !== undefined) {
            const value = JSON.stringify(decodeURIComponent(String(invalid)));
            call.sendStatus({ code: GrpcStatus.INVALID_ARGUMENT, details: `Invalid grpc-timeout header ${value}: it takes 1 to 8 digits and a unit, H, M, S, m, u or n` });
          }
          metadataNext(metadata);
        },
      });
    },
  });
  return call;
};
