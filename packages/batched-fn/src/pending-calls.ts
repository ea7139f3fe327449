import { failureKey, TimeoutError } from './errors.js';
import { type CallOptions, validateCallOptions } from './options.js';
import { StatsRecorder } from './stats-recorder.js';

interface Pending<T> {
  resolve: (value: T) => void;
  reject: (error: unknown) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  /** What the adapter keeps with the call (a stream entry id...). */
  note: unknown;
  rows: number;
}

/**
 * The call lifecycle of a batched function whose batches run elsewhere
 * (`@batched-fn/redis`'s frontend): the same call-option validation, abort
 * and timeout rules, settle-once accounting and stats as `batchedFn`. The
 * adapter names each call, sends it on its way, and settles it when the
 * answer comes; everything a caller can observe is decided here.
 */
export class PendingCalls<T> {
  readonly stats = new StatsRecorder();
  readonly #calls = new Map<string, Pending<T>>();
  readonly #released: (id: string, note: unknown, key: string) => void;
  #onEmpty: (() => void) | undefined;
  /** Rows of the waiting calls (their `size`), for `stats.queuedRows`. */
  rows = 0;

  /** `released` hears of calls that left by abort or timeout, so the adapter can take them back. */
  constructor(released: (id: string, note: unknown, key: string) => void = () => {}) {
    this.#released = released;
  }

  get size(): number {
    return this.#calls.size;
  }

  has(id: string): boolean {
    return this.#calls.has(id);
  }

  /** Counts a call and refuses it now (a closed frontend, an input that cannot be sent). Never throws. */
  refuse(error: unknown, key = failureKey(error)): Promise<never> {
    this.stats.calls++;
    this.stats.fail(key);
    return Promise.reject(error);
  }

  /**
   * Opens call `id`: validates its options, refuses an already aborted signal, and arms the
   * timeout and abort listener. `send` starts it on its way; its promise is the caller's.
   */
  open(id: string, options: CallOptions | undefined, rows: number, send: () => void): Promise<T> {
    if (options !== undefined) {
      try {
        validateCallOptions(options);
      } catch (error) {
        return this.refuse(error);
      }
      if (options.signal?.aborted) return this.refuse(options.signal.reason, 'aborted');
    }
    this.stats.calls++;
    return new Promise<T>((resolve, reject) => {
      const pending: Pending<T> = { resolve, reject, timer: undefined, signal: options?.signal, onAbort: undefined, note: undefined, rows };
      this.#calls.set(id, pending);
      this.rows += rows;
      const timeout = options?.timeout;
      if (timeout !== undefined) pending.timer = setTimeout(() => this.fail(id, new TimeoutError(timeout), 'ERR_TIMEOUT'), timeout);
      if (pending.signal !== undefined) {
        const signal = pending.signal;
        pending.onAbort = () => this.fail(id, signal.reason, 'aborted');
        signal.addEventListener('abort', pending.onAbort, { once: true });
      }
      send();
    });
  }

  /** Keeps something with a waiting call (its stream entry id), handed back if it is released. */
  note(id: string, note: unknown): boolean {
    const pending = this.#calls.get(id);
    if (pending !== undefined) pending.note = note;
    return pending !== undefined;
  }

  /** Settles with a value; false when the call had already settled (a duplicate answer). */
  resolve(id: string, value: T): boolean {
    const pending = this.#take(id);
    if (pending === undefined) return false;
    this.stats.completed++;
    pending.resolve(value);
    this.#checkEmpty();
    return true;
  }

  /** Settles with an error, counted under `key` (an error code, 'aborted' or 'handler'). */
  fail(id: string, error: unknown, key = failureKey(error)): boolean {
    const pending = this.#take(id);
    if (pending === undefined) return false;
    this.stats.fail(key);
    if (key === 'aborted' || key === 'ERR_TIMEOUT') this.#released(id, pending.note, key);
    pending.reject(error);
    this.#checkEmpty();
    return true;
  }

  /** Fails every waiting call. */
  failAll(error: () => unknown, key: string): void {
    for (const id of [...this.#calls.keys()]) this.fail(id, error(), key);
  }

  /** Resolves once no call waits (at once when none does). */
  drained(): Promise<void> {
    if (this.#calls.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.#onEmpty = resolve;
    });
  }

  #take(id: string): Pending<T> | undefined {
    const pending = this.#calls.get(id);
    if (pending === undefined) return undefined;
    this.#calls.delete(id);
    this.rows = this.#calls.size === 0 ? 0 : this.rows - pending.rows;
    if (pending.timer !== undefined) clearTimeout(pending.timer);
    if (pending.onAbort !== undefined) pending.signal?.removeEventListener('abort', pending.onAbort);
    return pending;
  }

  #checkEmpty(): void {
    if (this.#calls.size > 0 || this.#onEmpty === undefined) return;
    const onEmpty = this.#onEmpty;
    this.#onEmpty = undefined;
    onEmpty();
  }
}
