import {
  type BatchedFnStats,
  DISPATCH_REASONS,
  type DispatchReason,
  type Percentiles,
  type WorkerStats,
} from './stats.js';

/**
 * Fixed-size ring of recent samples. Recording is one store; percentiles are
 * computed only when someone reads `stats`, so the hot path stays flat.
 */
export class SampleWindow {
  readonly #samples = new Float64Array(4096);
  readonly #mask = 4095;
  #next = 0;
  #count = 0;

  record(value: number): void {
    this.#samples[this.#next] = value;
    this.#next = (this.#next + 1) & this.#mask;
    if (this.#count < 4096) this.#count++;
  }

  /**
   * `count` samples of one value, as `count` calls of `record` would leave the window. The calls of
   * one batch usually arrived in the same tick and waited alike: one fill instead of a call each.
   */
  recordMany(value: number, count: number): void {
    const n = Math.min(count, 4096);
    const start = this.#next;
    const end = start + n;
    if (end <= 4096) this.#samples.fill(value, start, end);
    else {
      this.#samples.fill(value, start, 4096);
      this.#samples.fill(value, 0, end - 4096);
    }
    this.#next = end & this.#mask;
    this.#count = Math.min(4096, this.#count + n);
  }

  summary(): Percentiles {
    const n = this.#count;
    if (n === 0) return { count: 0, mean: 0, p50: 0, p90: 0, p99: 0, max: 0 };
    const sorted = this.#samples.slice(0, n).sort();
    let sum = 0;
    for (let i = 0; i < n; i++) sum += sorted[i] as number;
    const at = (q: number): number => sorted[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))] as number;
    return { count: n, mean: sum / n, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: sorted[n - 1] as number };
  }
}

export interface LiveFigures {
  costModel: BatchedFnStats['costModel'];
  queued: number;
  queuedRows: number;
  inFlight: number;
  inFlightItems: number;
  workers: WorkerStats[];
}

/**
 * Counters and sample windows behind `predict.stats`. The engine changes them only through its
 * methods; the counters stay plain fields because adapters (the Redis frontend) read them.
 */
export class StatsRecorder {
  calls = 0;
  completed = 0;
  failed = 0;
  batches = 0;
  readonly failures: Record<string, number> = {};
  readonly reasons: Record<DispatchReason, number> = Object.fromEntries(DISPATCH_REASONS.map((r) => [r, 0])) as Record<
    DispatchReason,
    number
  >;
  readonly batchSize = new SampleWindow();
  readonly wait = new SampleWindow();
  readonly exec = new SampleWindow();

  /** A call was made (and counted whatever becomes of it). */
  called(): void {
    this.calls++;
  }

  /** `count` calls resolved with an output. */
  succeeded(count: number): void {
    this.completed += count;
  }

  fail(key: string): void {
    this.failed++;
    this.failures[key] = (this.failures[key] ?? 0) + 1;
  }

  dispatched(reason: DispatchReason): void {
    this.reasons[reason]++;
  }

  recordBatch(rows: number, execMs: number): void {
    this.batches++;
    this.batchSize.record(rows);
    this.exec.record(execMs);
  }

  snapshot(live: LiveFigures): BatchedFnStats {
    return {
      ...live,
      calls: this.calls,
      completed: this.completed,
      failed: this.failed,
      failures: { ...this.failures },
      batches: this.batches,
      dispatchReasons: { ...this.reasons },
      batchSize: this.batchSize.summary(),
      waitMs: this.wait.summary(),
      execMs: this.exec.summary(),
    };
  }
}
