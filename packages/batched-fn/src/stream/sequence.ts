import type { CallHandle } from '../engine/call-handle.js';
import type { FailureKey } from '../errors.js';
import type { Resolve } from '../queue.js';
import { type EndReason, endReasonOf, type StreamStats } from './stream-stats.js';

/** What the engine settles a sequence with when it fails while queued or in a group (abort, timeout, destroy). */
export interface Ending {
  error: unknown;
  key: FailureKey;
}

/**
 * One caller's stream, and the engine's call object for it: the values its
 * sequence produces, buffered so a slow reader never stalls the other
 * sequences, then its end (done, or an error that surfaces on `next()` after
 * the values before it). Breaking out of `for await` calls `return()`, which
 * cancels it through the engine's one cancel path and ends it quietly.
 */
export class Sequence<I, S, T> implements AsyncIterableIterator<T> {
  readonly input: I;
  /** Names the sequence's state in a worker thread. */
  readonly id: number;
  /** The sequence's place on the engine's cancel path (queue, then its group). */
  readonly handle: CallHandle<Resolve<Ending>>;
  /** The engine's resolver for this call: how a failure decided by the engine ends it. */
  readonly settle: Resolve<Ending> = (ending) => {
    const { error, key } = ending as Ending;
    this.end(endReasonOf(key), error !== undefined, error);
  };
  readonly #stats: StreamStats;
  readonly #created = performance.now();
  #firstValueAt = 0;
  #state: S | undefined = undefined;
  readonly #values: T[] = [];
  #error: unknown = undefined;
  #failed = false;
  #finished = false;
  #waiter: { resolve: (result: IteratorResult<T>) => void; reject: (error: unknown) => void } | undefined;

  constructor(id: number, input: I, handle: CallHandle<Resolve<Ending>>, stats: StreamStats) {
    this.id = id;
    this.input = input;
    this.handle = handle;
    this.#stats = stats;
  }

  /** Inline mode: the state `start` made for it (in worker mode, states stay in the thread). */
  get state(): S | undefined {
    return this.#state;
  }

  keep(state: S): void {
    this.#state = state;
  }

  /** Ended (done, failed, cancelled): it leaves its group before the next step. */
  get ended(): boolean {
    return this.#finished;
  }

  /** A value for the caller; ignored once the stream has ended. */
  push(value: T): void {
    if (this.#finished) return;
    if (this.#firstValueAt === 0) {
      this.#firstValueAt = performance.now();
      this.#stats.firstValue(this.#firstValueAt - this.#created);
    }
    this.#stats.value();
    const waiter = this.#waiter;
    if (waiter !== undefined) {
      this.#waiter = undefined;
      waiter.resolve({ value, done: false });
    } else this.#values.push(value);
  }

  /**
   * Ends the stream, counted once under `reason`; when `failed`, `error` surfaces after the
   * buffered values. True the first time only.
   */
  end(reason: EndReason, failed: boolean, error?: unknown): boolean {
    if (this.#finished) return false;
    this.#finished = true;
    this.#error = error;
    this.#failed = failed;
    this.#stats.ended(reason);
    this.handle.dispose();
    const waiter = this.#waiter;
    if (waiter !== undefined && this.#values.length === 0) {
      this.#waiter = undefined;
      if (failed) waiter.reject(error);
      else waiter.resolve({ value: undefined, done: true });
    }
    return true;
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
    if (this.#waiter !== undefined)
      return Promise.reject(new Error('next() called again before the previous call settled'));
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }

  return(): Promise<IteratorResult<T>> {
    if (!this.#finished) {
      this.#values.length = 0;
      // The caller gave up: out of the queue or its group, by the same path as an abort.
      this.handle.cancel(undefined, 'aborted');
      this.end('aborted', false);
    }
    this.#failed = false;
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }
}
