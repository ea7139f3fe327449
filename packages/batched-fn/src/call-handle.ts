import type { Lane } from './lane.js';
import type { CallQueue } from './queue.js';

/** Where a cancellable call is: waiting at `seq` in a queue, at `index` of a running batch, or done. */
export type CallPlace<I, O> =
  | { readonly state: 'queued'; readonly lane: Lane<I, O>; readonly queue: CallQueue<I, O>; readonly seq: number }
  | { readonly state: 'running'; readonly batch: { resolvers: unknown[] }; readonly index: number }
  | { readonly state: 'settled' };

const SETTLED = Object.freeze({ state: 'settled' as const });

/** What a handle reports back to: the batcher that owns the call. */
export interface CallOwner<I, O> {
  abort(handle: CallHandle<I, O>): void;
  expire(handle: CallHandle<I, O>): void;
}

/**
 * Extra state for a call made with a signal or a timeout, the only calls that
 * can be cancelled from outside. Plain calls never allocate one. It doubles as
 * the AbortSignal listener (`handleEvent`) and as the timer's argument, so a
 * cancellable call allocates no closures either.
 */
export class CallHandle<I, O> {
  readonly owner: CallOwner<I, O>;
  place: CallPlace<I, O> = SETTLED;
  /** Absolute clock time the caller stops waiting; Infinity without a timeout. */
  deadline = Number.POSITIVE_INFINITY;
  signal: AbortSignal | undefined = undefined;
  timer: ReturnType<typeof setTimeout> | undefined = undefined;
  timeout = 0;
  /** The caller's trace (see `BatchTracing`), and when it was queued, for its wait. */
  trace: unknown = undefined;
  arrival = 0;

  constructor(owner: CallOwner<I, O>) {
    this.owner = owner;
  }

  handleEvent(): void {
    this.owner.abort(this);
  }

  /** Stops listening; called once the call settles, however it settles. */
  dispose(): void {
    this.place = SETTLED;
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.signal !== undefined) {
      this.signal.removeEventListener('abort', this);
      this.signal = undefined;
    }
  }
}

export function onCallTimeout<I, O>(handle: CallHandle<I, O>): void {
  handle.timer = undefined;
  handle.owner.expire(handle);
}
