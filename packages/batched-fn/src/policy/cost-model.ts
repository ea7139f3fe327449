/**
 * The handler's cost curve c(N) = a + b·N (ms for a batch of N rows), learned
 * online from executed batches, as BentoML's adaptive batching does, but with
 * exponential forgetting instead of a fixed window and with outliers clipped.
 *
 * Each batch updates five decayed sums, so learning costs a few multiply-adds
 * per batch and no allocation. A sample further than 3 standard deviations
 * from the current fit (a GC pause, a noisy neighbour) is clipped to that
 * bound before it is added, so one stall cannot drag the curve.
 */
export class CostModel {
  /** Weight kept per new sample: memory of about 1 / (1 - DECAY) = 50 batches. */
  static readonly DECAY = 0.98;
  /** Fits need this many batches, over at least two batch sizes, before anyone relies on them. */
  static readonly MIN_SAMPLES = 8;
  /**
   * Batches in a row that ran in under half their predicted time: the handler got faster (a
   * slowdown ended). Clipping and slow forgetting would take ~50 batches to notice, and shedding
   * on the stale curve would refuse the very calls that would show it, so the fit starts over.
   */
  static readonly FASTER_IN_A_ROW = 3;

  #w = 0;
  #sx = 0;
  #sy = 0;
  #sxx = 0;
  #sxy = 0;
  #residualVar = 0;
  #samples = 0;
  #minN = Number.POSITIVE_INFINITY;
  #maxN = 0;
  #a = 0;
  #b = 0;
  #fasterInARow = 0;

  /** Fixed cost per batch in ms (the part merging saves). */
  get a(): number {
    return this.#a;
  }

  /** Marginal cost per row in ms. */
  get b(): number {
    return this.#b;
  }

  /** The largest batch the fit has seen (its forgetting aside): beyond it, predict() extrapolates. */
  get largest(): number {
    return this.#maxN;
  }

  get samples(): number {
    return this.#samples;
  }

  /** True once the fit rests on enough batches of more than one size to separate a from b. */
  get confident(): boolean {
    return this.#samples >= CostModel.MIN_SAMPLES && this.#maxN > this.#minN;
  }

  predict(rows: number): number {
    return this.#a + this.#b * rows;
  }

  observe(rows: number, ms: number): void {
    if (!(rows > 0) || !(ms >= 0) || !Number.isFinite(ms)) return;
    if (this.confident) {
      this.#fasterInARow = ms < 0.5 * this.predict(rows) ? this.#fasterInARow + 1 : 0;
      if (this.#fasterInARow >= CostModel.FASTER_IN_A_ROW) this.#forget();
    }
    let y = ms;
    if (this.confident && this.#residualVar > 0) {
      const bound = 3 * Math.sqrt(this.#residualVar);
      const predicted = this.predict(rows);
      y = Math.min(predicted + bound, Math.max(predicted - bound, y));
    }
    const d = CostModel.DECAY;
    this.#w = this.#w * d + 1;
    this.#sx = this.#sx * d + rows;
    this.#sy = this.#sy * d + y;
    this.#sxx = this.#sxx * d + rows * rows;
    this.#sxy = this.#sxy * d + rows * y;
    this.#samples++;
    if (rows < this.#minN) this.#minN = rows;
    if (rows > this.#maxN) this.#maxN = rows;
    this.#fit();
    const residual = ms - this.predict(rows);
    this.#residualVar = this.#residualVar * d + (1 - d) * residual * residual;
  }

  #forget(): void {
    this.#w = this.#sx = this.#sy = this.#sxx = this.#sxy = this.#residualVar = 0;
    this.#samples = 0;
    this.#minN = Number.POSITIVE_INFINITY;
    this.#maxN = 0;
    this.#fasterInARow = 0;
  }

  #fit(): void {
    const det = this.#w * this.#sxx - this.#sx * this.#sx;
    const mean = this.#sy / this.#w;
    // One batch size so far: the split between a and b is unknown; call it all fixed cost.
    if (det <= 1e-9 * this.#w * this.#sxx) {
      this.#a = mean;
      this.#b = 0;
      return;
    }
    let b = (this.#w * this.#sxy - this.#sx * this.#sy) / det;
    let a = (this.#sy - b * this.#sx) / this.#w;
    // Costs are never negative: clamp to the nearest physically meaningful line.
    if (b < 0) {
      b = 0;
      a = mean;
    } else if (a < 0) {
      a = 0;
      b = this.#sxy / this.#sxx;
    }
    this.#a = a;
    this.#b = b;
  }
}

/**
 * Rows arriving per ms, as an exponentially decaying count: each arrival adds
 * rows / tau, and the total decays with time constant tau. One exp() per tick.
 */
export class ArrivalRate {
  static readonly TAU_MS = 50;
  #rate = 0;
  #last = Number.NaN;

  add(rows: number, now: number): void {
    this.#rate = this.at(now) + rows / ArrivalRate.TAU_MS;
    this.#last = now;
  }

  at(now: number): number {
    if (Number.isNaN(this.#last)) return 0;
    return this.#rate * Math.exp(-Math.max(0, now - this.#last) / ArrivalRate.TAU_MS);
  }
}
