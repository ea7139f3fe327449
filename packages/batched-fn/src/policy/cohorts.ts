import type { ArrivalRate, CostModel } from './cost-model.js';

/**
 * Callers that come back: a closed loop, as the queue sees it.
 *
 * A client that sends its next call when its last one is answered (a load generator, a pipeline
 * stage, a fixed pool of workers) makes arrivals follow completions: a batch of n rows settles, and
 * about n calls arrive one round trip later. Under such a loop the arrival rate that `'auto'`
 * measures is the rate its own batches allow, so the smallest batch that keeps up confirms itself,
 * and the clients split into cohorts that take turns, each paying the handler's fixed cost. Waiting
 * for the cohort on its way back merges them: the handler idles for a round trip r and saves a
 * fixed cost a: two cohorts taking turns cost 2a + b·n per n rows, one cohort a + b·n + r. So a
 * batch waits for a cohort only while cohorts usually came back within a (dueBy). The round trip
 * measured while cohorts take turns is the longer one, as their calls are handled on the cores the
 * other cohort's batch is using: once merged, they come back sooner.
 *
 * Each settled batch opens a cohort of its rows; arrivals pay back the oldest open cohort first. A
 * cohort closes when paid in full, or when a has passed since it settled. What it was paid beyond
 * chance (the rows that came back, less the λ·t that independent arrivals at the measured rate λ
 * bring in the time t it was open) feeds a moving share of the rows settled. Independent (Poisson)
 * arrivals bring λ·t on average, the time to gather n of them averaging n/λ: their share stays near
 * 0. A closed loop brings its n rows back within r, while a cohort comes every cycle of at least
 * a + r: its share, 1 − λ·r/n = 1 − r/cycle, stays above 1/2.
 */
export class Cohorts {
  /**
   * Above this moving share of rows coming back beyond chance, the callers form a closed loop. A
   * closed loop's share is 1 − r/cycle > 1/2; Poisson arrivals' is 0 on average, and stayed under
   * 0.25 in simulation at every load (test/cohorts.test.ts).
   */
  static readonly CLOSED_LOOP_SHARE = 0.4;
  /** Weight the moving averages keep per closed cohort: a memory of about 1 / (1 - MEMORY) = 10 batches. */
  static readonly MEMORY = 0.9;
  /** The share starts as if this many rows had settled and not come back: one cohort proves no loop. */
  static readonly PRIOR_ROWS = 16;
  /** Most cohorts kept open: batches of one row settling faster than their callers return. */
  static readonly MAX_OPEN = 64;
  /** A wait for a cohort lasts up to this many times the time its last row usually takes to come back. */
  static readonly RETURN_SLACK = 1.5;

  readonly #cost: CostModel;
  readonly #rate: ArrivalRate;
  /** Open cohorts, oldest first from #head: when each settled, its rows, and the rows still owed. */
  readonly #settledAt: number[] = [];
  readonly #rows: number[] = [];
  readonly #owed: number[] = [];
  #head = 0;
  /**
   * Rows that came back beyond chance, and rows settled, over recent closed cohorts (moving sums):
   * their ratio is the share. Weighed by rows, so that a cohort of one row, which a busy loop's λ·t
   * outweighs, counts as one row beside a cohort of 63.
   */
  #beyondChance = 0;
  #closedRows = 0;
  /**
   * How long after settling a fully paid cohort's last row arrived (ms): a moving sum and its weight,
   * whose ratio is the average without the bias of a zero start.
   */
  #returnSum = 0;
  #returnWeight = 0;

  constructor(cost: CostModel, rate: ArrivalRate) {
    this.#cost = cost;
    this.#rate = rate;
  }

  /** Whether recent cohorts came back, beyond chance, within the fixed cost a. */
  get closedLoop(): boolean {
    return this.share >= Cohorts.CLOSED_LOOP_SHARE;
  }

  /** The moving share of a cohort's rows that came back within the fixed cost a beyond chance, in [-1, 1]. */
  get share(): number {
    // Weighed against a prior of PRIOR_ROWS rows that did not come back: a loop is claimed only after some cohorts show it.
    return this.#beyondChance / (this.#closedRows + Cohorts.PRIOR_ROWS);
  }

  /** A batch of `rows` rows settled at `at`: its callers may come back. */
  settled(rows: number, at: number): void {
    if (!(rows > 0)) return;
    this.#expire(at);
    if (this.#settledAt.length - this.#head >= Cohorts.MAX_OPEN) this.#closeOldest(at);
    this.#settledAt.push(at);
    this.#rows.push(rows);
    this.#owed.push(rows);
  }

  /** `rows` rows arrived at `at`: they pay back the oldest open cohorts. */
  arrived(rows: number, at: number): void {
    this.#expire(at);
    let left = rows;
    while (left > 0 && this.#head < this.#owed.length) {
      const i = this.#head;
      const paid = Math.min(left, this.#owed[i] as number);
      this.#owed[i] = (this.#owed[i] as number) - paid;
      left -= paid;
      if (this.#owed[i] === 0) this.#closeOldest(at);
    }
  }

  /**
   * Under a closed loop with rows still owed, whose cohorts usually come back soon enough for a wait
   * to pay: the clock time by which they should be back, when a batch waiting for them stops waiting.
   * Otherwise undefined.
   */
  dueBy(now: number): number | undefined {
    this.#expire(now);
    if (!this.closedLoop || this.#head >= this.#owed.length || this.#returnWeight === 0) return undefined;
    // Only a wait shorter than the fixed cost it saves can pay.
    const worthWaiting = this.#cost.a;
    const usualReturn = this.#returnSum / this.#returnWeight;
    if (usualReturn > worthWaiting) return undefined;
    // The newest open cohort is the one the batch can still gain from; older ones close first.
    const newest = this.#settledAt[this.#settledAt.length - 1] as number;
    return newest + Math.min(worthWaiting, Cohorts.RETURN_SLACK * usualReturn);
  }

  /** Rows the open cohorts still owe. */
  owed(now: number): number {
    this.#expire(now);
    let owed = 0;
    for (let i = this.#head; i < this.#owed.length; i++) owed += this.#owed[i] as number;
    return owed;
  }

  /** A cohort stays open for the handler's fixed cost a: callers later than that are not waited for. */
  #expire(now: number): void {
    const window = this.#cost.a;
    while (this.#head < this.#settledAt.length && now - (this.#settledAt[this.#head] as number) > window) {
      this.#closeOldest(now);
    }
  }

  /** Closes the oldest open cohort at `now`, paid in full or expired. */
  #closeOldest(now: number): void {
    const i = this.#head;
    const rows = this.#rows[i] as number;
    const owed = this.#owed[i] as number;
    const settledAt = this.#settledAt[i] as number;
    const open = Math.min(now - settledAt, this.#cost.a);
    const byChance = this.#rate.at(settledAt) * open;
    const beyondChance = Math.max(-rows, rows - owed - byChance);
    const m = Cohorts.MEMORY;
    this.#beyondChance = this.#beyondChance * m + beyondChance;
    this.#closedRows = this.#closedRows * m + rows;
    if (owed === 0) {
      this.#returnSum = this.#returnSum * m + (1 - m) * (now - settledAt);
      this.#returnWeight = this.#returnWeight * m + (1 - m);
    }
    this.#head++;
    // Drop closed cohorts now and then, so the arrays stay about MAX_OPEN long.
    if (this.#head >= Cohorts.MAX_OPEN) {
      this.#settledAt.splice(0, this.#head);
      this.#rows.splice(0, this.#head);
      this.#owed.splice(0, this.#head);
      this.#head = 0;
    }
  }
}
