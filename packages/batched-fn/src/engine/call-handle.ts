import { type CancelKey, TimeoutError } from '../errors.js';

/**
 * Where a cancellable call is right now (a queue slot, a running batch, a
 * remote call waiting for its answer). `take` takes the call out of there and
 * hands back what settles it, or undefined when it has already left; the
 * module that owns the place does the taking, so no one else touches its
 * fields.
 */
export interface CallPlace<R> {
  take(): R | undefined;
}

/** Who hears that a call was cancelled: the front that made it, which settles it (with the error and key given). */
export interface CallOwner<R> {
  cancel(handle: CallHandle<R>, error: unknown, key: CancelKey): void;
}

/**
 * The one cancel path, for every front (batchedFn, PendingCalls,
 * batchedStream). A call made with a signal, a timeout or a trace gets one;
 * plain calls never allocate it. It is the AbortSignal listener
 * (`handleEvent`) and the timer's argument, so a cancellable call allocates
 * no closures either. Abort and timeout both end in `owner.cancel` with one of
 * the two cancel keys, decided here and nowhere else.
 */
export class CallHandle<R> {
  readonly #owner: CallOwner<R>;
  #place: CallPlace<R> | undefined = undefined;
  #signal: AbortSignal | undefined = undefined;
  #timer: ReturnType<typeof setTimeout> | undefined = undefined;
  #timeout = 0;
  #deadline = Number.POSITIVE_INFINITY;
  #arrival = 0;
  #trace: unknown = undefined;

  constructor(owner: CallOwner<R>) {
    this.#owner = owner;
  }

  /** When the call was queued (clock ms), for its wait in a trace. */
  get arrival(): number {
    return this.#arrival;
  }

  /** The caller's trace (see `BatchTracing`), or undefined. */
  get trace(): unknown {
    return this.#trace;
  }

  /** Absolute clock time the caller stops waiting; Infinity without a timeout. */
  get deadline(): number {
    return this.#deadline;
  }

  /** The call's `timeout` option in ms (0 without one). */
  get timeout(): number {
    return this.#timeout;
  }

  /** The call was queued at `arrival`: listens to `signal` and arms `timeout` (ms, counted from `now`). */
  arm(
    arrival: number,
    trace: unknown,
    signal: AbortSignal | undefined,
    timeout: number | undefined,
    now: number,
  ): void {
    this.#arrival = arrival;
    this.#trace = trace;
    if (signal !== undefined) {
      this.#signal = signal;
      signal.addEventListener('abort', this, { once: true });
    }
    if (timeout !== undefined) {
      this.#timeout = timeout;
      this.#deadline = now + timeout;
      this.#timer = setTimeout(expire, timeout, this);
    }
  }

  /** The call moved (queued, joined a batch, its slot in the batch changed). */
  moveTo(place: CallPlace<R>): void {
    this.#place = place;
  }

  /** Stops listening and takes the call out of where it is: what settles it, or undefined once it has settled. */
  leave(): R | undefined {
    const place = this.#place;
    this.dispose();
    return place?.take();
  }

  /** The AbortSignal fired. */
  handleEvent(): void {
    const signal = this.#signal;
    if (signal !== undefined) this.#owner.cancel(this, signal.reason, 'aborted');
  }

  /** The caller gave up by other means (a stream's `return()`): the same path as an abort. */
  cancel(error: unknown, key: CancelKey): void {
    this.#owner.cancel(this, error, key);
  }

  /** The timeout passed (called by the timer). */
  expire(): void {
    this.#timer = undefined;
    this.#owner.cancel(this, new TimeoutError(this.#timeout), 'ERR_TIMEOUT');
  }

  /** Stops listening; called once the call settles, however it settles. Later cancels find nothing. */
  dispose(): void {
    this.#place = undefined;
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#signal !== undefined) {
      this.#signal.removeEventListener('abort', this);
      this.#signal = undefined;
    }
  }
}

function expire<R>(handle: CallHandle<R>): void {
  handle.expire();
}
