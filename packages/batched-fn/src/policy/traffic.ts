import { Cohorts } from './cohorts.js';
import { ArrivalRate, type CostModel } from './cost-model.js';

/**
 * What `maxDelay: 'auto'` observes of its callers: how fast their rows arrive, and whether the
 * callers of settled batches come back (a closed loop, cohorts.ts). The pump reports arrivals, the
 * runner settled batches; the policy asks.
 */
export class Traffic {
  readonly #rate: ArrivalRate;
  readonly #cohorts: Cohorts;
  /** With batch keys or affinity, one engine's cohorts mix lanes with callers of their own: no cohort waits. */
  readonly #cohortWaits: boolean;

  constructor(cost: CostModel, options: { lanes: 'one' | 'keyed' }, rate = new ArrivalRate()) {
    this.#rate = rate;
    this.#cohorts = new Cohorts(cost, rate);
    this.#cohortWaits = options.lanes === 'one';
  }

  arrived(rows: number, at: number): void {
    this.#rate.add(rows, at);
    this.#cohorts.arrived(rows, at);
  }

  settled(rows: number, at: number): void {
    this.#cohorts.settled(rows, at);
  }

  /** Rows arriving per ms now. */
  rowsPerMs(now: number): number {
    return this.#rate.at(now);
  }

  /** Under a closed loop, when the callers of the batch that just settled should be back (Cohorts.dueBy). */
  cohortDue(now: number): number | undefined {
    return this.#cohortWaits ? this.#cohorts.dueBy(now) : undefined;
  }

  /**
   * Under a closed loop, the rows the settled batches' callers still owe (Cohorts.owed): with no batch
   * running, all the loop can still bring. Otherwise undefined: arrivals are not the loop's.
   */
  loopRowsDue(now: number): number | undefined {
    return this.#cohortWaits && this.#cohorts.closedLoop ? this.#cohorts.owed(now) : undefined;
  }
}
