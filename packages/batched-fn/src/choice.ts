import type { Lane } from './lane.js';
import type { PumpTrigger, SchedulingPolicy } from './policy/types.js';
import type { DispatchReason } from './stats.js';

/** Which lane goes next, why, and how many rows it may take. */
export interface Choice<I, O> {
  lane: Lane<I, O>;
  reason: DispatchReason;
  maxRows: number;
}

/** What the rules read; the dispatcher's live settings. */
export interface ChoiceRules {
  readonly maxBatchSize: number;
  readonly closing: boolean;
  readonly preferred: readonly number[] | undefined;
  readonly policy: SchedulingPolicy;
}

/** Whether one lane should be sent now (and why), or the clock time to look at it again. */
export function judge<I, O>(lane: Lane<I, O>, t: number, trigger: PumpTrigger, rules: ChoiceRules): Choice<I, O> | number {
  const max = rules.maxBatchSize;
  // FIFO packing: once the queued rows reach the limit, the head batch cannot grow by waiting.
  if (lane.rows >= max) return { lane, reason: 'full', maxRows: max };
  if (rules.closing) return { lane, reason: 'close', maxRows: max };
  const preferred = rules.preferred;
  if (preferred !== undefined && lane.rows >= (preferred[0] as number)) {
    // The largest preferred size the queue can fill that the head call fits in. A size smaller
    // than the head would take nothing: that decision, repeated, used to spin a core forever.
    const head = lane.headQueue()?.headRows() ?? 0;
    let target = 0;
    for (const size of preferred) if (size <= lane.rows && size >= head) target = size;
    if (target > 0) return { lane, reason: 'preferred', maxRows: target };
  }
  lane.maxRows = max;
  const decision = rules.policy.decide(lane, t, trigger);
  return typeof decision === 'number' ? decision : { lane, reason: decision, maxRows: max };
}

/**
 * With batch keys: of the lanes ready to go, the one holding the most
 * urgent call (highest priority, then oldest) goes first; with none ready,
 * the time the first one will be.
 */
export function choose<I, O>(lanes: Iterable<Lane<I, O>>, t: number, trigger: PumpTrigger, rules: ChoiceRules): Choice<I, O> | number {
  let best: Choice<I, O> | undefined;
  let bestPriority = Number.NEGATIVE_INFINITY;
  let bestArrival = Number.POSITIVE_INFINITY;
  let wake = Number.POSITIVE_INFINITY;
  for (const lane of lanes) {
    if (lane.items === 0) continue;
    const judged = judge(lane, t, trigger, rules);
    if (typeof judged === 'number') {
      if (judged < wake) wake = judged;
      continue;
    }
    const priority = lane.topPriority;
    const arrival = lane.oldestArrival;
    if (priority > bestPriority || (priority === bestPriority && arrival < bestArrival)) {
      best = judged;
      bestPriority = priority;
      bestArrival = arrival;
    }
  }
  return best ?? wake;
}
