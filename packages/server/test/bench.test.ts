import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { bench, type RunningServer, startServer } from '@batched-fn/server';
import { TEST_CACHE } from './helpers.js';
import { scratchDir } from './scratch.js';

let server: RunningServer;
beforeAll(async () => {
  server = await startServer({ port: 0, grpcPort: 0, cacheDir: TEST_CACHE });
});
afterAll(async () => server?.close());

test('bench sweeps concurrency, reads the mean batch from /metrics, and writes a chart', async () => {
  const out = scratchDir('batched-fn-bench-');
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

test.each(['binary', 'grpc'] as const)(
  'bench --%s drives the same model over that protocol: no errors, the server counts them under their protocol',
  async (protocol) => {
    const before = await (await fetch(`${server.url}/metrics`)).text();
    const [series] = await bench({
      url: server.url,
      model: 'mlp',
      concurrency: [4],
      duration: 1,
      rows: 2,
      protocol,
      grpcUrl: server.grpcUrl,
    });
    const result = series?.results[0];
    expect(result?.requestsPerSecond).toBeGreaterThan(0);
    expect((result?.errors ?? 1) + (result?.non2xx ?? 1)).toBe(0);
    expect(result?.meanBatch).toBeGreaterThanOrEqual(2);
    const label = protocol === 'grpc' ? 'grpc' : 'rest';
    const count = (text: string) =>
      Number(
        new RegExp(`batched_fn_requests_total\\{model="mlp",protocol="${label}",status="200"\\} (\\d+)`).exec(
          text,
        )?.[1] ?? 0,
      );
    const after = await (await fetch(`${server.url}/metrics`)).text();
    expect(count(after) - count(before)).toBeGreaterThan(0);
  },
);
