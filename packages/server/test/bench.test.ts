import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { bench, type RunningServer, startServer } from '@batched-fn/server';
import { ceilingLine } from '../src/cli/bench/command.js';
import { generatorCeiling, startCpuMeter } from '../src/cli/bench/generator-cpu.js';
import { TEST_CACHE } from './helpers.js';
import { scratchDir } from './scratch.js';

let server: RunningServer;
beforeAll(async () => {
  server = await startServer({ port: 0, grpcPort: 0, cacheDir: TEST_CACHE });
});
afterAll(async () => server?.close());

test('bench sweeps concurrency, reads the mean batch from /metrics, and writes a chart', async () => {
  const out = scratchDir('batched-fn-bench-');
  const printed: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array) => printed.push(String(chunk)) > 0) as never;
  const [series] = await bench({
    url: server.url,
    model: 'mlp',
    concurrency: [1, 8],
    duration: 1,
    rows: 1,
    out,
  }).finally(() => {
    process.stdout.write = write;
  });
  expect(series?.results.map((r) => r.concurrency)).toEqual([1, 8]);
  for (const r of series?.results ?? []) {
    expect(r.requestsPerSecond).toBeGreaterThan(0);
    expect(r.errors + r.non2xx).toBe(0);
    expect(r.p99).toBeGreaterThanOrEqual(r.p50);
    // The generator's own thread did work for its requests, and at most one core's worth (10 ms ticks of slack).
    expect(r.generatorCpu).toBeGreaterThan(0);
    expect(r.generatorCpu).toBeLessThan(1.05);
  }
  // The table is followed by the generator's ceiling, so that a figure near it is not read as the server's.
  const ceiling = generatorCeiling(series?.results ?? []) as number;
  expect(ceiling).toBeGreaterThanOrEqual(Math.max(...(series?.results ?? []).map((r) => r.requestsPerSecond)) * 0.95);
  expect(printed.join('')).toContain(`load generator ceiling ≈ ${Math.round(ceiling)} req/s (autocannon on one thread`);
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

test("the generator's ceiling: the highest of the runs' rates over their shares of one core, and the rows near it named", () => {
  const row = (concurrency: number, requestsPerSecond: number, generatorCpu: number) => ({
    concurrency,
    requestsPerSecond,
    p50: 1,
    p90: 1,
    p99: 1,
    errors: 0,
    non2xx: 0,
    meanBatch: 1,
    generatorCpu,
  });
  const results = [row(1, 500, 0.1), row(64, 8000, 0.8), row(128, 8800, 0.88)];
  expect(generatorCeiling(results)).toBeCloseTo(10_000, 6);
  expect(ceilingLine(results, 'binary')).toBe(
    "load generator ceiling ≈ 10000 req/s (autocannon on one thread, 100 µs of CPU per request): figures near it are the generator's, use wrk or h2load; at 64, 128 clients it was 80 % busy or more, so those rows measure it",
  );
  expect(ceilingLine([row(8, 100, 0.02)], 'grpc')).toBe(
    "load generator ceiling ≈ 5000 req/s (the pre-serialized HTTP/2 client on one thread, 200 µs of CPU per request): figures near it are the generator's, use h2load or ghz",
  );
  // A reading above one core (tick rounding) is taken as one core; no CPU read, no ceiling claimed.
  expect(generatorCeiling([row(8, 900, 1.02)])).toBe(900);
  expect(generatorCeiling([row(8, 900, 0)])).toBeUndefined();
  // The busiest run is not always the cheapest per request: on a loaded machine one client kept the thread
  // 94 % busy for 400 req/s while eight reached 555 at 90 %. The ceiling is never below a rate reached.
  expect(generatorCeiling([row(1, 400, 0.94), row(8, 555, 0.9)])).toBeCloseTo(555 / 0.9, 6);
  expect(ceilingLine([row(8, 900, 0)], 'json')).toBe('load generator ceiling: not measured (no CPU time was read)');
});

test('the CPU meter reads this thread: busy while it spins, all but idle while it sleeps', async () => {
  // Wide margins: on a loaded machine a spinning thread gets a fraction of a core, and /proc counts 10 ms ticks.
  const spinning = startCpuMeter();
  const until = performance.now() + 400;
  while (performance.now() < until);
  expect(spinning()).toBeGreaterThan(0.15);
  const sleeping = startCpuMeter();
  await new Promise((resolve) => setTimeout(resolve, 400));
  expect(sleeping()).toBeLessThan(0.1);
});
