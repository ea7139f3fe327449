import { SampleWindow } from '../stats-recorder.js';
import type { Percentiles } from '../stats.js';
import type { EndReason } from './sequence.js';

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
