import type { EventEmitter } from 'node:events';
import {
  constants,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
  type ServerHttp2Stream,
  type ServerStreamResponseOptions,
} from 'node:http2';
import { MAX_TIMER_MS } from 'batched-fn';
import { type Server, type ServiceDefinition, status as GrpcStatus } from '@grpc/grpc-js';
import { ProtocolError } from '../protocol/errors.js';
import { malformed, messageShape, scanMessage, scanModelInferRequest, type WireLimits } from './wire-scan.js';
import { parseModelInferRequest } from './infer-request-wire.js';

/**
 * What stands between a gRPC connection and the handlers: the limits of one HTTP/2 stream,
 * checked before grpc-js and protobufjs spend memory on it.
 */

/** A request the guard refused while deserializing: the handler answers with its error instead of running. */
export class RefusedRequest {
  constructor(readonly error: ProtocolError) {}
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
    // ModelStreamInfer's messages are ModelInferRequests, each checked as ModelInfer's is.
    const type = name === 'ModelStreamInfer' ? 'ModelInferRequest' : `${name}Request`;
    // Any other request is followed as far as its descriptor (proto-loader's) declares its messages.
    const shape = messageShape((method as { requestType?: { type?: unknown } }).requestType?.type);
    const scan =
      type === 'ModelInferRequest'
        ? (bytes: Buffer) => scanModelInferRequest(bytes, limits)
        : (bytes: Buffer) => scanMessage(bytes, type, limits, shape);
    const deserialize = type === 'ModelInferRequest' ? parseModelInferRequest : method.requestDeserialize;
    guarded[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer): unknown => {
        try {
          scan(bytes);
          return deserialize(bytes);
        } catch (error) {
          // protobufjs's own errors (a map entry without a value, say) are the client's too.
          return new RefusedRequest(
            error instanceof ProtocolError ? error : malformed(type, (error as Error)?.message ?? String(error)),
          );
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

/** Methods whose client sends a stream of messages: the receive timeout applies to each message, not to the whole call. */
const CLIENT_STREAMING = new Set(['/inference.GRPCInferenceService/ModelStreamInfer']);

export interface StreamLimits {
  /** --grpc-receive-timeout, in ms. */
  receiveTimeoutMs: number;
  /** The largest message (--body-limit), named in grpc-js's refusal of a larger one. */
  maxMessageBytes: number;
}

/**
 * Puts our checks on every HTTP/2 stream, in front of grpc-js's own `stream` listener (which sees
 * only the streams these checks let through):
 *
 * - grpc-timeout is fixed before grpc-js reads it. grpc-js 1.14 (server-interceptors.js,
 *   BaseServerInterceptingCall.handleTimeoutHeader) computes the deadline as
 *   `(value * unit) | 0`: a timeout past 2^31 ms (24.8 days; `2592000S` is 30 days) wraps to
 *   a negative or small number, and the call fails DEADLINE_EXCEEDED within milliseconds. Its
 *   regular expression is not anchored either (`123456789m` reads as 23456789 ms), and a value
 *   it cannot read is answered INTERNAL, where the client is at fault. grpc-js arms that timer
 *   in the call's constructor, before any interceptor runs, and keeps the raw header to
 *   itself, so the only place to act is here: a timeout past the longest timer is clamped to
 *   it (the call runs), an invalid one is answered INVALID_ARGUMENT here, and grpc-js never
 *   sees that stream. (An interceptor answered it before: every call then paid for grpc-js's
 *   intercepting layer, a few µs each, for a header almost no call gets wrong.)
 *
 * - A stream whose request has not fully arrived (its message and the end of the client's
 *   side) `receiveTimeoutMs` after its headers is answered DEADLINE_EXCEEDED and closed with
 *   RST_STREAM. grpc-js has no such timeout, and even its own answers (UNIMPLEMENTED, a
 *   RESOURCE_EXHAUSTED for a message too large) leave the stream half-closed while the client
 *   keeps its side open: Node frees a stream only when both sides have ended. Such streams,
 *   each with its buffers, were held until the client hung up (50,000 of them: +313 MB RSS).
 *   A ModelStreamInfer stream may rightly stay open, idle, between requests: there each
 *   message must arrive whole within `receiveTimeoutMs` of its first byte.
 *
 * - grpc-js refuses a message over the limit RESOURCE_EXHAUSTED "Received message larger than
 *   max (X vs Y)", from deep inside the call where no interceptor sees it: its answer is
 *   reworded on its way out to name the limit and the flag that sets it. A status message
 *   longer than MAX_STATUS_MESSAGE is cut on its way out too.
 *
 * The HTTP/2 servers are grpc-js's private `http2Servers`; if a later version renames it,
 * this returns false and the server runs without these checks (grpc-hardening.test.ts then
 * fails, which is the signal to look again).
 */
export function hookStreams(server: Server, limits: StreamLimits): boolean {
  const servers = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(servers instanceof Map) || servers.size === 0) return false;
  const { respond, sendTrailers } = answerGuards(limits.maxMessageBytes);
  const arrivals = new ArrivalWatch(limits.receiveTimeoutMs);
  /** Whether grpc-js gets the stream: false when it was answered here. */
  const onStream = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders): boolean => {
    if (!fixTimeoutHeader(stream, headers)) return false;
    if (CLIENT_STREAMING.has(String(headers[':path']))) cutIfMessageStalls(stream, limits.receiveTimeoutMs);
    else arrivals.add(stream);
    stream.respond = respond;
    stream.sendTrailers = sendTrailers;
    return true;
  };
  for (const http2Server of servers.keys() as IterableIterator<EventEmitter>) {
    const theirs = http2Server.listeners('stream') as ((...args: unknown[]) => void)[];
    http2Server.removeAllListeners('stream');
    http2Server.on(
      'stream',
      function (this: unknown, stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: unknown, raw: unknown) {
        if (!onStream(stream, headers)) return;
        for (const listener of theirs) listener.call(this, stream, headers, flags, raw);
      },
    );
  }
  return true;
}

/** grpc-js's texts for a message over max_receive_message_length (stream-decoder.js, server-interceptors.js). */
const TOO_LARGE = /^Received message larger than max \((\d+) vs\.? (\d+)\)$/;
const INFLATES_TOO_LARGE = /^Received message that decompresses to a size larger than (\d+)$/;
/**
 * Longest grpc-message sent, percent-encoded. A client's own text can come back in an answer
 * (grpc-health-check's NOT_FOUND names the service asked for, whatever its length): past about
 * 64 KB of trailers, Node's HTTP/2 client refuses them and its channel hung (a Check of a 100 KB
 * name stalled every later call on the connection), and gRPC's C core (tritonclient's) takes 8 KB.
 */
export const MAX_STATUS_MESSAGE = 4096;

/** A percent-encoded grpc-message cut to MAX_STATUS_MESSAGE, never inside an escape or a UTF-8 character. */
function clipped(message: string): string {
  if (message.length <= MAX_STATUS_MESSAGE) return message;
  let cut = message.slice(0, MAX_STATUS_MESSAGE - 3);
  const lastEscape = cut.lastIndexOf('%');
  if (lastEscape >= cut.length - 2) cut = cut.slice(0, lastEscape);
  // Trailing bytes of a multi-byte character (escapes %80 and up) may have lost their end: drop them all.
  cut = cut.replace(/(%[89A-Fa-f][0-9A-Fa-f])+$/, '');
  return `${cut}...`;
}

/**
 * `respond` and `sendTrailers` for a stream, which reword grpc-js's RESOURCE_EXHAUSTED for a
 * message over the limit (trailers-only, or trailers after answers on a stream), cut a
 * grpc-message too long for clients, and pass everything else through. Built once per server:
 * a stream gets the two functions, not closures.
 */
function answerGuards(limit: number) {
  const guarded = (headers: OutgoingHttpHeaders | undefined): OutgoingHttpHeaders | undefined => {
    const message = headers?.['grpc-message'];
    if (headers === undefined || message === undefined) return headers;
    if (String(headers['grpc-status']) === String(GrpcStatus.RESOURCE_EXHAUSTED)) {
      const details = decodeURI(String(message));
      const large = TOO_LARGE.exec(details);
      const inflates = large === null ? INFLATES_TOO_LARGE.exec(details) : null;
      if (large !== null)
        return {
          ...headers,
          'grpc-message': encodeURI(
            `Request message of ${large[1]} bytes is larger than the server's limit of ${limit} bytes (--body-limit)`,
          ),
        };
      if (inflates !== null)
        return {
          ...headers,
          'grpc-message': encodeURI(
            `Request message decompresses to more than the server's limit of ${limit} bytes (--body-limit)`,
          ),
        };
    }
    return String(message).length > MAX_STATUS_MESSAGE
      ? { ...headers, 'grpc-message': clipped(String(message)) }
      : headers;
  };
  return {
    respond(this: ServerHttp2Stream, headers?: OutgoingHttpHeaders, options?: ServerStreamResponseOptions): void {
      (Object.getPrototypeOf(this) as ServerHttp2Stream).respond.call(this, guarded(headers), options);
    },
    sendTrailers(this: ServerHttp2Stream, headers: OutgoingHttpHeaders): void {
      (Object.getPrototypeOf(this) as ServerHttp2Stream).sendTrailers.call(
        this,
        guarded(headers) as OutgoingHttpHeaders,
      );
    },
  };
}

/** Clamps a grpc-timeout past the longest timer; answers an invalid one INVALID_ARGUMENT (false: the stream is done). */
function fixTimeoutHeader(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): boolean {
  const raw = headers['grpc-timeout'];
  if (raw === undefined) return true;
  const match = typeof raw === 'string' ? TIMEOUT.exec(raw) : null;
  if (match === null) {
    const value = JSON.stringify(String(raw).slice(0, 40));
    answerAndClose(
      stream,
      GrpcStatus.INVALID_ARGUMENT,
      `Invalid grpc-timeout header ${value}: it takes 1 to 8 digits and a unit, H, M, S, m, u or n`,
    );
    return false;
  }
  if (Number(match[1]) * (UNIT_MS[match[2] as string] as number) > MAX_TIMER_MS)
    headers['grpc-timeout'] = CLAMPED_TIMEOUT;
  return true;
}

/**
 * A trailers-only answer, then the stream closed with NO_ERROR ("stop sending, the response is
 * complete", RFC 9113, 8.1): for a stream no handler took.
 */
function answerAndClose(stream: ServerHttp2Stream, code: GrpcStatus, details: string): void {
  stream.on('error', () => {});
  stream.respond(
    {
      ':status': 200,
      'content-type': 'application/grpc+proto',
      'grpc-status': String(code),
      'grpc-message': encodeURI(details),
    },
    { endStream: true },
  );
  // Closed once the answer is on its way, not in the same turn: on Node 22 a stream closed within
  // its own 'stream' event, before the client's request was read, never sent the answer.
  setImmediate(() => {
    if (!stream.closed && !stream.destroyed) stream.close(constants.NGHTTP2_NO_ERROR);
  });
}

/**
 * A client-streaming call's version of ArrivalWatch: the stream may idle between messages,
 * but a message, once its first byte has come, must arrive whole within `receiveTimeoutMs`.
 * Only the time the server is reading counts: while the stream is paused (the server holds as
 * many requests of it as it takes, or its client does not read its answers), the rest of a
 * message waits in flow control through no fault of the client's. The gRPC framing (a flag
 * byte, a 4-byte length, the message) is followed on the bytes as they pass; nothing is copied.
 */
function cutIfMessageStalls(stream: ServerHttp2Stream, receiveTimeoutMs: number): void {
  let prefix = 0; // bytes of the current message's 5-byte prefix seen
  let length = 0; // its length field, as read so far
  let left = 0; // bytes of its body still to come
  let timer: NodeJS.Timeout | undefined;
  /** Of the current message's time, what is left (ms), and since when it runs. */
  let budget = receiveTimeoutMs;
  let since = 0;
  const stop = (): void => {
    clearTimeout(timer);
    timer = undefined;
  };
  const cut = (): void => {
    timer = undefined;
    if (stream.closed || stream.destroyed) return;
    if (!stream.headersSent) {
      const details = `A message on this stream did not arrive within ${receiveTimeoutMs} ms of its first byte (--grpc-receive-timeout)`;
      stream.respond(
        {
          ':status': 200,
          'content-type': 'application/grpc+proto',
          'grpc-status': String(GrpcStatus.DEADLINE_EXCEEDED),
          'grpc-message': encodeURI(details),
        },
        { endStream: true },
      );
      stream.close(constants.NGHTTP2_NO_ERROR);
    } else {
      // grpc-js has answered on this stream and owns its trailers: the stream is reset, the call cancelled.
      stream.close(constants.NGHTTP2_CANCEL);
    }
  };
  const run = (): void => {
    since = performance.now();
    timer = setTimeout(cut, budget);
    timer.unref();
  };
  // A passive listener, added before grpc-js's own (which pauses the stream and resumes it as it reads): every chunk passes both.
  stream.on('data', (chunk: Buffer) => {
    let started = false;
    for (let i = 0; i < chunk.length; ) {
      if (prefix < 5) {
        if (prefix === 0) started = true;
        if (prefix > 0) length = length * 256 + (chunk[i] as number);
        prefix++;
        i++;
        if (prefix === 5) left = length;
      } else {
        const take = Math.min(left, chunk.length - i);
        left -= take;
        i += take;
      }
      if (prefix === 5 && left === 0) {
        prefix = 0;
        length = 0;
      }
    }
    if (prefix === 0) stop();
    else if (started) {
      // A message began in this chunk and is not whole yet: its own time starts now.
      stop();
      budget = receiveTimeoutMs;
      if (!stream.isPaused()) run();
    }
  });
  stream.on('pause', () => {
    if (timer === undefined) return;
    stop();
    budget = Math.max(0, budget - (performance.now() - since));
  });
  stream.on('resume', () => {
    if (timer === undefined && prefix !== 0) run();
  });
  stream.once('close', stop);
}

/**
 * The unary streams whose request may not have arrived yet: each is cut `receiveTimeoutMs` after
 * its headers unless its request has fully arrived by then (or it has closed). One timer for all of
 * them, not one a stream: every stream has the same allowance, so they fall due in the order they
 * came, and the timer waits for the oldest. A stream leaves when it closes (one shared listener, no
 * closure a stream); one whose request arrived is simply passed over when it falls due.
 */
class ArrivalWatch {
  readonly #due = new Map<ServerHttp2Stream, number>();
  #timer: NodeJS.Timeout | undefined;
  readonly #forget: (this: ServerHttp2Stream) => void;

  constructor(readonly receiveTimeoutMs: number) {
    const due = this.#due;
    this.#forget = function (this: ServerHttp2Stream) {
      due.delete(this);
    };
  }

  add(stream: ServerHttp2Stream): void {
    this.#due.set(stream, performance.now() + this.receiveTimeoutMs);
    stream.on('close', this.#forget);
    if (this.#timer === undefined) this.#arm(this.receiveTimeoutMs);
  }

  #arm(ms: number): void {
    this.#timer = setTimeout(() => this.#sweep(), Math.max(0, Math.ceil(ms)));
    this.#timer.unref();
  }

  #sweep(): void {
    this.#timer = undefined;
    const now = performance.now();
    for (const [stream, due] of this.#due) {
      if (due > now) {
        this.#arm(due - now);
        return;
      }
      this.#due.delete(stream);
      // Its request has arrived (grpc-js read it to its end): the call is running, not stalled.
      if (!stream.readableEnded) cut(stream, this.receiveTimeoutMs);
    }
  }
}

function cut(stream: ServerHttp2Stream, receiveTimeoutMs: number): void {
  if (stream.closed || stream.destroyed) return;
  // No handler has run (it waits for the whole request), so the answer is still ours to give,
  // unless grpc-js already gave one; then only the stream is left to close. Either way grpc-js
  // sees the stream closed, cancels the call, and answers nothing more.
  if (!stream.headersSent)
    answerAndClose(
      stream,
      GrpcStatus.DEADLINE_EXCEEDED,
      `The request did not arrive within ${receiveTimeoutMs} ms of its headers (--grpc-receive-timeout)`,
    );
  else stream.close(constants.NGHTTP2_NO_ERROR);
}
