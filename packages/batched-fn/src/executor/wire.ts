/**
 * What crosses between the pool and its worker threads. Errors are flattened
 * by hand because structured clone keeps only an Error's message and stack,
 * dropping `code` and other fields servers need to map errors to statuses.
 */
export interface WireError {
  name: string;
  message: string;
  stack: string | undefined;
  fields: Record<string, unknown>;
}

export type ToWorker =
  | { type: 'init' }
  | { type: 'run'; id: number; inputs: unknown[] }
  | { type: 'close' };

export type FromWorker =
  | { type: 'loaded'; interruptible: boolean }
  | { type: 'ready' }
  | { type: 'init-error'; error: WireError }
  /** `outputs` is null when the handler returned something other than an array. */
  | { type: 'result'; id: number; outputs: unknown[] | null; errors: [number, WireError][] }
  | { type: 'error'; id: number; error: WireError }
  /** The worker could not read a message sent to it (a 'messageerror'): whatever it was running is lost. */
  | { type: 'lost'; error: WireError }
  | { type: 'closed' };

export interface WorkerBootData {
  moduleUrl: string;
  data: unknown;
}

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

/**
 * Flattens anything thrown into plain strings and primitives. It never
 * throws itself: a thrown value whose getters throw, with no prototype, or
 * with a `name` that is not a string still reaches the callers as an error,
 * instead of crashing the worker that tried to report it.
 */
export function toWire(error: unknown): WireError {
  if (!(error instanceof Error)) {
    return { name: 'Error', message: `Non-error thrown: ${safeString(error)}`, stack: undefined, fields: {} };
  }
  const fields: Record<string, unknown> = {};
  let keys: string[] = [];
  try {
    keys = Object.keys(error);
  } catch {
    // a Proxy may refuse; the fields are a courtesy
  }
  for (const key of keys) {
    const value = read(error, key);
    if (value === null || ['string', 'number', 'boolean'].includes(typeof value)) fields[key] = value;
  }
  const name = read(error, 'name');
  const message = read(error, 'message');
  const stack = read(error, 'stack');
  return {
    name: typeof name === 'string' ? name : 'Error',
    message: typeof message === 'string' ? message : safeString(message),
    stack: typeof stack === 'string' ? stack : undefined,
    fields,
  };
}

const isWireError = (value: unknown): value is WireError =>
  typeof value === 'object' && value !== null && typeof (value as WireError).name === 'string' && typeof (value as WireError).message === 'string';

const isId = (value: unknown): value is number => typeof value === 'number' && Number.isInteger(value);

/**
 * Checks a message from a worker thread. User code in the worker can post
 * anything on the same port (null, or an imitation of this protocol), so a
 * message that is not exactly one of ours is refused: the pool ignores it
 * and counts it, and it can neither settle a batch nor throw.
 */
export function parseFromWorker(message: unknown): FromWorker | undefined {
  if (typeof message !== 'object' || message === null) return undefined;
  const m = message as Record<string, unknown>;
  switch (m.type) {
    case 'loaded':
      return typeof m.interruptible === 'boolean' ? (m as FromWorker) : undefined;
    case 'ready':
    case 'closed':
      return m as FromWorker;
    case 'init-error':
      return isWireError(m.error) ? (m as FromWorker) : undefined;
    case 'lost':
      return isWireError(m.error) ? (m as FromWorker) : undefined;
    case 'error':
      return isId(m.id) && isWireError(m.error) ? (m as FromWorker) : undefined;
    case 'result': {
      if (!isId(m.id) || !(Array.isArray(m.outputs) || m.outputs === null) || !Array.isArray(m.errors)) return undefined;
      const count = (m.outputs as unknown[] | null)?.length ?? 0;
      for (const entry of m.errors as unknown[]) {
        if (!Array.isArray(entry) || !isId(entry[0]) || entry[0] < 0 || entry[0] >= count || !isWireError(entry[1])) return undefined;
      }
      return m as FromWorker;
    }
    default:
      return undefined;
  }
}

export function fromWire(wire: WireError): Error {
  const error = new Error(wire.message);
  Object.assign(error, wire.fields);
  error.name = wire.name;
  if (wire.stack !== undefined) error.stack = wire.stack;
  return error;
}
