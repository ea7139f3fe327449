/**
 * Longest stretch the pump may keep handing out batches without the
 * event loop turning. A synchronous handler, or callers that call again as
 * soon as they are answered, would otherwise chain dispatches through
 * microtasks forever and starve timers and sockets: the server would stop
 * accepting connections exactly when it is busiest. After this long we hop
 * through `setImmediate`, which costs one loop turn per stretch, not per batch.
 * A loop turn after a long synchronous stretch measured about 110 us on our
 * 2-core machines, so yielding after every 5 ms batch cost 2 % of throughput;
 * 25 ms keeps that under 0.5 % while bounding starvation to 25 ms plus one batch.
 */
export const YIELD_AFTER_MS = 25;

/** Tells the pump (or a stream group's step loop) when it has held the event loop for too long. */
export class LoopYield {
  #streakStart = -1;

  readonly #endStreak = (): void => {
    this.#streakStart = -1;
  };

  /** True once dispatching has gone on for YIELD_AFTER_MS without an event-loop turn in between. */
  due(t: number): boolean {
    if (this.#streakStart < 0) {
      // The first callback of the next loop turn ends the stretch.
      this.#streakStart = t;
      setImmediate(this.#endStreak);
      return false;
    }
    return t - this.#streakStart >= YIELD_AFTER_MS;
  }
}
