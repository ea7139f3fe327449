import type { FastifyError } from 'fastify';
import { ProtocolError, type ProtocolStatus } from '../protocol/errors.js';
import { clip, messageFor, refusalFor } from '../protocol/status.js';

/** Each protocol status as REST answers it (the gRPC codes are grpc/status.ts's). */
export const HTTP_STATUS: Readonly<Record<ProtocolStatus, number>> = {
  'invalid-argument': 400,
  'permission-denied': 403,
  'not-found': 404,
  conflict: 409,
  'too-large': 413,
  'unsupported-media-type': 415,
  'failed-precondition': 400,
  // nginx's "client closed request": never sent (the client is gone), but counted in /metrics.
  cancelled: 499,
  internal: 500,
  unavailable: 503,
  'resource-exhausted': 503,
  'deadline-exceeded': 504,
};

/**
 * A REST refusal that sends headers of its own beside the status (`Accept-Encoding` with a 415,
 * `Connection: close` after a body too large to read on): the protocol's error, with REST's extras.
 */
export class RestRefusal extends ProtocolError {
  readonly headers: Readonly<Record<string, string>>;

  constructor(status: ProtocolStatus, message: string, headers: Record<string, string>) {
    super(status, message);
    this.name = 'RestRefusal';
    this.headers = headers;
  }
}

/** `error` answered with `Connection: close` as well: the connection goes once the answer is out. */
export const closingWith = (error: ProtocolError): RestRefusal =>
  new RestRefusal(error.protocolStatus, error.message, {
    ...(error instanceof RestRefusal ? error.headers : {}),
    connection: 'close',
  });

/**
 * What the POST routes read: JSON, or the binary extension's JSON header plus raw tensors; a body
 * without a Content-Type is read the same way (tritonclient sends none). Any other type is a 415.
 */
export const BODY_TYPES = ['application/json', 'application/octet-stream'];

/** The 415 for a body of another type, naming what was sent. */
export const unsupportedType = (type: string | undefined): string =>
  `Content-Type must be ${BODY_TYPES.join(' or ')} (the binary tensor extension), or none, got ${clip(JSON.stringify(type ?? 'none'))}`;

/** fastify's own refusals (its body limit and media type checks, a bad URL...): a 4xx, or undefined. */
function fastifyStatus(error: unknown): number | undefined {
  if (error instanceof ProtocolError) return undefined;
  const { code, statusCode } = (error ?? {}) as Partial<FastifyError>;
  if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') return 413;
  if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return 415;
  return typeof statusCode === 'number' && Number.isInteger(statusCode) && statusCode >= 400 && statusCode < 500
    ? statusCode
    : undefined;
}

/** How an error reaches a REST client: its HTTP status, headers and message. */
export function httpAnswerFor(error: unknown): { status: number; headers: Record<string, string>; message: string } {
  const fastify = fastifyStatus(error);
  if (fastify !== undefined) {
    const code = (error as FastifyError).code;
    if (code === 'FST_ERR_CTP_BODY_TOO_LARGE')
      return { status: fastify, headers: {}, message: `Request body is larger than the server's limit` };
    if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
      return {
        status: fastify,
        headers: {},
        message: `Content-Type must be ${BODY_TYPES.join(' or ')} (the binary tensor extension), or none`,
      };
    return { status: fastify, headers: {}, message: (error as Error).message };
  }
  const refusal = refusalFor(error);
  const headers: Record<string, string> =
    refusal.retryAfter === undefined ? {} : { 'retry-after': String(refusal.retryAfter) };
  if (error instanceof RestRefusal) Object.assign(headers, error.headers);
  return { status: refusal.httpStatus ?? HTTP_STATUS[refusal.status], headers, message: messageFor(error, refusal) };
}

/** The HTTP status REST answers `error` with: what /metrics counts a request under, for both protocols. */
export const httpStatusFor = (error: unknown): number => httpAnswerFor(error).status;
