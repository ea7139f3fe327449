import { Cohorts } from './cohorts.js';
import { ArrivalRate, type CostModel } from './cost-model.js';

/**
 * What `maxDelay: 'auto'` observes of its callers: how fast their rows arrive, and whether the
 * callers of settled batches come back (a closed loop). The pump reports arrivals, the runner
 * settled batches; the policy reads both.
 */
export class Traffic {
  readonly rate = new ArrivalRate();
  readonly cohorts: Cohorts;

  constructor(cost: CostModel) {
    this.cohorts = new Cohorts(cost, this.rate);
  }

  arrived(rows: number, at: number): void {
    this.rate.add(rows, at);
    this.cohorts.arrived(rows, at);
  }

  settled(rows: number, at: number): void {
    this.cohorts.settled(rows, at);
  }
}
