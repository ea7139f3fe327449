/**
 * perf_analyzer's stability rule, for `batched-fn tune`: a point counts once three consecutive
 * measurement windows agree within 10 % on both throughput and p99 latency. Until then it is
 * measured again, up to a limit; past it, it is reported and marked unstable.
 */
export interface Window {
  /** Requests answered per second in this window. */
  throughput: number;
  p50: number;
  p99: number;
  errors: number;
  /** Rows per batch on the server in this window; NaN when it reports none. */
  meanBatch: number;
}

export interface StabilityRule {
  /** Consecutive windows that must agree. @default 3 */
  windows: number;
  /** Largest relative distance of any of them from their mean. @default 0.1 */
  tolerance: number;
}

export const STABILITY: StabilityRule = Object.freeze({ windows: 3, tolerance: 0.1 });

const mean = (values: readonly number[]): number => values.reduce((a, b) => a + b, 0) / values.length;

/** Whether every value lies within `tolerance` of their mean (all zero counts as agreeing). */
export function agree(values: readonly number[], tolerance: number): boolean {
  const m = mean(values);
  if (m === 0) return values.every((v) => v === 0);
  return values.every((v) => Math.abs(v - m) <= tolerance * Math.abs(m));
}

/** True when the last `rule.windows` windows agree on throughput and on p99. */
export function isStable(windows: readonly Window[], rule: StabilityRule = STABILITY): boolean {
  if (windows.length < rule.windows) return false;
  const last = windows.slice(-rule.windows);
  return (
    agree(
      last.map((w) => w.throughput),
      rule.tolerance,
    ) &&
    agree(
      last.map((w) => w.p99),
      rule.tolerance,
    )
  );
}

export interface Point {
  concurrency: number;
  throughput: number;
  p50: number;
  p99: number;
  meanBatch: number;
  errors: number;
  stable: boolean;
  windows: Window[];
}

/**
 * Measures windows until the rule holds or `maxWindows` have run; the point's figures are the
 * means of the last `rule.windows` windows (all of them when fewer ran).
 */
export async function measurePoint(
  concurrency: number,
  measureWindow: () => Promise<Window>,
  maxWindows: number,
  rule: StabilityRule = STABILITY,
): Promise<Point> {
  const windows: Window[] = [];
  while (windows.length < maxWindows) {
    windows.push(await measureWindow());
    if (isStable(windows, rule)) break;
  }
  const last = windows.slice(-rule.windows);
  const batches = last.map((w) => w.meanBatch).filter((b) => !Number.isNaN(b));
  return {
    concurrency,
    throughput: mean(last.map((w) => w.throughput)),
    p50: mean(last.map((w) => w.p50)),
    p99: mean(last.map((w) => w.p99)),
    meanBatch: batches.length === 0 ? Number.NaN : mean(batches),
    errors: windows.reduce((sum, w) => sum + w.errors, 0),
    stable: isStable(windows, rule),
    windows,
  };
}
