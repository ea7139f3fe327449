import type { DispatchReason } from '../stats.js';
import type { CostModel } from './cost-model.js';
import type { Traffic } from './traffic.js';
import type { BatchSlots, LaneView, PumpTrigger, SchedulingPolicy } from './types.js';

/**
 * `maxDelay: 'auto'`: dispatch as soon as waiting no longer pays.
 *
 * A handler that costs c(N) = a + b·N and runs batches of n rows back to back
 * serves n / (a + b·n) rows per ms. With rows arriving at λ per ms, it keeps up
 * with headroom only if that exceeds λ / ρ, ρ being the target utilisation:
 *
 *     n  >=  a·λ / (ρ − b·λ)
 *
 * When a batch slot is free, the policy sends the queue as soon as it holds
 * that many rows (rounded down to whole rows). At low load the bound is below one row, so a lone caller
 * goes at once and pays no window. Near saturation it climbs to maxBatchSize:
 * sending smaller batches the moment the handler frees up would waste its
 * fixed cost and let the queue grow, which is where a fixed delay used to win.
 * In between, it waits just long enough for batches that keep up. (A
 * one-step look-ahead, "wait for one more caller while (n+1)/λ + n·b < a",
 * never waits longer than this bound, so the bound is the whole rule.)
 *
 * The wait is capped: never longer than it takes to gather that many rows or
 * than a (whichever is longer), and never past the latency target given the
 * learned cost of the batch.
 *
 * Under a closed loop (callers that send again when answered, cohorts.ts) the
 * measured λ is the rate the policy's own batches allow, and the bound would
 * confirm whatever batch it started with. There the queue also waits for the
 * callers of the batch that just settled, when they usually come back within
 * a: one batch then pays the fixed cost where two took turns paying it. And
 * with no batch running it waits for no more rows than those callers still owe:
 * the bound, fed the loop's own rate, asks for about the whole loop over ρ.
 *
 * With `concurrency` > 1 it plans for the batch slots as they are (Overlap):
 * k slots whose batches do not slow each other keep up with k times the
 * arrivals, so each needs the rows for its share of λ. Slots that share one
 * device (efficiency 0) are planned for as one.
 */
export class AdaptivePolicy implements SchedulingPolicy {
  /** ρ: measured on the simulated 2 + 0.05·N model, 0.9 kept p99 within 1.1x of the best fixed delay at every load. */
  static readonly TARGET_UTILISATION = 0.9;
  readonly #cost: CostModel;
  readonly #traffic: Traffic;
  readonly latencyTarget: number | undefined;
  /** The batch slots, and whether batches running at once slow each other (Overlap). */
  readonly #slots: BatchSlots;

  constructor(
    cost: CostModel,
    traffic: Traffic,
    latencyTarget: number | undefined,
    slots: BatchSlots = { concurrency: 1, efficiency: 0 },
  ) {
    this.#cost = cost;
    this.#traffic = traffic;
    this.latencyTarget = latencyTarget;
    this.#slots = slots;
  }

  /**
   * Rows a batch needs so that batches run back to back keep up with `lambda`; Infinity when none
   * can. Slots that run batches side by side each need to keep up with their share of it.
   */
  stableRows(lambda: number): number {
    const perSlot = lambda / this.#parallel();
    const headroom = AdaptivePolicy.TARGET_UTILISATION - this.#cost.b * perSlot;
    return headroom <= 0 ? Number.POSITIVE_INFINITY : (this.#cost.a * perSlot) / headroom;
  }

  decide(lane: LaneView, now: number, _trigger: PumpTrigger, running: number): DispatchReason | number {
    const cost = this.#cost;
    // Until the curve is known, behave like maxDelay 0: never make anyone wait on a guess.
    if (!cost.confident) return 'adaptive';
    const lambda = this.#traffic.rowsPerMs(now);
    if (lambda <= 0) return 'adaptive';
    // Batches hold whole rows: rounding the bound down keeps a 1.4-row bound from holding a lone
    // caller back for a second one; the 10 % headroom in ρ absorbs the difference.
    let target = Math.min(Math.floor(this.stableRows(lambda)), lane.maxRows);
    // Under a closed loop the bound can ask for more rows than the loop holds (λ is its own, read at the
    // peak of a cohort's burst). With no batch running, the only callers still to come are those the
    // settled batches owe: waiting for more would idle the handler for nobody. (With a batch running,
    // its callers come back once it settles, and merging with them is left to the bound: running
    // batches at once is not free where they share cores, as two ONNX sessions on 2 cores do.)
    const loopRows = running === 0 ? this.#traffic.loopRowsDue(now) : undefined;
    if (loopRows !== undefined) target = Math.min(target, lane.rows + loopRows);
    const gathered = lane.rows >= target;
    let deadline = gathered ? now : lane.oldestArrival + Math.max(cost.a, target / lambda);
    let rowsAtDeadline = target;
    const cohortDue = this.#traffic.cohortDue(now);
    if (cohortDue !== undefined && cohortDue > deadline) {
      deadline = cohortDue;
      // Priced at a full batch, which a merged cohort may be: the latency cap errs on the short side.
      rowsAtDeadline = lane.maxRows;
    }
    if (this.latencyTarget !== undefined) {
      deadline = Math.min(deadline, lane.oldestArrival + this.latencyTarget - cost.predict(rowsAtDeadline));
    }
    if (now >= deadline) return 'adaptive';
    // Look again when the next caller is due, or at the cap, whichever is first. Returning callers
    // wake the pump as they arrive.
    return gathered ? deadline : Math.min(deadline, now + 1 / lambda);
  }

  /** How many batches' worth of work the batch slots do at once. */
  #parallel(): number {
    const slots = this.#slots;
    return 1 + Math.max(0, slots.concurrency - 1) * slots.efficiency;
  }
}
