/**
 * Open, closing (no new calls; what is queued and running drains), or
 * destroyed. The engine's modules read it; only the engine changes it.
 */
export class Lifecycle {
  readonly #isIdle: () => boolean;
  #closing = false;
  #destroyed = false;
  /** Set by `drain()`: called once nothing is queued or running. */
  #onIdle: (() => void) | undefined = undefined;

  /** `isIdle` tells whether nothing is queued or running. */
  constructor(isIdle: () => boolean) {
    this.#isIdle = isIdle;
  }

  get closing(): boolean {
    return this.#closing;
  }

  get destroyed(): boolean {
    return this.#destroyed;
  }

  /** Refuses new calls from now on; resolves once nothing is queued or running. */
  drain(): Promise<void> {
    this.#closing = true;
    const idle = new Promise<void>((resolve) => {
      this.#onIdle = resolve;
    });
    this.checkIdle();
    return idle;
  }

  /** Marks it destroyed (true the first time only); a pending `drain()` resolves. */
  destroy(): boolean {
    if (this.#destroyed) return false;
    this.#destroyed = true;
    this.#closing = true;
    const onIdle = this.#onIdle;
    this.#onIdle = undefined;
    onIdle?.();
    return true;
  }

  /** Called whenever calls leave (settled, released, refused): wakes a pending `drain()` once idle. */
  checkIdle(): void {
    if (this.#onIdle !== undefined && this.#isIdle()) {
      const onIdle = this.#onIdle;
      this.#onIdle = undefined;
      onIdle();
    }
  }
}
