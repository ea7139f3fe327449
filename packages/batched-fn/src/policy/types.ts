import type { DispatchReason } from '../stats.js';

/** What woke the dispatcher: a new call, the delay timer, or a batch finishing. */
export type PumpTrigger = 'arrival' | 'timer' | 'completion';

/**
 * Decides WHEN a batch that is not yet full leaves the queue. The batcher has
 * already handled "full" and "closing"; a policy only weighs waiting.
 */
export interface SchedulingPolicy {
  /**
   * Returns the reason to dispatch now, or the clock time (ms) at which it
   * should be asked again if nothing else happens first.
   */
  decide(oldestArrival: number, now: number, trigger: PumpTrigger): DispatchReason | number;
}
