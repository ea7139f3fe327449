import { expect, test, vi } from 'vitest';
import { batchChannel, type BatchInfo, batchedFn } from 'batched-fn';
import { advance, flush, useFakeClock } from './helpers.js';

useFakeClock();

test('stats are a plain snapshot with counts, reasons and percentiles', async () => {
  const predict = batchedFn<number, number>({
    handler: async (batch) => {
      await new Promise((resolve) => setTimeout(resolve, 4));
      return batch.map((x) => (x === 3 ? new Error('bad') : x));
    },
    maxBatchSize: 4,
    maxDelay: 10,
  });
  const calls = [1, 2, 3, 4, 5].map((x) => predict(x).catch(() => 'failed'));
  const before = predict.stats;
  expect(before).toMatchObject({ queued: 5, queuedRows: 5, inFlight: 0, calls: 5 });
  await advance(0);
  expect(predict.stats).toMatchObject({ queued: 1, inFlight: 1, inFlightItems: 4 });
  await advance(4); // first batch done; item 5 is 4 ms old, not yet due
  expect(predict.stats).toMatchObject({ queued: 1, inFlight: 0, batches: 1 });
  await advance(6); // t=10: item 5's window closes
  await advance(4);
  await Promise.all(calls);
  const stats = predict.stats;
  expect(stats).toMatchObject({
    queued: 0,
    inFlight: 0,
    calls: 5,
    completed: 4,
    failed: 1,
    failures: { handler: 1 },
    batches: 2,
    dispatchReasons: { full: 1, delay: 1, backlog: 0, close: 0, adaptive: 0, preferred: 0 },
    workers: [],
  });
  expect(stats.batchSize).toMatchObject({ count: 2, mean: 2.5, p50: 1, max: 4 });
  expect(stats.execMs).toMatchObject({ count: 2, p50: 4, max: 4 });
  // Item 5 arrived at 0 and left when its window closed at 10.
  expect(stats.waitMs).toMatchObject({ count: 5, max: 10 });
  expect(before.queued).toBe(5); // an old snapshot does not change
});

test('onBatch and the diagnostics channel see every batch with its reason', async () => {
  const seen: BatchInfo[] = [];
  const published: BatchInfo[] = [];
  const listener = (message: unknown) => published.push(message as BatchInfo);
  batchChannel.subscribe(listener);
  try {
    const predict = batchedFn<number, number>({
      handler: (b) => b,
      maxBatchSize: 2,
      maxDelay: 5,
      name: 'mlp',
      onBatch: (info) => seen.push(info),
    });
    void predict(1);
    void predict(2);
    void predict(3);
    await advance(5);
    await flush();
    expect(seen.map(({ items, rows, reason, ok, name }) => ({ items, rows, reason, ok, name }))).toEqual([
      { items: 2, rows: 2, reason: 'full', ok: true, name: 'mlp' },
      { items: 1, rows: 1, reason: 'delay', ok: true, name: 'mlp' },
    ]);
    expect(published).toEqual(seen);
    expect(seen[1]?.maxWaitMs).toBe(5);
  } finally {
    batchChannel.unsubscribe(listener);
  }
});

test('an onBatch observer that throws does not break serving', async () => {
  const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
  const predict = batchedFn<number, number>({
    handler: (b) => b,
    maxDelay: 0,
    onBatch: () => {
      throw new Error('observer bug');
    },
  });
  expect(await predict(1)).toBe(1);
  expect(await predict(2)).toBe(2);
  expect(warn).toHaveBeenCalledTimes(2);
  warn.mockRestore();
});
