import { isSerializedError, type SerializedError } from '../error-codec.js';
import { DONE, HAS_VALUE } from '../stream/step-output.js';

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
  /** batchedFn with a `codec`: one batch, as its `encodeInputs` packed it. */
  | { type: 'run-packed'; id: number; packed: unknown }
  /** batchedStream: the prefill of sequences joining now; their states are kept under `ids`. */
  | { type: 'start'; id: number; ids: number[]; inputs: unknown[] }
  /**
   * batchedStream: a group's run. The thread steps its started sequences on its own, one step
   * after another while it has credit (through step `until`, then as `credit` notices allow),
   * answering with a `stepped` message per step; the run is answered once `stop` ends it. With
   * `joins`, a step in which a stream ended is followed by a pause until a notice says the main
   * thread has seen it, so that sequences waiting to join take the place at that boundary.
   */
  | { type: 'steps'; id: number; until: number; joins: boolean }
  /** batchedStream: frees these states (their group ended, failed, or they were cancelled). */
  | { type: 'drop'; id: number; ids: number[] }
  /**
   * batchedStream: run `run` may step through step `until`; the main thread has handed out `seen`
   * steps; `joins` as the run's, as it is now (false while nobody waits to join: no pause).
   */
  | { type: 'credit'; run: number; until: number; seen: number; joins: boolean }
  /** batchedStream: run `run` ends; the states it still steps are freed, and the run is answered. */
  | { type: 'stop'; run: number }
  | { type: 'close' };

/** Notices: sent without an id, never answered. */
export type Notice = Extract<ToWorker, { type: 'credit' | 'stop' }>;

export type Request = Exclude<ToWorker, { type: 'init' } | { type: 'close' } | Notice>;

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
  /** A `run-packed` batch answered, as the codec's `encodeOutputs` packed its outputs. */
  | { type: 'packed-result'; id: number; packed: unknown }
  /**
   * One step of run `id`, packed: it stepped the states `ids`, in that order; slot i's value is
   * `values[i]`, and `flags[i]` says whether it has one and whether its stream is done (HAS_VALUE,
   * DONE); slot i of `errors` ends that stream instead. `values` and `flags` are null when the step
   * returned something other than one output per state; then `received` is how many it returned
   * when that was an array. `ms` is how long the step took there.
   */
  | {
      type: 'stepped';
      id: number;
      ids: number[];
      values: unknown[] | null;
      flags: Uint8Array | null;
      errors: [number, SerializedError][];
      held: number;
      ms: number;
      received?: number;
    }
  | { type: 'error'; id: number; error: SerializedError; held?: number }
  /** The worker could not read a message sent to it (a 'messageerror'): whatever it was running is lost. */
  | { type: 'lost'; error: SerializedError }
  | { type: 'closed' };

export type Answer = Extract<FromWorker, { type: 'result' | 'packed-result' }>;

export type Stepped = Extract<FromWorker, { type: 'stepped' }>;

export interface WorkerBootData {
  moduleUrl: string;
  data: unknown;
  kind: ModuleKind;
  /** The worker's end of its `connectWorker` channel, when the pool has one. */
  port?: import('node:worker_threads').MessagePort;
}

const isCount = (value: unknown): value is number => typeof value === 'number' && Number.isInteger(value) && value >= 0;
const isOptionalCount = (value: unknown): boolean => value === undefined || isCount(value);
const FLAG_BITS = HAS_VALUE | DONE;

/** Every entry is `[slot, serialized error]` with a slot below `count`. */
function errorsOk(errors: unknown, count: number): boolean {
  if (!Array.isArray(errors)) return false;
  for (const entry of errors as unknown[]) {
    if (!Array.isArray(entry) || !isCount(entry[0]) || entry[0] >= count || !isSerializedError(entry[1])) return false;
  }
  return true;
}

/** Every entry a count (sequence ids are integers from 0). */
function idsOk(ids: unknown): ids is number[] {
  if (!Array.isArray(ids)) return false;
  for (const id of ids as unknown[]) if (!isCount(id)) return false;
  return true;
}

/** A packed step: ids, values and one flag byte per slot, of one length, flags with no unknown bit. */
function steppedOk(m: Record<string, unknown>): boolean {
  const ms = m.ms;
  if (!isCount(m.id) || !isCount(m.held) || !idsOk(m.ids) || typeof ms !== 'number' || !(ms >= 0 && ms < Infinity))
    return false;
  if (m.values === null) return m.flags === null && isOptionalCount(m.received) && errorsOk(m.errors, 0);
  const flags = m.flags;
  if (!Array.isArray(m.values) || !(flags instanceof Uint8Array) || flags.length !== m.values.length) return false;
  if (m.ids.length !== flags.length) return false;
  for (let i = 0; i < flags.length; i++) if (((flags[i] as number) & ~FLAG_BITS) !== 0) return false;
  return errorsOk(m.errors, flags.length);
}

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
      return isCount(m.id) && isOptionalCount(m.held) && isSerializedError(m.error) ? (m as FromWorker) : undefined;
    case 'result': {
      if (!isCount(m.id) || !isOptionalCount(m.held) || !(Array.isArray(m.outputs) || m.outputs === null))
        return undefined;
      return errorsOk(m.errors, (m.outputs as unknown[] | null)?.length ?? 0) ? (m as FromWorker) : undefined;
    }
    case 'packed-result':
      return isCount(m.id) && 'packed' in m ? (m as FromWorker) : undefined;
    case 'stepped':
      return steppedOk(m) ? (m as FromWorker) : undefined;
    default:
      return undefined;
  }
}
