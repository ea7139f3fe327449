import { expect, test } from 'vitest';
import { renderChart } from '../src/cli/bench/chart.js';
import type { LoadResult } from '../src/cli/bench/load.js';

const result = (concurrency: number, requestsPerSecond: number): LoadResult =>
  ({ concurrency, requestsPerSecond, p50: 1, p99: 2, errors: 0 }) as unknown as LoadResult;

test("the demo's chart draws the model's own ceiling, on a scale that holds it", () => {
  const series = [
    { label: 'batched', results: [result(1, 100), result(64, 900)] },
    { label: 'unbatched', results: [result(1, 90), result(64, 150)] },
  ];
  const svg = renderChart(series, 'demo', [{ label: 'model ceiling 1200 rows/s', requestsPerSecond: 1200 }]);
  // One dashed line across the throughput panel, at 1200 on an axis of 0 to 1500 (the series alone reach 900: 0 to 1000).
  const dashed = [...svg.matchAll(/<line x1="70" y1="([\d.]+)" x2="430" y2="\1" stroke="#555" stroke-dasharray/g)];
  expect(dashed).toHaveLength(1);
  expect(Number(dashed[0]?.[1])).toBe(120); // 250 px tall from y 70: 1200 of 1500 is 200 px up
  expect(svg).toContain('>model ceiling 1200 rows/s</text>');
  expect(svg).toContain('>1500</text>');
  expect(renderChart(series, 'bench')).not.toContain('>1500</text>');
  // Without ceilings: no dashed line, as bench draws it.
  expect(renderChart(series, 'bench')).not.toContain('stroke-dasharray');
});
