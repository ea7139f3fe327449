import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, expect, test } from 'vitest';
import { chromium } from 'playwright-core';
import { ensureMlpModel, type RunningServer, startServer } from '@batched-fn/server';
import { dashboardSnapshots, jsonRequest, postJson, TEST_CACHE, writeIntModel } from './helpers.js';

// The live dashboard: its page, its feed, and the page itself in a real browser (Debian's chromium).
let server: RunningServer | undefined;
const dirs: string[] = [];
afterEach(async () => {
  await server?.close();
  server = undefined;
});
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

const TINY = { inputs: 256, hidden: [], classes: 16, seed: 1 };
const row = jsonRequest(
  'input',
  [1, 256],
  'FP32',
  Array.from({ length: 256 }, (_, i) => (i % 5) / 5),
);

/** Closed-loop load from `clients` concurrent callers until `stop()`. */
function load(url: string, model: string, clients: number) {
  let running = true;
  const loops = Array.from({ length: clients }, async () => {
    while (running) await postJson(`${url}/v2/models/${model}/infer`, row);
  });
  return async () => {
    running = false;
    await Promise.all(loops);
  };
}

async function repositoryServer(): Promise<RunningServer> {
  const repo = mkdtempSync(join(tmpdir(), 'bfn-dash-'));
  dirs.push(repo);
  mkdirSync(join(repo, 'tiny'));
  symlinkSync(ensureMlpModel(TINY, TEST_CACHE), join(repo, 'tiny', 'model.onnx'));
  mkdirSync(join(repo, 'ints'));
  symlinkSync(writeIntModel(), join(repo, 'ints', 'model.onnx'));
  return startServer({ modelRepository: repo, port: 0, threads: 1 });
}

test('the page and its assets are served read-only, with a strict content security policy; --dashboard off removes them', async () => {
  server = await repositoryServer();
  const page = await fetch(`${server.url}/dashboard`);
  expect(page.status).toBe(200);
  expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
  expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
  const html = await page.text();
  expect(html).toContain('<script src="/dashboard/app.js" defer></script>');
  expect(html).not.toMatch(/https?:\/\//);
  expect((await fetch(`${server.url}/dashboard/app.js`)).headers.get('content-type')).toBe(
    'text/javascript; charset=utf-8',
  );
  const post = await fetch(`${server.url}/dashboard`, { method: 'POST' });
  expect([post.status, post.headers.get('allow')]).toEqual([405, 'GET, HEAD']);
  await server.close();
  server = await startServer({ modelRepository: dirs[0], port: 0, threads: 1, dashboard: 'off' });
  expect((await fetch(`${server.url}/dashboard`)).status).toBe(404);
  expect((await fetch(`${server.url}/dashboard/feed`)).status).toBe(404);
});

test('the feed sends a snapshot a second for every model: rates, latency split, batch sizes, queue, reasons, workers, cost curve', async () => {
  server = await repositoryServer();
  const stop = load(server.url, 'tiny', 16);
  const snapshots = await dashboardSnapshots(server.url, 4);
  await stop();
  expect(snapshots.map((s) => s.models.map((m: any) => m.name).sort())).toEqual(Array(4).fill(['ints', 'tiny']));
  const last = snapshots[3].models.find((m: any) => m.name === 'tiny');
  expect(last.reqPerSecond).toBeGreaterThan(0);
  expect(last.rowsPerSecond).toBeGreaterThan(0);
  expect(last.latencyMs.p99).toBeGreaterThanOrEqual(last.latencyMs.p50);
  expect(last.waitMs.p50).not.toBeNull();
  expect(last.execMs.p50).not.toBeNull();
  expect(last.meanBatch).toBeGreaterThan(1);
  expect(last.maxBatchSize).toBe(64);
  expect(last.queueCap).toBe(1024);
  expect(last.batchSizes.reduce((sum: number, [, count]: [number, number]) => sum + count, 0)).toBeGreaterThan(0);
  expect(last.workers).toEqual([expect.objectContaining({ id: 0, restarts: 0 })]);
  expect(last.workers[0].utilisation).toBeGreaterThan(0);
  expect(last.points.length).toBeGreaterThan(0);
  expect(last.reasons.length).toBeGreaterThanOrEqual(3);
  // Snapshots are a second apart, and the rates move between them.
  expect(snapshots[3].at - snapshots[1].at).toBeGreaterThanOrEqual(1500);
  const idle = snapshots[3].models.find((m: any) => m.name === 'ints');
  expect(idle).toMatchObject({ reqPerSecond: 0, queueDepth: 0, meanBatch: null });
});

test('in headless Chromium the page renders each model with live numbers that move under load, and the generator panel', async () => {
  server = await startServer({ port: 0, threads: 1, cacheDir: TEST_CACHE });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const stop = load(server.url, 'mlp', 16);
  const generating = postJson(
    `${server.url}/v2/models/charlm/generate`,
    JSON.stringify({ text_input: 'The ', parameters: { max_tokens: 120 } }),
  );
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(String(error)));
    await page.goto(`${server.url}/dashboard`);
    const card = page.locator('section[data-model="mlp"]');
    // The numbers and titles hold plain text with nothing hidden in them, so their textContent is the text shown
    // (innerText would differ only for hidden or restyled parts); shownIs reads the same.
    const metric = async (name: string): Promise<string> =>
      (await card.locator(`[data-metric="${name}"]`).textContent()) ?? '';
    // Runs in the page (as a function: the page's CSP forbids evaluating strings); this TypeScript has no DOM types.
    const shownIs = ([model, name, test, value]: string[]) => {
      const text = (globalThis as any).document.querySelector(
        `section[data-model="${model}"] [data-metric="${name}"]`,
      )?.textContent;
      return test === 'positive' ? Number(text) > 0 : text !== undefined && text !== value;
    };
    await page.waitForFunction(shownIs, ['mlp', 'throughput', 'positive', ''], { timeout: 15_000 });
    expect(await card.locator('h2').textContent()).toContain('mlp');
    const first = {
      throughput: await metric('throughput'),
      p99: await metric('p99'),
      batch: await metric('batch-mean'),
      queue: await metric('queue-depth'),
    };
    await page.waitForFunction(shownIs, ['mlp', 'throughput', 'changed', first.throughput], { timeout: 5_000 });
    const second = {
      throughput: await metric('throughput'),
      p99: await metric('p99'),
      batch: await metric('batch-mean'),
      queue: await metric('queue-depth'),
    };
    expect(Number(second.throughput)).toBeGreaterThan(0);
    expect(Number(second.p99)).toBeGreaterThan(0);
    expect(Number(second.batch)).toBeGreaterThanOrEqual(1);
    expect(Number.isInteger(Number(second.queue))).toBe(true);
    expect(second.throughput).not.toBe(first.throughput);
    await generating;
    const generator = page.locator('section[data-model="charlm"]');
    await page.waitForFunction(shownIs, ['charlm', 'ttft-p50', 'positive', ''], { timeout: 5_000 });
    expect(Number(await generator.locator('[data-metric="ttft-p50"]').textContent())).toBeGreaterThan(0);
    expect(await page.locator('#status').getAttribute('data-state')).toBe('live');
    expect(await card.locator('svg').count()).toBe(5);
    if (process.env.DASHBOARD_SCREENSHOT !== undefined)
      await page.screenshot({ path: process.env.DASHBOARD_SCREENSHOT, fullPage: true });
    expect(errors).toEqual([]);
  } finally {
    await stop();
    await browser.close();
  }
});

test('open feeds end when the server closes, so shutdown does not wait on them', async () => {
  server = await repositoryServer();
  const response = await fetch(`${server.url}/dashboard/feed`);
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  await reader.read();
  const closing = server.close();
  server = undefined;
  for (;;) if ((await reader.read()).done) break;
  await closing;
});
