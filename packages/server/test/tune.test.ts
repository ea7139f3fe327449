import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, test } from 'vitest';
import { bench, ensureMlpModel } from '@batched-fn/server';
import { bestWithin, paretoFront, tableRows } from '../src/cli/tune/report.js';
import { candidateRepository } from '../src/cli/tune/server-process.js';
import {
  coarseGrid,
  defaultCandidate,
  keyOf,
  neighbours,
  serveFlags,
  spareCoreTopologies,
} from '../src/cli/tune/space.js';
import { agree, isStable, measurePoint, type Point, type Window } from '../src/cli/tune/stability.js';
import { killRunning, run } from './cli-run.js';
import { TEST_CACHE } from './helpers.js';
import { scratchDir } from './scratch.js';

afterEach(killRunning);

const w = (throughput: number, p99: number): Window => ({ throughput, p50: p99 / 2, p99, errors: 0, meanBatch: 4 });

test('stability: three consecutive windows within 10 % of their mean on throughput and on p99', () => {
  expect(isStable([w(100, 10), w(105, 10.5)])).toBe(false); // too few
  expect(isStable([w(100, 10), w(105, 10.5), w(96, 9.6)])).toBe(true);
  expect(isStable([w(100, 10), w(130, 10), w(100, 10)])).toBe(false); // throughput 130 is 18 % above the mean
  expect(isStable([w(100, 10), w(100, 13), w(100, 10)])).toBe(false); // p99 disagrees
  expect(isStable([w(50, 40), w(100, 10), w(104, 10.2), w(98, 9.9)])).toBe(true); // only the last three count
  expect(agree([0, 0, 0], 0.1)).toBe(true);
  expect(agree([0, 0, 1], 0.1)).toBe(false);
});

test('measurePoint re-measures until stable, reports the last three windows, and marks a point unstable at the limit', async () => {
  const settling = [w(50, 40), w(80, 20), w(100, 10), w(102, 10), w(99, 10.3), w(500, 1)];
  let i = 0;
  const stable = await measurePoint(8, async () => settling[i++] as Window, 6);
  expect(stable.windows).toHaveLength(5);
  expect(stable.stable).toBe(true);
  expect(stable.throughput).toBeCloseTo((100 + 102 + 99) / 3, 6);
  let n = 0;
  const noisy = await measurePoint(8, async () => w(n++ % 2 === 0 ? 100 : 150, 10), 6);
  expect(noisy).toMatchObject({ stable: false });
  expect(noisy.windows).toHaveLength(6);
});

test('the best point within the budget prefers stable points; the Pareto front keeps only undominated points', () => {
  const p = (throughput: number, p99: number, stable = true): Point => ({
    concurrency: 1,
    throughput,
    p50: 1,
    p99,
    meanBatch: 1,
    errors: 0,
    stable,
    windows: [],
  });
  expect(bestWithin([p(100, 10), p(200, 60), p(150, 40, false), p(120, 45)], 50)).toMatchObject({ throughput: 120 });
  expect(bestWithin([p(150, 40, false)], 50)).toMatchObject({ throughput: 150 });
  expect(bestWithin([p(200, 60)], 50)).toBeUndefined();
  expect(paretoFront([p(100, 10), p(90, 20), p(200, 30), p(150, 30)]).map((q) => q.throughput)).toEqual([100, 200]);
});

test("the table's `stable` is the shown point's, as tune.json and the chart give it: one noisy concurrency does not mark the pick unstable", () => {
  const point = (concurrency: number, throughput: number, p99: number, stable: boolean): Point => ({
    concurrency,
    throughput,
    p50: 1,
    p99,
    meanBatch: 1,
    errors: 0,
    stable,
    windows: [],
  });
  const candidate = { maxBatchSize: 16, maxDelay: 'auto' as const, workers: 1, threads: 2, preferred: false };
  // Stable where it is best within the budget (64 clients), noisy at 1 client.
  const points = [point(1, 50, 5, false), point(64, 900, 40, true)];
  const best = bestWithin(points, 50);
  const [row] = tableRows([{ candidate, key: keyOf(candidate), points, best, seconds: 1 }], keyOf(candidate));
  expect(row).toMatchObject({ concurrency: 64, 'req/s': 900, stable: 'yes' });
  expect(best?.stable).toBe(true);
  const [noisy] = tableRows(
    [{ candidate, key: 'x', points: [point(64, 900, 40, false)], best: undefined, seconds: 1 }],
    'y',
  );
  expect(noisy).toMatchObject({ stable: 'no' });
});

test('the search space: the defaults are in the coarse grid, splits fit the cores, neighbours move one axis', () => {
  const grid = coarseGrid(2);
  // The server's defaults: one session, a thread per core.
  expect([1, 2, 4, 16].map((cores) => keyOf(defaultCandidate(cores)))).toEqual([
    'b64-dauto-w1x1',
    'b64-dauto-w1x2',
    'b64-dauto-w1x4',
    'b64-dauto-w1x16',
  ]);
  expect(grid.map(keyOf)).toContain(keyOf(defaultCandidate(2)));
  expect(coarseGrid(4).map(keyOf)).toContain(keyOf(defaultCandidate(4)));
  // Splits leaving one core to the main thread are neighbours only: the coarse grid keeps to full splits.
  expect(spareCoreTopologies(2)).toEqual([{ workers: 1, threads: 1 }]);
  expect(spareCoreTopologies(4)).toEqual([
    { workers: 1, threads: 3 },
    { workers: 2, threads: 1 },
  ]);
  expect(grid.map(keyOf)).not.toContain('b64-dauto-w1x1');
  expect(grid.every((c) => c.workers * c.threads <= 2)).toBe(true);
  expect(new Set(grid.map(keyOf)).size).toBe(grid.length);
  const around = neighbours({ maxBatchSize: 16, maxDelay: 'auto', workers: 1, threads: 2, preferred: false }, 2).map(
    keyOf,
  );
  expect(around).toEqual([
    'b8-dauto-w1x2',
    'b32-dauto-w1x2',
    'b16-d0-w1x2',
    'b16-dauto-w2x1',
    'b16-dauto-w1x1',
    'b16-dauto-w1x2-p',
  ]);
  expect(serveFlags({ maxBatchSize: 16, maxDelay: 2, workers: 2, threads: 1, preferred: true })).toEqual([
    '--max-batch-size',
    '16',
    '--max-delay',
    '2',
    '--workers',
    '2',
    '--threads',
    '1',
    '--preferred-batch-sizes',
    '8,16',
  ]);
});

test('a short sweep on the tiny model ends with a recommendation whose own measurement, served again, is within the budget', async () => {
  const model = ensureMlpModel({ inputs: 256, hidden: [], classes: 16, seed: 1 }, TEST_CACHE);
  const out = scratchDir('bfn-tune-');
  const bin = fileURLToPath(new URL('../bin/batched-fn.js', import.meta.url));
  const printed = execFileSync(
    process.execPath,
    [
      bin,
      'tune',
      '--model',
      model,
      '--latency-budget',
      // The rule under test is "the pick is within the budget, and so is its measurement served again", not
      // this machine's speed: a budget a loaded CI runner meets (50 ms failed at p99 77-83 ms under a full suite).
      '500',
      '--concurrency',
      '8',
      '--duration',
      '1',
      '--max-candidates',
      '3',
      '--max-windows',
      '4',
      '--out',
      out,
    ],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const summary = JSON.parse(readFileSync(join(out, 'tune.json'), 'utf8'));
  expect(summary.candidatesRun).toBe(3);
  expect(
    summary.candidates
      .flatMap((c: any) => c.points)
      .every((p: any) => p.windows.length >= 3 && p.throughput > 0 && p.p99 >= p.p50),
  ).toBe(true);
  const recommended = summary.candidates.find((c: any) => c.key === summary.recommended);
  expect(recommended.best.p99).toBeLessThanOrEqual(500);
  const svg = readFileSync(join(out, 'tune.svg'), 'utf8');
  expect(svg).toMatch(/^<svg /);
  expect(svg).toContain('Pareto front');
  expect(svg).toContain(`recommended: ${summary.recommended}`);
  const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
  expect(config).toEqual({
    maxBatchSize: recommended.candidate.maxBatchSize,
    maxDelay: recommended.candidate.maxDelay,
    workers: recommended.candidate.workers,
    threads: recommended.candidate.threads,
    ...(recommended.candidate.preferred ? { preferredBatchSizes: expect.any(Array) } : {}),
  });
  // The printed command serves the recommendation; a request to it is answered.
  const command = /batched-fn serve (--model .+)/.exec(printed)?.[1]?.split(' ') ?? [];
  expect(command).toEqual(['--model', model, ...serveFlags(recommended.candidate)]);
  const server = run(['serve', ...command, '--port', '0', '--no-grpc']);
  const [series] = await bench({
    url: await server.url,
    model: 'mlp-256-16-seed1-v1',
    concurrency: [8],
    duration: 1,
    rows: 1,
  });
  expect(series?.results[0]?.errors).toBe(0);
  expect(series?.results[0]?.p99).toBeLessThanOrEqual(500);
  rmSync(out, { recursive: true, force: true });
  // Three candidates of windows of 1 s each take about 20 s here on their own; a wide margin for a loaded machine.
}, 120_000);

test("a repository model is tuned in a temporary copy under each candidate's settings; the user's folder is left untouched", async () => {
  const { mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } = await import('node:fs');
  const repo = scratchDir('bfn-tune-repo-');
  mkdirSync(join(repo, 'tiny'));
  symlinkSync(
    ensureMlpModel({ inputs: 256, hidden: [], classes: 16, seed: 1 }, TEST_CACHE),
    join(repo, 'tiny', 'model.onnx'),
  );
  writeFileSync(join(repo, 'tiny', 'config.json'), JSON.stringify({ maxBatchSize: 2, queueCap: 5000 }));
  const out = scratchDir('bfn-tune-');
  const bin = fileURLToPath(new URL('../bin/batched-fn.js', import.meta.url));
  const printed = execFileSync(
    process.execPath,
    [
      bin,
      'tune',
      '--model-repository',
      repo,
      '--name',
      'tiny',
      '--latency-budget',
      // What is under test is the temporary copy, not this machine's speed: the tiny model's p99 at 4 clients
      // reached 53.7 ms under other test runs here, which failed a 50 ms budget (no pick, no command printed).
      '500',
      '--concurrency',
      '4',
      '--duration',
      '1',
      '--max-candidates',
      '1',
      '--max-windows',
      '3',
      '--out',
      out,
    ],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const summary = JSON.parse(readFileSync(join(out, 'tune.json'), 'utf8'));
  expect(summary.candidates[0].candidate.maxBatchSize).toBe(64);
  expect(summary.candidates[0].points[0].throughput).toBeGreaterThan(0);
  // What a candidate's copy holds: the model linked, and the candidate's settings over the folder's own.
  const copy = candidateRepository(
    { repository: repo, name: 'tiny' },
    { maxBatchSize: 16, maxDelay: 2, workers: 2, threads: 1, preferred: true },
  );
  expect(readdirSync(join(copy, 'tiny')).sort()).toEqual(['config.json', 'model.onnx']);
  expect(JSON.parse(readFileSync(join(copy, 'tiny', 'config.json'), 'utf8'))).toEqual({
    maxBatchSize: 16,
    queueCap: 5000,
    maxDelay: 2,
    workers: 2,
    threads: 1,
    preferredBatchSizes: [8, 16],
  });
  rmSync(copy, { recursive: true, force: true });
  expect(printed).toContain(`batched-fn serve --model-repository ${repo}`);
  // The user's repository is left as it was.
  expect(readdirSync(join(repo, 'tiny')).sort()).toEqual(['config.json', 'model.onnx']);
  expect(JSON.parse(readFileSync(join(repo, 'tiny', 'config.json'), 'utf8'))).toEqual({
    maxBatchSize: 2,
    queueCap: 5000,
  });
  rmSync(repo, { recursive: true, force: true });
  rmSync(out, { recursive: true, force: true });
}, 60_000);
