import type { DispatchReason } from '../stats.js';
import type { LaneView, PumpTrigger, SchedulingPolicy } from './types.js';

/**
 * The original's policy, corrected: the window is counted from the oldest
 * queued item's ARRIVAL, not from when the pump dequeued it. An item that
 * waited behind a running batch is already old when the slot frees up, so it
 * goes at once instead of paying the window a second time.
 */
export class FixedDelayPolicy implements SchedulingPolicy {
  readonly maxDelay: number;

  constructor(maxDelay: number) {
    this.maxDelay = maxDelay;
  }

  decide(lane: LaneView, now: number, trigger: PumpTrigger, _running: number): DispatchReason | number {
    const due = lane.oldestArrival + this.maxDelay;
    if (now >= due) return trigger === 'completion' ? 'backlog' : 'delay';
    return due;
  }
}
