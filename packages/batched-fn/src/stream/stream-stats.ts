import { SampleWindow } from '../stats-recorder.js';
import type { Percentiles } from '../stats.js';
import type { FailureKey } from '../errors.js';

/** How a sequence ended, for `stats.ended`. */
export type EndReason = 'done' | 'error' | 'aborted' | 'timeout';

/** How a failure key reads in `stats.ended`: the two cancel keys by name, anything else as an error. */
export function endReasonOf(key: FailureKey): EndReason {
  return key === 'aborted' ? 'aborted' : key === 'ERR_TIMEOUT' ? 'timeout' : 'error';
}

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

/** The counters behind a batched stream's `stats`; sequences and groups report here through its methods. */
export class StreamStats {
  #calls = 0;
  #steps = 0;
  #values = 0;
  /** Queue waits before joining a group, recorded by the engine's pump. */
  readonly wait = new SampleWindow();
  readonly #stepSize = new SampleWindow();
  readonly #stepMs = new SampleWindow();
  readonly #ttfv = new SampleWindow();
  readonly #ended: Record<EndReason, number> = { done: 0, error: 0, aborted: 0, timeout: 0 };
  readonly #since = performance.now();

  /** A call was made (whatever becomes of it). */
  called(): void {
    this.#calls++;
  }

  /** A call was refused or failed, under its failure key. */
  fail(key: string): void {
    this.ended(endReasonOf(key as FailureKey));
  }

  step(size: number, ms: number): void {
    this.#steps++;
    this.#stepSize.record(size);
    this.#stepMs.record(ms);
  }

  /** A value was handed to a stream. */
  value(): void {
    this.#values++;
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
      calls: this.#calls,
      steps: this.#steps,
      values: this.#values,
      valuesPerSecond: seconds > 0 ? this.#values / seconds : 0,
      stepSize: this.#stepSize.summary(),
      stepMs: this.#stepMs.summary(),
      timeToFirstValueMs: this.#ttfv.summary(),
      waitMs: this.wait.summary(),
      ended: { ...this.#ended },
      workerStates,
    };
  }
}
