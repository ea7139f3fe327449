import type { PumpTrigger, SchedulingPolicy } from '../policy/types.js';
import type { DispatchReason } from '../stats.js';
import type { Lane } from './lane.js';

/** A lane goes now: why, and how many rows it may take. */
export interface Go<I, O> {
  readonly go: true;
  readonly lane: Lane<I, O>;
  readonly reason: DispatchReason;
  readonly maxRows: number;
}

/** Nothing goes now; look again at clock time `until`, unless something happens first. */
export interface Wait {
  readonly go: false;
  readonly until: number;
}

export type Verdict<I, O> = Go<I, O> | Wait;

/** What the rules read: the engine's live settings, as they are now. */
export interface Rules {
  readonly maxBatchSize: number;
  readonly preferred: readonly number[] | undefined;
  readonly policy: SchedulingPolicy;
}

const go = <I, O>(lane: Lane<I, O>, reason: DispatchReason, maxRows: number): Go<I, O> => ({
  go: true,
  lane,
  reason,
  maxRows,
});

/**
 * Whether one lane should be sent now, and why. A pure reading of the lane and the rules: it
 * changes nothing (the policy reads the lane's maxRows, which is the live maxBatchSize).
 */
export function judge<I, O>(
  lane: Lane<I, O>,
  t: number,
  trigger: PumpTrigger,
  rules: Rules,
  closing: boolean,
  running: number,
): Verdict<I, O> {
  const max = rules.maxBatchSize;
  // FIFO packing: once the queued rows reach the limit, the head batch cannot grow by waiting.
  if (lane.rows >= max) return go(lane, 'full', max);
  if (closing) return go(lane, 'close', max);
  const preferred = rules.preferred;
  if (preferred !== undefined && lane.rows >= (preferred[0] as number)) {
    // The largest preferred size the queue can fill that the head call fits in. A size smaller
    // than the head would take nothing: that decision, repeated, used to spin a core forever.
    const head = lane.headRows();
    let target = 0;
    for (const size of preferred) if (size <= lane.rows && size >= head) target = size;
    if (target > 0) return go(lane, 'preferred', target);
  }
  const decision = rules.policy.decide(lane, t, trigger, running);
  return typeof decision === 'number' ? { go: false, until: decision } : go(lane, decision, max);
}

/**
 * With batch keys: of the lanes ready to go, the one holding the most
 * urgent call (highest priority, then oldest) goes first; with none ready,
 * wait until the first one will be. With `affinity`, a lane whose worker is
 * busy is passed over (`canRun`): the end of that worker's batch pumps again.
 */
export function choose<I, O>(
  lanes: Iterable<Lane<I, O>>,
  t: number,
  trigger: PumpTrigger,
  rules: Rules,
  closing: boolean,
  running: number,
  canRun?: (worker: number) => boolean,
): Verdict<I, O> {
  let best: Go<I, O> | undefined;
  let bestPriority = Number.NEGATIVE_INFINITY;
  let bestArrival = Number.POSITIVE_INFINITY;
  let wake = Number.POSITIVE_INFINITY;
  for (const lane of lanes) {
    if (lane.items === 0) continue;
    if (canRun !== undefined && lane.worker !== undefined && !canRun(lane.worker)) continue;
    const verdict = judge(lane, t, trigger, rules, closing, running);
    if (!verdict.go) {
      if (verdict.until < wake) wake = verdict.until;
      continue;
    }
    const priority = lane.topPriority;
    const arrival = lane.oldestArrival;
    if (priority > bestPriority || (priority === bestPriority && arrival < bestArrival)) {
      best = verdict;
      bestPriority = priority;
      bestArrival = arrival;
    }
  }
  return best ?? { go: false, until: wake };
}
