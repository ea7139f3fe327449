import { ProtocolError, type ProtocolStatus } from '../protocol/errors.js';
import { messageFor, refusalFor } from '../protocol/status.js';

/**
 * OpenAI's error body: `{ error: { message, type, param, code } }`. The `openai` client reads it
 * (`APIError.error`, `.type`, `.param`, `.code`) and picks its error class from the HTTP status
 * alone (400 BadRequestError, 404 NotFoundError, 429 RateLimitError, 5xx InternalServerError).
 */
export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** A refused request field: the protocol's invalid-argument (or the status given), naming the field as `param`. */
export class OpenAIParamError extends ProtocolError {
  override name = 'OpenAIParamError';
  readonly param: string;
  readonly code: string | null;

  constructor(param: string, message: string, options: { status?: ProtocolStatus; code?: string } = {}) {
    super(options.status ?? 'invalid-argument', message);
    this.param = param;
    this.code = options.code ?? null;
  }
}

/**
 * Each protocol status as OpenAI's API answers it. A full queue is a 429 (OpenAI's "slow down"),
 * which the client retries after Retry-After; a model not ready or a draining server is a 503.
 * OpenAI's own `type`s are `invalid_request_error` for the client's mistakes and `server_error`
 * for its own; a cancelled request is never answered (the client is gone) but is logged as 499.
 */
const ANSWERS: Readonly<Record<ProtocolStatus, { status: number; type: string; code: string | null; param?: string }>> =
  {
    'invalid-argument': { status: 400, type: 'invalid_request_error', code: null },
    'permission-denied': { status: 403, type: 'invalid_request_error', code: null },
    // What a request names is its model: OpenAI's `param` says so.
    'not-found': { status: 404, type: 'invalid_request_error', code: 'model_not_found', param: 'model' },
    conflict: { status: 409, type: 'invalid_request_error', code: null },
    'too-large': { status: 413, type: 'invalid_request_error', code: null },
    'unsupported-media-type': { status: 415, type: 'invalid_request_error', code: null },
    'failed-precondition': { status: 400, type: 'invalid_request_error', code: null },
    cancelled: { status: 499, type: 'invalid_request_error', code: null },
    internal: { status: 500, type: 'server_error', code: null },
    unavailable: { status: 503, type: 'server_error', code: 'unavailable' },
    'resource-exhausted': { status: 429, type: 'rate_limit_error', code: 'rate_limit_exceeded' },
    'deadline-exceeded': { status: 504, type: 'server_error', code: 'timeout' },
  };

/** fastify's own refusals (a body over its limit, a malformed URL): their 4xx, or undefined. */
function fastifyStatus(error: unknown): number | undefined {
  if (error instanceof ProtocolError) return undefined;
  const { code, statusCode } = (error ?? {}) as { code?: unknown; statusCode?: unknown };
  if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') return 413;
  return typeof statusCode === 'number' && Number.isInteger(statusCode) && statusCode >= 400 && statusCode < 500
    ? statusCode
    : undefined;
}

/** How any error reaches an OpenAI client: its HTTP status, headers (Retry-After) and body. */
export function openAIAnswerFor(error: unknown): {
  status: number;
  headers: Record<string, string>;
  body: OpenAIErrorBody;
} {
  const fastify = fastifyStatus(error);
  if (fastify !== undefined) {
    const message =
      fastify === 413 ? `Request body is larger than the server's limit` : String((error as Error).message);
    return {
      status: fastify,
      headers: {},
      body: { error: { message, type: 'invalid_request_error', param: null, code: null } },
    };
  }
  const refusal = refusalFor(error);
  const answer = ANSWERS[refusal.status];
  const headers: Record<string, string> =
    refusal.retryAfter === undefined ? {} : { 'retry-after': String(refusal.retryAfter) };
  const param = error instanceof OpenAIParamError ? error.param : (answer.param ?? null);
  const code = error instanceof OpenAIParamError && error.code !== null ? error.code : answer.code;
  // A model's own 4xx (`status: 422`) keeps its status, as on the KServe routes.
  const status = refusal.httpStatus ?? answer.status;
  return {
    status,
    headers,
    body: { error: { message: messageFor(error, refusal), type: answer.type, param, code } },
  };
}
