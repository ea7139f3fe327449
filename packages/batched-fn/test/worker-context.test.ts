import { threadId } from 'node:worker_threads';
import { afterEach, expect, test } from 'vitest';
import { type BatchedFn, batchedFn } from 'batched-fn';

interface Echo {
  value: number;
  batch: number[];
  threadId: number;
  builds: number;
}

const echo = new URL('./fixtures/echo.worker.mjs', import.meta.url);
let predict: BatchedFn<number, Echo> | undefined;
afterEach(async () => {
  await predict?.close();
  predict = undefined;
});

test('each worker builds its own context once, on its own thread', async () => {
  predict = batchedFn<number, Echo>({
    worker: echo,
    workers: 2,
    workerData: { factor: 3 },
    maxBatchSize: 1,
    maxDelay: 0,
  });
  await predict.ready();
  const outputs = await Promise.all(Array.from({ length: 20 }, (_, i) => (predict as BatchedFn<number, Echo>)(i)));
  expect(outputs.map((o) => o.value)).toEqual(Array.from({ length: 20 }, (_, i) => i * 3));
  const threads = new Set(outputs.map((o) => o.threadId));
  expect(threads.has(threadId)).toBe(false);
  expect(threads.size).toBe(2);
  expect(outputs.every((o) => o.builds === 1)).toBe(true);
  const stats = predict.stats.workers;
  expect(stats.map((w) => w.id)).toEqual([0, 1]);
  expect(stats.reduce((sum, w) => sum + w.batches, 0)).toBe(20);
  expect(stats.reduce((sum, w) => sum + w.items, 0)).toBe(20);
  expect(stats.every((w) => w.batches > 0 && w.restarts === 0 && w.state === 'idle')).toBe(true);
  expect(new Set(stats.map((w) => w.threadId))).toEqual(threads);
});

test('batch shapes match inline mode on the reference schedule', async () => {
  predict = batchedFn<number, Echo>({ worker: echo, maxBatchSize: 4, maxDelay: 50 });
  await predict.ready();
  const first = predict(0);
  await new Promise((resolve) => setTimeout(resolve, 10));
  const rest = [1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => (predict as BatchedFn<number, Echo>)(i));
  const outputs = await Promise.all([first, ...rest]);
  const shapes = [...new Map(outputs.map((o) => [JSON.stringify(o.batch), o.batch])).values()];
  expect(shapes).toEqual([
    [0, 1, 2, 3],
    [4, 5, 6, 7],
    [8, 9],
  ]);
  expect(outputs.map((o) => o.value)).toEqual([0, 2, 4, 6, 8, 10, 12, 14, 16, 18]);
});

test('a context that fails rejects its batch with that error and is retried on the next batch', async () => {
  const flaky = batchedFn<number, number>({
    worker: new URL('./fixtures/flaky-context.worker.mjs', import.meta.url),
    maxBatchSize: 2,
    maxDelay: 0,
  });
  const first = await Promise.allSettled([flaky(1), flaky(2)]);
  expect(first.map((r) => r.status)).toEqual(['rejected', 'rejected']);
  const error = (first[0] as PromiseRejectedResult).reason as Error;
  expect(error.message).toBe('context failed (attempt 1)');
  expect(await flaky(3)).toBe(2);
  await flaky.close();
});

test('ready() reports a context failure, and succeeds once the context builds', async () => {
  const flaky = batchedFn<number, number>({ worker: new URL('./fixtures/flaky-context.worker.mjs', import.meta.url) });
  await expect(flaky.ready()).rejects.toThrow('context failed (attempt 1)');
  await flaky.ready();
  expect(await flaky(1)).toBe(2);
  await flaky.close();
});

test('a module that throws on load rejects every batch with its error; nothing hangs', async () => {
  const broken = batchedFn<number, number>({
    worker: new URL('./fixtures/load-fails.worker.mjs', import.meta.url),
    maxBatchSize: 2,
    maxDelay: 0,
  });
  const results = await Promise.allSettled([broken(1), broken(2), broken(3)]);
  for (const r of results) {
    expect(r.status).toBe('rejected');
    expect(((r as PromiseRejectedResult).reason as Error).message).toBe('cannot load: weights missing');
  }
  await expect(broken.ready()).rejects.toThrow('cannot load: weights missing');
  await broken.close();
});

test('a module without a handler export says so', async () => {
  const wrong = batchedFn<number, number>({
    worker: new URL('./fixtures/no-handler.worker.mjs', import.meta.url),
    maxDelay: 0,
  });
  await expect(wrong(1)).rejects.toThrow(/must export a `handler\(batch, context\)` function/);
  await wrong.close();
});

test('a module path that does not exist rejects with a clear error', async () => {
  const missing = batchedFn<number, number>({ worker: '/nonexistent/model.worker.mjs', maxDelay: 0 });
  await expect(missing(1)).rejects.toThrow(/Cannot find module|ERR_MODULE_NOT_FOUND|nonexistent/);
  await missing.close();
});
