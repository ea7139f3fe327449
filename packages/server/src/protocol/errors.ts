/**
 * Why the server refuses a request, in no transport's terms. REST answers each status with an
 * HTTP status (rest/http-status.ts), gRPC with a status code (grpc/status.ts); the decision for
 * every error, ours, the batcher's and a model's, is made once (status.ts).
 */
export type ProtocolStatus =
  /** The request is wrong (REST 400, gRPC INVALID_ARGUMENT). */
  | 'invalid-argument'
  /** The caller may not do this (403, PERMISSION_DENIED). */
  | 'permission-denied'
  /** What the request names does not exist (404, NOT_FOUND). */
  | 'not-found'
  /** Another request won (a load cancelled by an unload: 409, FAILED_PRECONDITION). */
  | 'conflict'
  /** More than the server takes (413, INVALID_ARGUMENT). */
  | 'too-large'
  /** A body of a type the server does not read (415, INVALID_ARGUMENT). */
  | 'unsupported-media-type'
  /** The server is not set up to do it (tracing off: 400, FAILED_PRECONDITION). */
  | 'failed-precondition'
  /** The client went away (499, CANCELLED). */
  | 'cancelled'
  /** The server or its model failed (500, INTERNAL). */
  | 'internal'
  /** Not now: the model is not ready, the server is draining (503, UNAVAILABLE). */
  | 'unavailable'
  /** The queue is full (503, RESOURCE_EXHAUSTED). */
  | 'resource-exhausted'
  /** The deadline passed, or would (504, DEADLINE_EXCEEDED). */
  | 'deadline-exceeded';

export const PROTOCOL_STATUSES: readonly ProtocolStatus[] = [
  'invalid-argument',
  'permission-denied',
  'not-found',
  'conflict',
  'too-large',
  'unsupported-media-type',
  'failed-precondition',
  'cancelled',
  'internal',
  'unavailable',
  'resource-exhausted',
  'deadline-exceeded',
];

/**
 * A request the server refuses: the one error every transport, and the Redis worker, throws. Its
 * `protocolStatus` says why; an error that also has an HTTP `status` has it for its own API's sake
 * (SharedMemoryError, public before this type was), and it agrees with `protocolStatus`.
 */
export class ProtocolError extends Error {
  override name = 'ProtocolError';
  readonly protocolStatus: ProtocolStatus;
  /** Seconds after which trying again may succeed (REST sends it as Retry-After). */
  readonly retryAfter: number | undefined;

  constructor(status: ProtocolStatus, message: string, options: { retryAfter?: number } = {}) {
    super(message);
    this.protocolStatus = status;
    this.retryAfter = options.retryAfter;
  }
}

/**
 * The protocol status of an HTTP status, as errors from elsewhere give one: a JS model's Error with
 * `status: 400` (README), an older remote worker's, SharedMemoryError's. Any 4xx is the client's.
 */
export function statusOfHttp(status: number): ProtocolStatus {
  switch (status) {
    case 400:
    case 414:
      return 'invalid-argument';
    case 403:
      return 'permission-denied';
    case 404:
      return 'not-found';
    case 409:
      return 'conflict';
    case 413:
      return 'too-large';
    case 415:
      return 'unsupported-media-type';
    case 499:
      return 'cancelled';
    default:
      return status >= 400 && status < 500 ? 'failed-precondition' : 'internal';
  }
}

export const invalidArgument = (message: string): ProtocolError => new ProtocolError('invalid-argument', message);
