import { expect, test } from 'vitest';
import { batchedFn, type BatchInfo } from 'batched-fn';

// The core's semantics hold unchanged in worker mode.
const echo = new URL('./fixtures/echo.worker.mjs', import.meta.url);
const spin = new URL('./fixtures/spin.worker.mjs', import.meta.url);
interface Echo {
  value: number;
  batch: number[];
}

test('maxDelay counts from arrival, and size limits the rows per batch', async () => {
  const seen: BatchInfo[] = [];
  const predict = batchedFn<number, Echo>({
    worker: echo,
    maxBatchSize: 6,
    maxDelay: 30,
    size: (x) => (x >= 10 ? 3 : 1),
    onBatch: (info) => seen.push(info),
  });
  await predict.ready();
  const started = performance.now();
  const outputs = await Promise.all([1, 10, 2, 11].map((x) => predict(x)));
  const elapsed = performance.now() - started;
  expect(outputs.map((o) => o.batch)).toEqual([[1, 10, 2], [1, 10, 2], [1, 10, 2], [11]]);
  expect(seen.map((b) => [b.rows, b.reason])).toEqual([
    [5, 'full'],
    [3, 'delay'],
  ]);
  expect(elapsed).toBeGreaterThanOrEqual(29);
  await predict.close();
});

test('channelCap, abort and timeout behave as inline', async () => {
  const predict = batchedFn<number, number>({
    worker: spin,
    workerData: { ms: 100 },
    maxBatchSize: 1,
    maxDelay: 0,
    channelCap: 2,
  });
  await predict.ready();
  const running = predict(1);
  await new Promise((resolve) => setTimeout(resolve, 20));
  const controller = new AbortController();
  const aborted = predict(2, { signal: controller.signal });
  const timed = predict(3, { timeout: 30 });
  await expect(predict(4)).rejects.toMatchObject({ code: 'ERR_QUEUE_FULL' });
  controller.abort(new Error('client left'));
  await expect(aborted).rejects.toThrow('client left');
  await expect(timed).rejects.toMatchObject({ code: 'ERR_TIMEOUT' });
  expect(await running).toBe(1);
  expect(predict.stats).toMatchObject({ completed: 1, failures: { ERR_QUEUE_FULL: 1, aborted: 1, ERR_TIMEOUT: 1 } });
  // The aborted and timed-out calls never reached a worker.
  expect(predict.stats.workers[0]?.items).toBe(1);
  await predict.close();
});

test('a timeout while the batch runs in a worker releases the caller at once', async () => {
  const predict = batchedFn<number, number>({ worker: spin, workerData: { ms: 300 }, maxDelay: 0 });
  await predict.ready();
  const started = performance.now();
  await expect(predict(1, { timeout: 50 })).rejects.toMatchObject({ code: 'ERR_TIMEOUT' });
  expect(performance.now() - started).toBeLessThan(250);
  await predict.close();
});

test('two workers run two batches at once', async () => {
  const predict = batchedFn<number, { start: number; end: number }>({
    worker: new URL('./fixtures/interval.worker.mjs', import.meta.url),
    workers: 2,
    maxBatchSize: 1,
    maxDelay: 0,
  });
  await predict.ready();
  const [a, b] = await Promise.all([predict(200), predict(200)]);
  // Asserted as overlap rather than wall time, so a loaded machine cannot make it flaky.
  expect(a && b && a.start < b.end && b.start < a.end).toBe(true);
  const busy = predict.stats.workers.map((w) => w.busyMs);
  expect(busy.every((ms) => ms >= 190)).toBe(true);
  await predict.close();
});
