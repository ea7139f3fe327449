import { BatchedFnError, ItemTooLargeError } from 'batched-fn';
import { PROTOCOL_STATUSES, ProtocolError, type ProtocolStatus, statusOfHttp } from './errors.js';

/**
 * How every error reaches a client, decided once for every transport: its protocol status, and
 * the message text. REST maps the status onto HTTP (rest/http-status.ts) and gRPC onto its codes
 * (grpc/status.ts), so both say the same thing.
 */
export interface Refusal {
  readonly status: ProtocolStatus;
  /** Seconds after which trying again may succeed (REST's Retry-After). */
  readonly retryAfter?: number;
  /** The HTTP status the error carried itself (a model's `status: 422`): REST answers it as it is. */
  readonly httpStatus?: number;
}

/** Client input echoed in an error message is cut, so a 1 MB model name is not sent back whole. */
export const clip = (text: string): string => (text.length > 100 ? `${text.slice(0, 100)}...` : text);

const isStatus = (value: unknown): value is ProtocolStatus => (PROTOCOL_STATUSES as readonly unknown[]).includes(value);

/** The protocol status of any error: ours, the batcher's, or one from a model or a remote worker. */
export function refusalFor(error: unknown): Refusal {
  if (error instanceof ProtocolError) {
    const status = error.protocolStatus;
    return error.retryAfter === undefined ? { status } : { status, retryAfter: error.retryAfter };
  }
  if (error instanceof BatchedFnError) {
    switch (error.code) {
      case 'ERR_QUEUE_FULL':
        return { status: 'resource-exhausted', retryAfter: 1 };
      case 'ERR_CLOSED':
      case 'ERR_UNAVAILABLE':
        return { status: 'unavailable', retryAfter: 1 };
      case 'ERR_TIMEOUT':
        return { status: 'deadline-exceeded' };
      case 'ERR_ITEM_TOO_LARGE':
        return { status: 'too-large' };
      default:
        return { status: 'internal' };
    }
  }
  // An error from elsewhere (a model, a remote worker's, rebuilt by the error codec) is the
  // client's only when it says so: a protocol status, or a 4xx by the HTTP convention.
  let fields: { protocolStatus?: unknown; status?: unknown; retryAfter?: unknown };
  try {
    const { protocolStatus, status, retryAfter } = (error ?? {}) as typeof fields;
    fields = { protocolStatus, status, retryAfter };
  } catch {
    return { status: 'internal' }; // a getter that throws: nothing it says can be trusted
  }
  const { protocolStatus, status, retryAfter } = fields;
  if (isStatus(protocolStatus)) {
    // A model's own "try again in N s" (a sequence model at its most sequences), whole seconds up to a minute.
    const seconds = typeof retryAfter === 'number' && Number.isInteger(retryAfter) && retryAfter > 0 ? retryAfter : 0;
    return seconds === 0 ? { status: protocolStatus } : { status: protocolStatus, retryAfter: Math.min(seconds, 60) };
  }
  if (typeof status === 'number' && Number.isInteger(status) && status >= 400 && status < 500)
    return { status: statusOfHttp(status), httpStatus: status };
  return { status: 'internal' };
}

/** The message a client reads: the batcher's code first, and "Model failed" before a failure of the model's. */
export function messageFor(error: unknown, refusal: Refusal = refusalFor(error)): string {
  // The limit by the name a user sets it with, not the library's (`maxBatchSize=64`).
  if (error instanceof ItemTooLargeError)
    return `${error.code}: Input has size ${error.size}, larger than the model's max batch size (--max-batch-size ${error.maxBatchSize})`;
  if (error instanceof BatchedFnError) return `${error.code}: ${error.message}`;
  if (refusal.status === 'internal') return `Model failed: ${describe(error)}`;
  return describe(error);
}

/** An error's text, whatever was thrown: a value without a prototype has no toString, and a getter may throw. */
function describe(error: unknown): string {
  try {
    const message = (error as Error)?.message;
    if (typeof message === 'string') return message;
    return String(error);
  } catch {
    return Object.prototype.toString.call(error);
  }
}
