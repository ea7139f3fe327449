import { WorkerExitedError } from 'batched-fn';
import type { SequenceMark } from '../model/tensor.js';
import { maxOf, SETTING_DEFAULTS } from '../settings/settings.js';
import { SequenceError, sequenceErrorCode } from './sequence-errors.js';

/** A model's `sequence_batching` (config.json, or config.pbtxt's), checked. */
export interface SequenceBatching {
  /** Triton's `max_sequence_idle_microseconds`, in ms: a sequence with nothing queued this long is freed. */
  idleMs: number;
  /** Most live sequences; a start beyond them is a 503 with Retry-After. */
  maxSequences: number;
}

/** Triton's default idle limit (its field left out or 0): one second. */
const DEFAULT_IDLE_US = 1_000_000;
/** A string id is a key of the table and crosses to a worker: bounded. */
const MAX_ID_LENGTH = 256;
const UINT64_MAX = 2n ** 64n - 1n;
const STRATEGIES = ['oldest', 'direct'];

const describe = (value: unknown): string => {
  const text = typeof value === 'bigint' ? `${value}n` : (JSON.stringify(value) ?? String(value));
  return text.length > 60 ? `${text.slice(0, 60)}...` : text;
};

/**
 * Checks config.json's `sequence_batching` (Triton's field, snake_case as in config.pbtxt):
 * `{ max_sequence_idle_microseconds?, oldest?: {}, direct?: {} }`. Both strategies batch the same
 * way here: one request per sequence per batch, oldest first (Triton's "oldest").
 */
export function readSequenceBatching(value: unknown, maxSequences: number | undefined): SequenceBatching {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new TypeError(`Expected \`sequence_batching\` to be an object, got ${describe(value)}`);
  let idleUs = DEFAULT_IDLE_US;
  for (const [key, field] of Object.entries(value)) {
    if (key === 'max_sequence_idle_microseconds') {
      if (typeof field !== 'number' || !Number.isSafeInteger(field) || field < 0)
        throw new RangeError(
          `Expected \`sequence_batching.max_sequence_idle_microseconds\` to be an integer >= 0, got ${describe(field)}`,
        );
      // 0 is Triton's "the default".
      if (field > 0) idleUs = field;
    } else if (STRATEGIES.includes(key)) {
      if (typeof field !== 'object' || field === null || Array.isArray(field))
        throw new TypeError(`Expected \`sequence_batching.${key}\` to be an object, got ${describe(field)}`);
    } else {
      throw new TypeError(
        `Unknown key \`sequence_batching.${key}\`; known keys are \`max_sequence_idle_microseconds\`, \`oldest\`, \`direct\``,
      );
    }
  }
  const most = maxOf('maxSequences');
  const cap = maxSequences ?? SETTING_DEFAULTS.maxSequences;
  if (!Number.isSafeInteger(cap) || cap < 1 || cap > most)
    throw new RangeError(`Expected \`maxSequences\` to be an integer from 1 to ${most}, got ${describe(cap)}`);
  return { idleMs: idleUs / 1000, maxSequences: cap };
}

/**
 * A request's `sequence_id` as the table's key: a uint64 (a JSON number up to 2^53, a gRPC
 * int64/uint64 parameter, exact to 2^64 - 1) as its decimal string, or a string id. 0, absent or
 * empty is no sequence: a 400 for a sequence model.
 */
function sequenceId(value: unknown): string {
  if (value === undefined || value === 0 || value === '' || value === 0n || value === '0')
    throw new SequenceError(
      'ERR_SEQUENCE_ID',
      'This is a sequence model: every request needs a `sequence_id` parameter other than 0 (a uint64 or a string)',
    );
  if (typeof value === 'number') {
    if (Number.isSafeInteger(value) && value > 0) return String(value);
    throw new SequenceError(
      'ERR_SEQUENCE_ID',
      `Expected \`sequence_id\` to be an integer from 1 to 2^64 - 1 (above 2^53, as a decimal string: JSON numbers lose digits there), got ${describe(value)}`,
    );
  }
  if (typeof value === 'bigint') {
    if (value > 0n && value <= UINT64_MAX) return value.toString();
    throw new SequenceError('ERR_SEQUENCE_ID', `Expected \`sequence_id\` to be a uint64, got ${value}`);
  }
  if (typeof value === 'string' && value.length <= MAX_ID_LENGTH) return value;
  throw new SequenceError(
    'ERR_SEQUENCE_ID',
    `Expected \`sequence_id\` to be a uint64 or a string of at most ${MAX_ID_LENGTH} characters, got ${describe(value)}`,
  );
}

function flag(parameters: Record<string, unknown>, name: 'sequence_start' | 'sequence_end'): boolean {
  const value = parameters[name];
  if (value === undefined) return false;
  if (typeof value === 'boolean') return value;
  throw new SequenceError('ERR_SEQUENCE_ID', `Expected \`${name}\` to be true or false, got ${describe(value)}`);
}

interface Live {
  worker: number;
  incarnation: number;
  /** Requests admitted and not yet answered: a sequence with one is never idle (Triton's rule). */
  pending: number;
  /** When its last request was answered (clock ms). */
  idleSince: number;
  /** Its worker exited: its state is gone, and its requests fail until a new start. */
  lost: boolean;
}

/**
 * The live sequences of one model, on the main thread: which worker holds each one's state, its
 * incarnation (bumped by every start, so a restart is told from what came before), whether it is
 * idle, and the cap. The states themselves live in the workers (sequence-states.ts); this table
 * decides, per request, whether it may go (and where), and tells each worker which states to free.
 * Expiry is read when a request looks a sequence up, so it is exact to the request; a sweep at the
 * cap frees the memory of the others.
 */
export class SequenceTable {
  readonly #name: string;
  readonly #workers: number;
  readonly #batching: SequenceBatching;
  readonly #now: () => number;
  readonly #live = new Map<string, Live>();
  /** Live sequences per worker, for placing a new one. */
  readonly #load: number[];
  /** States each worker still holds for sequences that ended without telling it; sent with its next requests. */
  readonly #drops: Map<string, number>[];
  #incarnations = 0;

  constructor(name: string, workers: number, batching: SequenceBatching, now: () => number = () => performance.now()) {
    this.#name = name;
    this.#workers = workers;
    this.#batching = batching;
    this.#now = now;
    this.#load = new Array<number>(workers).fill(0);
    this.#drops = Array.from({ length: workers }, () => new Map());
  }

  /** Live sequences (expired ones not yet swept included until a request or a sweep sees them). */
  get size(): number {
    return this.#live.size;
  }

  /**
   * A request's sequence, checked and placed: throws a SequenceError for a missing or bad id, an
   * unknown or expired sequence, a lost one, or a full model. A start on a live id restarts it on
   * its worker, with a fresh state; an end frees the id at once (the request still runs).
   */
  admit(parameters: Record<string, unknown> | undefined): SequenceMark {
    const given = parameters ?? {};
    const id = sequenceId(given.sequence_id);
    const start = flag(given, 'sequence_start');
    const end = flag(given, 'sequence_end');
    const t = this.#now();
    let live = this.#live.get(id);
    if (live !== undefined && this.#expired(live, t)) {
      this.#forget(id, live);
      live = undefined;
    }
    if (live === undefined) {
      if (!start)
        throw new SequenceError(
          'ERR_SEQUENCE_UNKNOWN',
          `No live sequence ${id} of model ${this.#name}: it was never started, has ended, or was freed after ${this.#batching.idleMs * 1000} µs idle; send \`sequence_start\` to start it`,
        );
      if (this.#live.size >= this.#batching.maxSequences) this.#sweep(t);
      if (this.#live.size >= this.#batching.maxSequences)
        throw new SequenceError(
          'ERR_SEQUENCES_FULL',
          `Model ${this.#name} holds its most live sequences (${this.#batching.maxSequences}, \`maxSequences\`); end one or retry later`,
        );
      live = { worker: this.#leastLoaded(), incarnation: 0, pending: 0, idleSince: t, lost: false };
      this.#live.set(id, live);
      this.#load[live.worker] = (this.#load[live.worker] as number) + 1;
    } else if (live.lost && !start) {
      // Ending a lost sequence frees its place; it still says what happened to its state.
      if (end) this.#forget(id, live);
      throw new SequenceError(
        'ERR_SEQUENCE_LOST',
        `Sequence ${id} of model ${this.#name} lost its state: the worker thread holding it exited; start it again with \`sequence_start\``,
      );
    }
    if (start) {
      live.incarnation = ++this.#incarnations;
      live.lost = false;
      // A state of this id the worker was told to free is the new one's now: no drop may reach it.
      this.#drops[live.worker]?.delete(id);
    }
    live.pending++;
    const mark: SequenceMark = { id, start, end, incarnation: live.incarnation, worker: live.worker };
    const drops = this.#drops[live.worker] as Map<string, number>;
    if (drops.size > 0) mark.drop = [...drops];
    if (end) this.#forget(id, live);
    return mark;
  }

  /** A request admitted by `admit` is answered (`error` undefined) or failed. */
  settled(mark: SequenceMark, error: unknown): void {
    const live = this.#live.get(mark.id);
    const current = live !== undefined && live.incarnation === mark.incarnation;
    if (current) {
      live.pending--;
      live.idleSince = this.#now();
      const gone = error instanceof WorkerExitedError || sequenceErrorCode(error) === 'ERR_SEQUENCE_LOST';
      if (error !== undefined && gone) live.lost = true;
    }
    const drops = this.#drops[mark.worker] as Map<string, number>;
    // The worker read the drops this request carried before running it: they are done.
    if (error === undefined)
      for (const [id, incarnation] of mark.drop ?? []) if (drops.get(id) === incarnation) drops.delete(id);
    // An end that may not have reached its worker (refused, cancelled, failed): its state is freed
    // with a later request. A worker frees a state only of the incarnation named, so a sequence
    // restarted since keeps its own.
    if (mark.end && error !== undefined && !current) drops.set(mark.id, mark.incarnation);
  }

  /** The model is unloaded: its workers go, and every state with them. */
  clear(): void {
    this.#live.clear();
    this.#load.fill(0);
    for (const drops of this.#drops) drops.clear();
  }

  #expired(live: Live, t: number): boolean {
    return live.pending === 0 && t - live.idleSince > this.#batching.idleMs;
  }

  /** Frees `id`'s place; its worker is told to free its state unless it has none (lost) or gets it back now. */
  #forget(id: string, live: Live): void {
    this.#live.delete(id);
    this.#load[live.worker] = (this.#load[live.worker] as number) - 1;
    if (!live.lost && live.pending === 0) this.#drops[live.worker]?.set(id, live.incarnation);
  }

  #sweep(t: number): void {
    for (const [id, live] of this.#live) if (this.#expired(live, t)) this.#forget(id, live);
  }

  /** A new sequence goes to the worker holding the fewest (ties: the lowest). */
  #leastLoaded(): number {
    let best = 0;
    for (let w = 1; w < this.#workers; w++) if ((this.#load[w] as number) < (this.#load[best] as number)) best = w;
    return best;
  }
}
