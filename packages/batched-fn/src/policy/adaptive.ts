import type { DispatchReason } from '../stats.js';
import type { ArrivalRate, CostModel } from './cost-model.js';
import type { LaneView, PumpTrigger, SchedulingPolicy } from './types.js';

/**
 * `maxDelay: 'auto'`: dispatch as soon as waiting no longer pays.
 *
 * When a batch slot is free and the queue is not full, the choice is between
 * sending the n queued rows now or waiting for the next arrival, expected in
 * 1/λ ms. Sending now leaves the next caller to run on its own later, paying
 * the fixed cost a again; waiting makes n+1 callers wait 1/λ more and the batch
 * cost b more. Summing latency over those callers, waiting wins only while
 *
 *     (n + 1) / λ + n · b  <  a
 *
 * so at low load (λ small) a lone caller goes at once, and the rule stops
 * waiting by itself as the batch grows. Under load the handler is busy most of
 * the time and batches fill while it runs, exactly as with a fixed delay.
 *
 * Two caps keep it honest: it never waits longer than a (merging cannot save
 * more than that), and never so long that the oldest caller would miss the
 * latency target given the learned cost of the batch.
 */
export class AdaptivePolicy implements SchedulingPolicy {
  readonly #cost: CostModel;
  readonly #arrivals: ArrivalRate;
  latencyTarget: number | undefined;

  constructor(cost: CostModel, arrivals: ArrivalRate, latencyTarget: number | undefined) {
    this.#cost = cost;
    this.#arrivals = arrivals;
    this.latencyTarget = latencyTarget;
  }

  decide(lane: LaneView, now: number, _trigger: PumpTrigger): DispatchReason | number {
    const cost = this.#cost;
    // Until the curve is known, behave like maxDelay 0: never make anyone wait on a guess.
    if (!cost.confident) return 'adaptive';
    const lambda = this.#arrivals.at(now);
    const n = lane.rows;
    if (lambda <= 0 || (n + 1) / lambda + n * cost.b >= cost.a) return 'adaptive';
    let deadline = lane.oldestArrival + cost.a;
    if (this.latencyTarget !== undefined) {
      deadline = Math.min(deadline, lane.oldestArrival + this.latencyTarget - cost.predict(n + 1));
    }
    if (now >= deadline) return 'adaptive';
    // Look again when the next caller is due, or at the cap, whichever is first.
    return Math.min(deadline, now + 1 / lambda);
  }
}
