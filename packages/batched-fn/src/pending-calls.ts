import { CallHandle, type CallOwner, type CallPlace } from './engine/call-handle.js';
import { refusalOf } from './engine/intake.js';
import { failureKey, isCancelKey } from './errors.js';
import type { CallOptions } from './options.js';
import { StatsRecorder } from './stats-recorder.js';

interface Pending<T> {
  resolve: (value: T) => void;
  reject: (error: unknown) => void;
  /** With a signal or a timeout: the call's cancel handle. */
  handle: CallHandle<string> | undefined;
  /** What the adapter keeps with the call (a stream entry id...). */
  note: unknown;
  rows: number;
}

/** A call sent elsewhere: cancelling it hands back its id (PendingCalls then settles it, if it still waits). */
class Away implements CallPlace<string> {
  readonly #id: string;

  constructor(id: string) {
    this.#id = id;
  }

  take(): string {
    return this.#id;
  }
}

/**
 * The engine's intake and settlement for batches that run elsewhere
 * (`@batched-fn/redis`'s frontend): a remote executor, where the batching
 * itself happens in the remote worker's own engine. The same call checks
 * (`refusalOf`), the same cancel path (a CallHandle whose abort and timeout
 * come back through `cancel`), the same failure keys, settle-once accounting
 * and stats as `batchedFn`. The adapter names each call, sends it on its way,
 * and settles it when the answer comes; everything a caller can observe is
 * decided here.
 */
export class PendingCalls<T> {
  readonly stats = new StatsRecorder();
  readonly #calls = new Map<string, Pending<T>>();
  readonly #released: (id: string, note: unknown, key: string) => void;
  #onEmpty: (() => void) | undefined;
  #rows = 0;
  /** The cancel path: the caller's signal fired or its timeout passed. */
  readonly #owner: CallOwner<string> = {
    cancel: (handle, error, key) => {
      const id = handle.leave();
      if (id !== undefined) this.fail(id, error, key);
    },
  };

  /** `released` hears of calls that left by abort or timeout, so the adapter can take them back. */
  constructor(released: (id: string, note: unknown, key: string) => void = () => {}) {
    this.#released = released;
  }

  get size(): number {
    return this.#calls.size;
  }

  /** Rows of the waiting calls (their `size`), for `stats.queuedRows`. */
  get rows(): number {
    return this.#rows;
  }

  has(id: string): boolean {
    return this.#calls.has(id);
  }

  /** Counts a call and refuses it now (a closed frontend, an input that cannot be sent). Never throws. */
  refuse(error: unknown, key: string = failureKey(error)): Promise<never> {
    this.stats.called();
    this.stats.fail(key);
    return Promise.reject(error);
  }

  /**
   * Opens call `id`: checks its options as the engine's intake does (refusing an already aborted
   * signal), and arms its cancel handle. `send` starts it on its way; its promise is the caller's.
   */
  open(id: string, options: CallOptions | undefined, rows: number, send: () => void): Promise<T> {
    const refusal = refusalOf(options);
    if (refusal !== undefined) return this.refuse(refusal.error, refusal.key);
    this.stats.called();
    return new Promise<T>((resolve, reject) => {
      const signal = options?.signal;
      const timeout = options?.timeout;
      const handle = signal === undefined && timeout === undefined ? undefined : new CallHandle<string>(this.#owner);
      this.#calls.set(id, { resolve, reject, handle, note: undefined, rows });
      this.#rows += rows;
      if (handle !== undefined) {
        handle.moveTo(new Away(id));
        const now = performance.now();
        handle.arm(now, undefined, signal, timeout, now);
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
    this.stats.succeeded(1);
    pending.resolve(value);
    this.#checkEmpty();
    return true;
  }

  /** Settles with an error, counted under `key` (see FailureKey: an error code, 'aborted' or 'handler'). */
  fail(id: string, error: unknown, key: string = failureKey(error)): boolean {
    const pending = this.#take(id);
    if (pending === undefined) return false;
    this.stats.fail(key);
    if (isCancelKey(key)) this.#released(id, pending.note, key);
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
    this.#rows = this.#calls.size === 0 ? 0 : this.#rows - pending.rows;
    pending.handle?.dispose();
    return pending;
  }

  #checkEmpty(): void {
    if (this.#calls.size > 0 || this.#onEmpty === undefined) return;
    const onEmpty = this.#onEmpty;
    this.#onEmpty = undefined;
    onEmpty();
  }
}
