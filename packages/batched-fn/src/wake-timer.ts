import { MAX_TIMER_MS } from './validate.js';

const now = (): number => performance.now();

/**
 * Calls the pump back at a clock time. Node's timers tick in whole
 * milliseconds, so a sub-millisecond remainder (a fractional maxDelay, or a
 * timer that fired a hair early) is re-checked on the next loop turn with
 * setImmediate instead of being rounded up to a full millisecond.
 */
export class WakeTimer {
  readonly #wake: () => void;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #immediate: ReturnType<typeof setImmediate> | undefined;
  #due = Number.POSITIVE_INFINITY;

  constructor(wake: () => void) {
    this.#wake = wake;
  }

  readonly #fire = (): void => {
    this.#timer = undefined;
    this.#immediate = undefined;
    this.#due = Number.POSITIVE_INFINITY;
    this.#wake();
  };

  /** Wakes at `due` (clock ms), unless an earlier wake-up is already set. */
  arm(due: number): void {
    if (due >= this.#due) return;
    this.disarm();
    this.#due = due;
    const delay = due - now();
    // Longer than one timer can hold: wake at the limit; the pump then judges again and re-arms.
    if (delay >= 1) this.#timer = setTimeout(this.#fire, Math.min(delay, MAX_TIMER_MS));
    else this.#immediate = setImmediate(this.#fire);
  }

  disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    if (this.#immediate !== undefined) clearImmediate(this.#immediate);
    this.#timer = undefined;
    this.#immediate = undefined;
    this.#due = Number.POSITIVE_INFINITY;
  }
}
