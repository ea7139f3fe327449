import { SampleWindow } from '../stats-recorder.js';
import type { Percentiles } from '../stats.js';
import type { EndReason, Sequence } from './sequence.js';
import { newSlot, readSlot } from './step-output.js';

/** A plain snapshot of a batched stream. */
export interface BatchedStreamStats {
  /** Sequences in running groups. */
  active: number;
  /** Sequences waiting to join. */
  waiting: number;
  calls: number;
  steps: number;
  /** Values emitted to streams. */
  values: number;
  /** Values per second since the first call. */
  valuesPerSecond: number;
  /** Sequences per step over the recent window. */
  stepSize: Percentiles;
  stepMs: Percentiles;
  /** From the call to its first value, in ms. */
  timeToFirstValueMs: Percentiles;
  /** Queue wait before joining a group, in ms. */
  waitMs: Percentiles;
  /** Why sequences ended. */
  ended: Record<EndReason, number>;
  /**
   * Worker mode: sequence states the worker threads hold, as each last reported (0 inline). Once
   * every stream has ended it falls back to 0: the states of finished, failed and cancelled
   * sequences are freed.
   */
  workerStates: number;
}

export class StreamStats {
  calls = 0;
  steps = 0;
  values = 0;
  readonly wait = new SampleWindow();
  readonly #stepSize = new SampleWindow();
  readonly #stepMs = new SampleWindow();
  readonly #ttfv = new SampleWindow();
  readonly #ended: Record<EndReason, number> = { done: 0, error: 0, aborted: 0, timeout: 0 };
  readonly #since = performance.now();

  step(size: number, ms: number): void {
    this.steps++;
    this.#stepSize.record(size);
    this.#stepMs.record(ms);
  }

  firstValue(ms: number): void {
    this.#ttfv.record(ms);
  }

  ended(reason: EndReason): void {
    this.#ended[reason]++;
  }

  snapshot(active: number, waiting: number, workerStates: number): BatchedStreamStats {
    const seconds = (performance.now() - this.#since) / 1000;
    return {
      active,
      waiting,
      calls: this.calls,
      steps: this.steps,
      values: this.values,
      valuesPerSecond: seconds > 0 ? this.values / seconds : 0,
      stepSize: this.#stepSize.summary(),
      stepMs: this.#stepMs.summary(),
      timeToFirstValueMs: this.#ttfv.summary(),
      waitMs: this.wait.summary(),
      ended: { ...this.#ended },
      workerStates,
    };
  }
}

/**
 * Hands one step's outputs to their streams: a value, the end, or an error ending that stream
 * alone. A malformed slot (see readSlot) is that stream's error, never an exception here.
 */
export function deliver<I, S, T>(members: readonly Sequence<I, S, T>[], outputs: readonly unknown[], stats: StreamStats): void {
  const slot = newSlot();
  for (let i = 0; i < members.length; i++) {
    const s = members[i] as Sequence<I, S, T>;
    if (s.ended) continue; // cancelled during the step: its output is dropped
    readSlot(outputs, i, slot);
    if (slot.failed) {
      if (s.end(slot.error, true)) stats.ended('error');
      continue;
    }
    if (slot.hasValue) {
      if (s.firstValueAt === 0) stats.firstValue(performance.now() - s.created);
      s.push(slot.value as T);
      stats.values++;
    }
    if (slot.done && s.end()) stats.ended('done');
  }
}
