import { expect, test } from 'vitest';
import { batchedFn } from 'batched-fn';

test('the context is built once, lazily before the first batch, and passed to every batch', async () => {
  let builds = 0;
  const predict = batchedFn<number, number, { factor: number }>({
    handler: (batch, model) => batch.map((x) => x * model.factor),
    context: async () => {
      builds++;
      return { factor: 3 };
    },
    maxBatchSize: 2,
    maxDelay: 0,
  });
  expect(builds).toBe(0);
  expect(await Promise.all([predict(1), predict(2), predict(3)])).toEqual([3, 6, 9]);
  expect(await predict(4)).toBe(12);
  expect(builds).toBe(1);
});

test('concurrent batches share one build', async () => {
  let builds = 0;
  const predict = batchedFn<number, number, number>({
    handler: (batch, k) => batch.map((x) => x + k),
    context: async () => {
      builds++;
      await new Promise((resolve) => setTimeout(resolve, 5));
      return 100;
    },
    maxBatchSize: 1,
    maxDelay: 0,
    concurrency: 4,
  });
  expect(await Promise.all([1, 2, 3, 4].map((x) => predict(x)))).toEqual([101, 102, 103, 104]);
  expect(builds).toBe(1);
});

test('a context that fails rejects the waiting callers with that error and is retried on the next batch', async () => {
  let attempts = 0;
  const broken = new Error('weights file missing');
  const predict = batchedFn<number, number, number>({
    handler: (batch, k) => batch.map((x) => x * k),
    context: () => {
      attempts++;
      if (attempts === 1) throw broken;
      return 2;
    },
    maxBatchSize: 2,
    maxDelay: 0,
  });
  const first = await Promise.allSettled([predict(1), predict(2)]);
  expect(first).toEqual([
    { status: 'rejected', reason: broken },
    { status: 'rejected', reason: broken },
  ]);
  expect(await predict(5)).toBe(10);
  expect(attempts).toBe(2);
});

test('ready() builds the context up front and reports its failure', async () => {
  let attempts = 0;
  const predict = batchedFn<number, number, number>({
    handler: (batch, k) => batch.map((x) => x * k),
    context: () => {
      attempts++;
      if (attempts === 1) throw new Error('not yet');
      return 7;
    },
    maxDelay: 0,
  });
  await expect(predict.ready()).rejects.toThrow('not yet');
  await predict.ready();
  expect(attempts).toBe(2);
  expect(await predict(1)).toBe(7);
  expect(attempts).toBe(2);
});

test('without a context the handler gets undefined', async () => {
  const seen: unknown[] = [];
  const predict = batchedFn<number, number>({
    handler: (batch, context) => {
      seen.push(context);
      return batch;
    },
    maxDelay: 0,
  });
  await predict(1);
  await predict.ready();
  expect(seen).toEqual([undefined]);
});
