import { SampleWindow } from '../stats-recorder.js';
import type { Percentiles } from '../stats.js';
import type { EndReason, Sequence } from './sequence.js';
import type { StepOutput } from './stream-options.js';

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

  snapshot(active: number, waiting: number): BatchedStreamStats {
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
    };
  }
}

/** Hands one step's outputs to their streams: a value, the end, or an error ending that stream alone. */
export function deliver<I, S, T>(members: readonly Sequence<I, S, T>[], outputs: readonly StepOutput<T>[], stats: StreamStats): void {
  members.forEach((s, i) => {
    if (s.ended) return; // cancelled during the step: its output is dropped
    const output = outputs[i];
    if (output instanceof Error) {
      if (s.end(output)) stats.ended('error');
      return;
    }
    if (output !== undefined && output !== null && 'value' in output) {
      if (s.firstValueAt === 0) stats.firstValue(performance.now() - s.created);
      s.push(output.value as T);
      stats.values++;
    }
    if (output?.done === true && s.end()) stats.ended('done');
  });
}
