import { BatchedFnError } from 'batched-fn';
import type { FastifyError } from 'fastify';
import { HttpError } from './errors.js';

/**
 * How every error reaches a client, decided once for both protocols: the HTTP
 * status (and headers) REST answers with, and the message text. gRPC maps the
 * same decision onto its codes (grpc/status.ts), so both say the same thing.
 */

/**
 * What the POST routes read: JSON, or the binary extension's JSON header plus raw tensors; a body
 * without a Content-Type is read the same way (tritonclient sends none). Any other type is a 415.
 */
export const BODY_TYPES = ['application/json', 'application/octet-stream'];

/** The 415 for a body of another type, naming what was sent. */
export const unsupportedType = (type: string | undefined): string =>
  `Content-Type must be ${BODY_TYPES.join(' or ')} (the binary tensor extension), or none, got ${clip(JSON.stringify(type ?? 'none'))}`;

/** Client input echoed in an error message is cut, so a 1 MB model name is not sent back whole. */
export const clip = (text: string): string => (text.length > 100 ? `${text.slice(0, 100)}...` : text);

/** How each batcher error reaches an HTTP client. */
export function statusFor(error: unknown): { status: number; headers: Record<string, string> } {
  if (error instanceof HttpError) return { status: error.status, headers: error.headers };
  if (error instanceof BatchedFnError) {
    switch (error.code) {
      case 'ERR_QUEUE_FULL':
      case 'ERR_CLOSED':
      case 'ERR_UNAVAILABLE':
        return { status: 503, headers: { 'retry-after': '1' } };
      case 'ERR_TIMEOUT':
        return { status: 504, headers: {} };
      case 'ERR_ITEM_TOO_LARGE':
        return { status: 413, headers: {} };
      default:
        return { status: 500, headers: {} };
    }
  }
  const code = (error as FastifyError | undefined)?.code;
  if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') return { status: 413, headers: {} };
  if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return { status: 415, headers: {} };
  // A client error from elsewhere (fastify's statusCode; a model's or a remote worker's status): 4xx only.
  const status = (error as FastifyError | undefined)?.statusCode ?? (error as { status?: unknown } | undefined)?.status;
  if (typeof status === 'number' && Number.isInteger(status) && status >= 400 && status < 500) return { status, headers: {} };
  return { status: 500, headers: {} };
}

export function messageFor(error: unknown, status: number): string {
  if (status === 413 && (error as FastifyError).code === 'FST_ERR_CTP_BODY_TOO_LARGE') return `Request body is larger than the server's limit`;
  if (status === 415 && (error as FastifyError).code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return `Content-Type must be ${BODY_TYPES.join(' or ')} (the binary tensor extension), or none`;
  if (error instanceof BatchedFnError) return `${error.code}: ${error.message}`;
  if (status === 500) return `Model failed: ${(error as Error)?.message ?? String(error)}`;
  return (error as Error)?.message ?? String(error);
}

