import { getEventListeners } from 'node:events';

/**
 * AbortControllers reused from one call to the next. Every infer call needs a signal (a client
 * that goes away leaves the queue), yet almost none is ever aborted, and on Node 20 making one
 * costs about 4 µs (its signal is an EventTarget whose prototype is set afterwards) and
 * listening to it 4 more: about a tenth of a tiny model's request, for nothing, most of the time.
 *
 * A controller goes back to the pool only when nothing can still see it: not aborted, and with
 * no `abort` listener left (the batcher removes its own when the call settles). The caller gives
 * it back only after a call that succeeded (every part of it has finished) and after removing
 * its own listeners, so no later abort, meant for another call, can reach a call that used it.
 */
export class AbortPool {
  readonly #free: AbortController[] = [];
  /** Most controllers kept: a burst of concurrent calls does not stay allocated once it has passed. */
  readonly #max: number;

  constructor(max = 1024) {
    this.#max = max;
  }

  take(): AbortController {
    return this.#free.pop() ?? new AbortController();
  }

  /** Back into the pool, if no one can still see it; otherwise left to the garbage collector. */
  give(controller: AbortController): void {
    const signal = controller.signal;
    if (this.#free.length >= this.#max || signal.aborted || getEventListeners(signal, 'abort').length > 0) return;
    this.#free.push(controller);
  }

  /** Controllers waiting to be reused (for tests). */
  get size(): number {
    return this.#free.length;
  }
}
