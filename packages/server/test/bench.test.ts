import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { bench, type RunningServer, startServer } from '@batched-fn/server';
import { TEST_CACHE } from './helpers.js';

let server: RunningServer;
beforeAll(async () => {
  server = await startServer({ port: 0, cacheDir: TEST_CACHE });
});
afterAll(async () => server?.close());

test('bench sweeps concurrency, reads the mean batch from /metrics, and writes a chart', async () => {
  const out = mkdtempSync(join(tmpdir(), 'batched-fn-bench-'));
  const [series] = await bench({ url: server.url, model: 'mlp', concurrency: [1, 8], duration: 1, rows: 1, out });
  expect(series?.results.map((r) => r.concurrency)).toEqual([1, 8]);
  for (const r of series?.results ?? []) {
    expect(r.requestsPerSecond).toBeGreaterThan(0);
    expect(r.errors + r.non2xx).toBe(0);
    expect(r.p99).toBeGreaterThanOrEqual(r.p50);
  }
  expect(series?.results[0]?.meanBatch).toBeCloseTo(1, 1);
  expect(series?.results[1]?.meanBatch).toBeGreaterThan(1);
  const svg = readFileSync(join(out, 'bench.svg'), 'utf8');
  expect(svg).toMatch(/^<svg /);
  expect(svg.match(/<polyline /g)).toHaveLength(2);
  expect(JSON.parse(readFileSync(join(out, 'bench.json'), 'utf8'))[0].label).toBe(server.url);
});
