import { isSerializedError, type SerializedError } from '../error-codec.js';

/**
 * What crosses between the pool and its worker threads, for both kinds of
 * module: a batch `handler` (batchedFn) and a stream `step` whose states the
 * thread keeps by id (batchedStream). Errors go through the core's one codec.
 */

export type ModuleKind = 'batch' | 'stream';

export type ToWorker =
  | { type: 'init' }
  /** batchedFn: one batch for `handler`. */
  | { type: 'run'; id: number; inputs: unknown[] }
  /** batchedStream: the prefill of sequences joining now; their states are kept under `ids`. */
  | { type: 'start'; id: number; ids: number[]; inputs: unknown[] }
  /** batchedStream: one step of `ids`, after freeing the states of `drop`. */
  | { type: 'step'; id: number; ids: number[]; drop: number[] }
  /** batchedStream: frees these states (their group ended, failed, or they were cancelled). */
  | { type: 'drop'; id: number; ids: number[] }
  | { type: 'close' };

export type Request = Exclude<ToWorker, { type: 'init' } | { type: 'close' }>;

/** A request before the slot numbers it. */
export type RequestBody = Request extends infer R ? (R extends Request ? Omit<R, 'id'> : never) : never;

export type FromWorker =
  /** Sent once the module is imported, before its context is built. */
  | { type: 'loaded'; interruptible: boolean }
  | { type: 'ready' }
  | { type: 'init-error'; error: SerializedError }
  /**
   * A request answered. `outputs` is null when the handler or step returned something other than
   * one output per input (or for `start` and `drop`); slot i of `errors` replaces output i. A
   * stream thread adds `held`, how many states it keeps after answering.
   */
  | { type: 'result'; id: number; outputs: unknown[] | null; errors: [number, SerializedError][]; held?: number }
  | { type: 'error'; id: number; error: SerializedError; held?: number }
  /** The worker could not read a message sent to it (a 'messageerror'): whatever it was running is lost. */
  | { type: 'lost'; error: SerializedError }
  | { type: 'closed' };

export type Answer = Extract<FromWorker, { type: 'result' }>;

export interface WorkerBootData {
  moduleUrl: string;
  data: unknown;
  kind: ModuleKind;
}

const isCount = (value: unknown): value is number => typeof value === 'number' && Number.isInteger(value) && value >= 0;
const heldOk = (value: unknown): boolean => value === undefined || isCount(value);

/**
 * Checks a message from a worker thread. User code in the worker can post
 * anything on the same port (null, or an imitation of this protocol), so a
 * message that is not exactly one of ours is refused: the pool ignores it
 * and counts it, and it can neither settle a request nor throw.
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
    case 'lost':
      return isSerializedError(m.error) ? (m as FromWorker) : undefined;
    case 'error':
      return isCount(m.id) && heldOk(m.held) && isSerializedError(m.error) ? (m as FromWorker) : undefined;
    case 'result': {
      if (
        !isCount(m.id) ||
        !heldOk(m.held) ||
        !(Array.isArray(m.outputs) || m.outputs === null) ||
        !Array.isArray(m.errors)
      )
        return undefined;
      const count = (m.outputs as unknown[] | null)?.length ?? 0;
      for (const entry of m.errors as unknown[]) {
        if (!Array.isArray(entry) || !isCount(entry[0]) || entry[0] >= count || !isSerializedError(entry[1]))
          return undefined;
      }
      return m as FromWorker;
    }
    default:
      return undefined;
  }
}
