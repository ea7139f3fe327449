import type { Batcher } from './batcher.js';
import type { Lane } from './lane.js';
import type { CallQueue } from './queue.js';

export const QUEUED = 0;
export const RUNNING = 1;
export const SETTLED = 2;
export type CallState = typeof QUEUED | typeof RUNNING | typeof SETTLED;

/**
 * Extra state for a call made with a signal or a timeout, the only calls that
 * can be cancelled from outside. Plain calls never allocate one. It doubles as
 * the AbortSignal listener (`handleEvent`) and as the timer's argument, so a
 * cancellable call allocates no closures either.
 */
export class CallHandle<I, O> {
  readonly owner: Batcher<I, O>;
  state: CallState = QUEUED;
  /** Where the call waits while QUEUED. */
  lane: Lane<I, O> | undefined = undefined;
  queue: CallQueue<I, O> | undefined = undefined;
  /** Queue position while QUEUED; index in `batch` while RUNNING. */
  seq = -1;
  /** Absolute clock time the caller stops waiting; Infinity without a timeout. */
  deadline = Number.POSITIVE_INFINITY;
  index = -1;
  batch: { resolvers: unknown[] } | undefined = undefined;
  signal: AbortSignal | undefined = undefined;
  timer: ReturnType<typeof setTimeout> | undefined = undefined;
  timeout = 0;

  constructor(owner: Batcher<I, O>) {
    this.owner = owner;
  }

  handleEvent(): void {
    this.owner.abort(this);
  }

  /** Stops listening; called once the call settles, however it settles. */
  dispose(): void {
    this.state = SETTLED;
    this.batch = undefined;
    this.lane = undefined;
    this.queue = undefined;
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
