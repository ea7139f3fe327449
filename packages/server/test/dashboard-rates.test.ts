import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { afterEach, expect, test, vi } from 'vitest';
import { ensureMlpModel, type RunningServer, startServer } from '@batched-fn/server';
import { TEST_CACHE } from './helpers.js';
import { scratchDir } from './scratch.js';
import { DashboardCollector } from '../src/dashboard/collector.js';
import { ServerMetrics } from '../src/metrics/metrics.js';
import type { ServedModel } from '../src/model/served-model.js';
import { ModelRegistry } from '../src/repository/registry.js';

let server: RunningServer | undefined;
afterEach(async () => {
  vi.useRealTimers();
  await server?.close();
  server = undefined;
});

/** A model whose batcher's counters the test sets: the collector reads only its stats and settings. */
function countingModel(): { model: ServedModel; reasons: { full: number; timeout: number } } {
  const reasons = { full: 0, timeout: 0 };
  const batcher = {
    get stats() {
      return {
        dispatchReasons: { ...reasons },
        workers: [],
        queued: 0,
        waitMs: { count: 0 },
        execMs: { count: 0 },
        costModel: undefined,
      };
    },
    settings: { maxBatchSize: 64, maxDelay: 'auto', channelCap: 1024, concurrency: 1 },
  };
  const model = {
    name: 'm',
    version: '1',
    platform: 'test',
    signature: { inputs: [], outputs: [] },
    batcher,
  } as unknown as ServedModel;
  return { model, reasons };
}

test('dispatch reasons are per second of the time since the last snapshot: no spike after a gap with no viewer', () => {
  vi.useFakeTimers({ toFake: ['performance'] });
  const { model, reasons } = countingModel();
  const collector = new DashboardCollector(ModelRegistry.of([model]), new ServerMetrics({ defaultMetrics: false }));
  collector.snapshot();
  // One second at 200 batches/s.
  vi.advanceTimersByTime(1000);
  reasons.full = 200;
  expect(collector.snapshot().models[0]?.reasons.at(-1)).toEqual({ full: 200, timeout: 0 });
  // Ten seconds with nobody watching (no snapshot), still 200/s and 5/s.
  vi.advanceTimersByTime(10_000);
  reasons.full += 2000;
  reasons.timeout += 50;
  expect(collector.snapshot().models[0]?.reasons.at(-1)).toEqual({ full: 200, timeout: 5 });
  collector.stop();
});

test('on a 1400 px screen two model cards sit side by side; the page has its icon, at /favicon.ico too', async () => {
  const repo = scratchDir('bfn-dash-');
  for (const name of ['a', 'b']) {
    mkdirSync(join(repo, name));
    symlinkSync(ensureMlpModel(undefined, TEST_CACHE), join(repo, name, 'model.onnx'));
    writeFileSync(join(repo, name, 'config.json'), JSON.stringify({ threads: 1 }));
  }
  server = await startServer({ modelRepository: repo, port: 0, dashboard: 'on' });
  const icon = await fetch(`${server.url}/favicon.ico`);
  expect([icon.status, icon.headers.get('content-type')]).toEqual([200, 'image/svg+xml']);
  expect(await icon.text()).toContain('<svg');
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    await page.goto(`${server.url}/dashboard`);
    const a = page.locator('section[data-model="a"]');
    const b = page.locator('section[data-model="b"]');
    await b.waitFor();
    const [boxA, boxB] = [await a.boundingBox(), await b.boundingBox()];
    expect(boxA?.y).toBe(boxB?.y);
    expect((boxB?.x ?? 0) - (boxA?.x ?? 0)).toBeGreaterThanOrEqual(boxA?.width ?? Number.POSITIVE_INFINITY);
    expect(await page.locator('link[rel="icon"]').getAttribute('href')).toBe('/dashboard/favicon.svg');
  } finally {
    await browser.close();
  }
});
