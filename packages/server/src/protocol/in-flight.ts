/**
 * Draining without being held hostage. Shutdown answers every accepted request (one whose
 * request has fully arrived and is being handled). A client that sent headers, or announced a
 * gRPC message, and then went quiet has no request to answer, yet its connection would hold the
 * server open until Node's own timeout (300 s for HTTP) or forever (HTTP/2 streams). Once every
 * accepted request is answered, open connections get this long to flush, then are cut.
 */
export const STALLED_GRACE_MS = 1_000;

/** Counts accepted requests, so shutdown knows when every one has been answered. */
export class InFlight {
  #count = 0;
  #waiters: (() => void)[] = [];

  begin(): void {
    this.#count++;
  }

  end(): void {
    if (--this.#count === 0) for (const wake of this.#waiters.splice(0)) wake();
  }

  /** Resolves once nothing is in flight, then waits STALLED_GRACE_MS for answers to flush. */
  async settled(): Promise<void> {
    if (this.#count > 0) await new Promise<void>((resolve) => this.#waiters.push(resolve));
    await new Promise<void>((resolve) => setTimeout(resolve, STALLED_GRACE_MS).unref());
  }
}
