import { isSerializedError, type SerializedError } from '../error-codec.js';

/** What crosses between a batchedStream and its worker threads. Errors go through the core's one codec. */

export type ToStreamWorker =
  | { type: 'start'; req: number; ids: number[]; inputs: unknown[] }
  | { type: 'step'; req: number; ids: number[]; drop: number[] }
  /** Frees these sequences' states: their group ended, failed, or they were cancelled. */
  | { type: 'drop'; req: number; ids: number[] }
  | { type: 'close' };

export type FromStreamWorker =
  /** Sent once the module is imported, before its context is built. */
  | { type: 'loaded'; interruptible: boolean }
  /**
   * `outputs` is null when `step` returned the wrong count (or for `start` and `drop`); slot i of
   * `errors` replaces output i. `held` is how many states the thread holds after answering.
   */
  | { type: 'done'; req: number; outputs: unknown[] | null; errors: [number, SerializedError][]; held: number }
  | { type: 'failed'; req: number; error: SerializedError; held: number };

const isCount = (value: unknown): value is number => typeof value === 'number' && Number.isInteger(value) && value >= 0;

/**
 * Checks a message from a stream worker thread. User code there can post anything on the same
 * port (null, or an imitation of this protocol): what is not exactly one of ours is refused, so it
 * can neither settle a step nor throw.
 */
export function parseFromStreamWorker(message: unknown): FromStreamWorker | undefined {
  if (typeof message !== 'object' || message === null) return undefined;
  const m = message as Record<string, unknown>;
  switch (m.type) {
    case 'loaded':
      return typeof m.interruptible === 'boolean' ? (m as FromStreamWorker) : undefined;
    case 'failed':
      return isCount(m.req) && isCount(m.held) && isSerializedError(m.error) ? (m as FromStreamWorker) : undefined;
    case 'done': {
      if (!isCount(m.req) || !isCount(m.held) || !(Array.isArray(m.outputs) || m.outputs === null) || !Array.isArray(m.errors)) return undefined;
      const count = (m.outputs as unknown[] | null)?.length ?? 0;
      for (const entry of m.errors as unknown[]) {
        if (!Array.isArray(entry) || !isCount(entry[0]) || entry[0] >= count || !isSerializedError(entry[1])) return undefined;
      }
      return m as FromStreamWorker;
    }
    default:
      return undefined;
  }
}
