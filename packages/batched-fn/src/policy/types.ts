import type { DispatchReason } from '../stats.js';

/** What woke the pump: a new call, the delay timer, or a batch finishing. */
export type PumpTrigger = 'arrival' | 'timer' | 'completion';

/** What a policy may look at: one lane of the queue (all of it, without batch keys). */
export interface LaneView {
  /** Rows queued in the lane. */
  readonly rows: number;
  /** Arrival time of its oldest queued call. */
  readonly oldestArrival: number;
  /** Most rows the next batch may hold (maxBatchSize). */
  readonly maxRows: number;
}

/**
 * Decides WHEN a batch that is not yet full leaves the queue. The engine has
 * already handled "full" and "closing"; a policy only weighs waiting.
 */
export interface SchedulingPolicy {
  /**
   * Returns the reason to dispatch now, or the clock time (ms) at which it
   * should be asked again if nothing else happens first. `running` is how many
   * batches are running (a slot is free whenever the policy is asked).
   */
  decide(lane: LaneView, now: number, trigger: PumpTrigger, running: number): DispatchReason | number;
}

/** The batch slots a policy plans for: how many there are, and how much two of them gain over one. */
export interface BatchSlots {
  /** Batches that may run at once (`concurrency`). */
  readonly concurrency: number;
  /** Overlap.efficiency: 1 when batches running at once do not slow each other, 0 when they share one device. */
  readonly efficiency: number;
}
