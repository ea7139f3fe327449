import type { CallHandle } from '../call-handle.js';

/** How a sequence ended, for `stats.ended`. */
export type EndReason = 'done' | 'error' | 'aborted' | 'timeout';

/**
 * One caller's stream: the values its sequence produces, buffered so a slow
 * reader never stalls the other sequences, then its end (done, or an error
 * that surfaces on `next()` after the values before it). Breaking out of
 * `for await` calls `return()`, which ends it quietly.
 */
export class Sequence<I, S, T> implements AsyncIterableIterator<T> {
  readonly input: I;
  /** Names the sequence's state in a worker thread. */
  readonly id: number;
  state: S | undefined = undefined;
  handle: CallHandle<Sequence<I, S, T>, void> | undefined = undefined;
  /** Left its group's next step: cancelled by the caller, or ended. */
  ended = false;
  readonly created = performance.now();
  firstValueAt = 0;
  readonly #values: T[] = [];
  #error: unknown = undefined;
  #failed = false;
  #finished = false;
  #waiter: { resolve: (result: IteratorResult<T>) => void; reject: (error: unknown) => void } | undefined;
  readonly #onReturn: (sequence: Sequence<I, S, T>) => void;

  constructor(id: number, input: I, onReturn: (sequence: Sequence<I, S, T>) => void) {
    this.id = id;
    this.input = input;
    this.#onReturn = onReturn;
  }

  /** A value for the caller; ignored once the stream has ended. */
  push(value: T): void {
    if (this.#finished) return;
    if (this.firstValueAt === 0) this.firstValueAt = performance.now();
    const waiter = this.#waiter;
    if (waiter !== undefined) {
      this.#waiter = undefined;
      waiter.resolve({ value, done: false });
    } else this.#values.push(value);
  }

  /** Ends the stream, with `error` surfacing after the buffered values; true the first time only. */
  end(error?: unknown, failed = error !== undefined): boolean {
    this.ended = true;
    if (this.#finished) return false;
    this.#finished = true;
    this.#error = error;
    this.#failed = failed;
    this.handle?.dispose();
    const waiter = this.#waiter;
    if (waiter !== undefined && this.#values.length === 0) {
      this.#waiter = undefined;
      if (failed) waiter.reject(error);
      else waiter.resolve({ value: undefined, done: true });
    }
    return true;
  }

  get finished(): boolean {
    return this.#finished;
  }

  next(): Promise<IteratorResult<T>> {
    if (this.#values.length > 0) return Promise.resolve({ value: this.#values.shift() as T, done: false });
    if (this.#finished) {
      if (this.#failed) {
        // The error is delivered once; after it the stream reads as done.
        this.#failed = false;
        return Promise.reject(this.#error);
      }
      return Promise.resolve({ value: undefined, done: true });
    }
    if (this.#waiter !== undefined) return Promise.reject(new Error('next() called again before the previous call settled'));
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }

  return(): Promise<IteratorResult<T>> {
    if (!this.#finished) {
      this.#values.length = 0;
      this.#onReturn(this);
      this.end(undefined, false);
    }
    this.#failed = false;
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }
}
