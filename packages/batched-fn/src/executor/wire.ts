import { isSerializedError, type SerializedError } from '../error-codec.js';

/** What crosses between the pool and its worker threads. Errors go through the core's one codec. */

export type ToWorker =
  | { type: 'init' }
  | { type: 'run'; id: number; inputs: unknown[] }
  | { type: 'close' };

export type FromWorker =
  | { type: 'loaded'; interruptible: boolean }
  | { type: 'ready' }
  | { type: 'init-error'; error: SerializedError }
  /** `outputs` is null when the handler returned something other than an array. */
  | { type: 'result'; id: number; outputs: unknown[] | null; errors: [number, SerializedError][] }
  | { type: 'error'; id: number; error: SerializedError }
  /** The worker could not read a message sent to it (a 'messageerror'): whatever it was running is lost. */
  | { type: 'lost'; error: SerializedError }
  | { type: 'closed' };

export interface WorkerBootData {
  moduleUrl: string;
  data: unknown;
}

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
      return isSerializedError(m.error) ? (m as FromWorker) : undefined;
    case 'lost':
      return isSerializedError(m.error) ? (m as FromWorker) : undefined;
    case 'error':
      return isId(m.id) && isSerializedError(m.error) ? (m as FromWorker) : undefined;
    case 'result': {
      if (!isId(m.id) || !(Array.isArray(m.outputs) || m.outputs === null) || !Array.isArray(m.errors)) return undefined;
      const count = (m.outputs as unknown[] | null)?.length ?? 0;
      for (const entry of m.errors as unknown[]) {
        if (!Array.isArray(entry) || !isId(entry[0]) || entry[0] < 0 || entry[0] >= count || !isSerializedError(entry[1])) return undefined;
      }
      return m as FromWorker;
    }
    default:
      return undefined;
  }
}
