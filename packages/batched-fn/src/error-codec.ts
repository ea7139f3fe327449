import {
  type BatchedFnErrorCode,
  BatchSizeMismatchError,
  BatchTimeoutError,
  ClosedError,
  InvalidOutputError,
  InvalidPadError,
  ItemTooLargeError,
  QueueFullError,
  TimeoutError,
  UnavailableError,
  WorkerExitedError,
} from './errors.js';

/**
 * The one way errors cross a boundary (a worker thread, a Redis stream).
 * Structured clone keeps only an Error's message and stack, so the codec
 * flattens an error to plain data and rebuilds it as the same class, with
 * every primitive field (`code`, `timeout`, `predicted`, `capacity`,
 * `exitCode`, `workerId`...) and its `cause`.
 */
export interface SerializedError {
  name: string;
  message: string;
  stack: string | undefined;
  /** Own enumerable fields whose values are primitives (`code` among them). */
  fields: Record<string, string | number | boolean | null | undefined>;
  cause?: SerializedError;
}

type Primitive = string | number | boolean | null | undefined;

/** The batcher's own classes, by code: what arrives as `ERR_TIMEOUT` leaves as a TimeoutError. */
const BY_CODE: Record<BatchedFnErrorCode, { prototype: Error }> = {
  ERR_QUEUE_FULL: QueueFullError,
  ERR_CLOSED: ClosedError,
  ERR_TIMEOUT: TimeoutError,
  ERR_BATCH_SIZE_MISMATCH: BatchSizeMismatchError,
  ERR_ITEM_TOO_LARGE: ItemTooLargeError,
  ERR_WORKER_EXITED: WorkerExitedError,
  ERR_UNAVAILABLE: UnavailableError,
  ERR_BATCH_TIMEOUT: BatchTimeoutError,
  ERR_INVALID_PAD: InvalidPadError,
  ERR_INVALID_OUTPUT: InvalidOutputError,
};

/** JavaScript's own error classes, by name. */
const BY_NAME: Record<string, { prototype: Error }> = {
  TypeError,
  RangeError,
  SyntaxError,
  ReferenceError,
  EvalError,
  URIError,
};

const MAX_CAUSE_DEPTH = 3;

/** String(value) that cannot throw (a null-prototype object has no toString; a getter may throw). */
function safeString(value: unknown): string {
  try {
    return String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

function read(object: object, key: string): unknown {
  try {
    return (object as Record<string, unknown>)[key];
  } catch {
    return undefined;
  }
}

const isPrimitive = (value: unknown): value is Primitive =>
  value === null || value === undefined || ['string', 'number', 'boolean'].includes(typeof value);

/**
 * Flattens anything thrown. It never throws itself: a value whose getters
 * throw, with no prototype, or whose `name` is not a string still becomes
 * an error the other side can read.
 */
export function serializeError(error: unknown, depth = 0): SerializedError {
  if (!(error instanceof Error)) {
    return { name: 'Error', message: `Non-error thrown: ${safeString(error)}`, stack: undefined, fields: {} };
  }
  const fields: SerializedError['fields'] = {};
  let keys: string[] = [];
  try {
    keys = Object.keys(error);
  } catch {
    // a Proxy may refuse; the fields are a courtesy
  }
  for (const key of keys) {
    const value = read(error, key);
    if (key !== 'cause' && isPrimitive(value)) fields[key] = value;
  }
  const name = read(error, 'name');
  const message = read(error, 'message');
  const stack = read(error, 'stack');
  const cause = read(error, 'cause');
  return {
    name: typeof name === 'string' ? name : 'Error',
    message: typeof message === 'string' ? message : safeString(message),
    stack: typeof stack === 'string' ? stack : undefined,
    fields,
    ...(cause !== undefined && depth < MAX_CAUSE_DEPTH ? { cause: serializeError(cause, depth + 1) } : {}),
  };
}

const isSerialized = (value: unknown): value is SerializedError =>
  typeof value === 'object' &&
  value !== null &&
  typeof (value as SerializedError).name === 'string' &&
  typeof (value as SerializedError).message === 'string';

/** True when `value` has the shape `serializeError` produces (for checking what another process sent). */
export const isSerializedError = isSerialized;

/**
 * Rebuilds the error as its own class: the batcher's classes by `code`,
 * JavaScript's by `name`, anything else as an Error with that name. The
 * constructor is not called (its arguments are gone); the fields are set
 * back as they were. Whatever `value` is, the result is an Error.
 */
export function deserializeError(value: unknown, depth = 0): Error {
  if (!isSerialized(value)) return new Error('Malformed error from another thread or process');
  const fields = typeof value.fields === 'object' && value.fields !== null ? value.fields : {};
  const code = fields.code;
  const type =
    (typeof code === 'string' ? BY_CODE[code as BatchedFnErrorCode] : undefined) ?? BY_NAME[value.name] ?? Error;
  const error = Object.create(type.prototype) as Error;
  Object.defineProperty(error, 'message', { value: value.message, writable: true, configurable: true });
  for (const [key, field] of Object.entries(fields))
    if (isPrimitive(field)) (error as unknown as Record<string, unknown>)[key] = field;
  error.name = value.name;
  Object.defineProperty(error, 'stack', {
    value: typeof value.stack === 'string' ? value.stack : `${value.name}: ${value.message}`,
    writable: true,
    configurable: true,
  });
  if (value.cause !== undefined && depth < MAX_CAUSE_DEPTH) {
    Object.defineProperty(error, 'cause', {
      value: deserializeError(value.cause, depth + 1),
      writable: true,
      configurable: true,
    });
  }
  return error;
}
