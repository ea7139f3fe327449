import type { CostModel } from '../policy/cost-model.js';

/**
 * Shedding predicts from the learned cost curve, and only running batches
 * teach it. When nothing has run for this long, calls are let through
 * unshed, so a curve learned during a slowdown cannot refuse every call
 * forever: the batches they form are the evidence that the slowdown is over.
 */
const PROBE_AFTER_MS = 250;

/**
 * Early rejection of calls that cannot meet their deadline (Clockwork's
 * idea): at the call, from the predicted finish; at dispatch, from the
 * batch's predicted cost.
 */
export class Shedder {
  readonly #cost: CostModel;
  /** When the cost curve last learned from a batch. */
  #lastEvidence = Number.NEGATIVE_INFINITY;

  constructor(cost: CostModel) {
    this.#cost = cost;
  }

  /** A batch of `rows` took `ms`: the curve learns, and shedding may trust it again. */
  learned(rows: number, ms: number, at: number): void {
    this.#cost.observe(rows, ms);
    this.#lastEvidence = at;
  }

  /** Whether predictions may shed calls now: a confident curve, and recent evidence. */
  active(t: number, running: number): boolean {
    return this.#cost.confident && (running > 0 || t - this.#lastEvidence < PROBE_AFTER_MS);
  }

  /**
   * When would a call of `rows` rows made now be answered? The running
   * batches finish at their predicted cost; then the queue ahead drains in
   * full batches across the free slots; then this call's own batch runs.
   */
  predictFinish(
    rows: number,
    t: number,
    running: ReadonlySet<{ started: number; rows: number }>,
    concurrency: number,
    queuedRows: number,
    max: number,
  ): number {
    const cost = this.#cost;
    let freeAt = t;
    if (running.size >= concurrency) {
      freeAt = Number.POSITIVE_INFINITY;
      for (const batch of running) freeAt = Math.min(freeAt, batch.started + cost.predict(batch.rows));
      freeAt = Math.max(t, freeAt);
    }
    const fullBatchesAhead = Math.floor(queuedRows / max);
    const start = freeAt + (fullBatchesAhead * cost.predict(max)) / concurrency;
    return start + cost.predict(Math.min(max, queuedRows - fullBatchesAhead * max + rows));
  }

  /** When a batch of `rows` started at `started` is predicted to finish: callers due before then are shed. */
  batchFinish(started: number, rows: number): number {
    return started + this.#cost.predict(rows);
  }
}
