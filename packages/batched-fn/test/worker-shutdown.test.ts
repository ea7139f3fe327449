import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect, onTestFinished, test } from 'vitest';
import { batchedFn, ClosedError } from 'batched-fn';

const run = promisify(execFile);
const spin = new URL('./fixtures/spin.worker.mjs', import.meta.url);

test('close() drains queued and running batches, lets the module dispose its context, then stops the workers', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'batched-fn-'));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  const marker = join(dir, 'disposed');
  const predict = batchedFn<number, number>({
    worker: new URL('./fixtures/closes.worker.mjs', import.meta.url),
    workerData: { marker },
    maxBatchSize: 2,
    maxDelay: 1000,
  });
  const calls = [1, 2, 3, 4, 5].map((x) => predict(x));
  await predict.close();
  expect(await Promise.all(calls)).toEqual([1, 2, 3, 4, 5]);
  expect(readFileSync(marker, 'utf8')).toBe('disposed');
  expect(predict.stats.workers.map((w) => w.state)).toEqual(['stopped']);
  await expect(predict(6)).rejects.toBeInstanceOf(ClosedError);
});

test('destroy() terminates at once and rejects what is pending', async () => {
  const predict = batchedFn<number, number>({ worker: spin, workerData: { ms: 5000 }, maxBatchSize: 1, maxDelay: 0 });
  await predict.ready();
  const running = predict(1);
  const queued = predict(2);
  await new Promise((resolve) => setTimeout(resolve, 50));
  const started = performance.now();
  predict.destroy();
  const results = await Promise.allSettled([running, queued]);
  expect(performance.now() - started).toBeLessThan(1000);
  expect(results.map((r) => (r as PromiseRejectedResult).reason?.code)).toEqual(['ERR_CLOSED', 'ERR_CLOSED']);
  await predict.close();
});

test.each(['close', 'destroy', 'idle', 'ready'])(
  'the process exits on its own after %s (no handles left open)',
  async (mode) => {
    const script = fileURLToPath(new URL('./fixtures/exit-check.mjs', import.meta.url));
    const { stdout } = await run(process.execPath, [script, mode], { timeout: 15_000 });
    expect(stdout.trim()).toBe('[2,4,6]');
  },
);
