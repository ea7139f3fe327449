import { expect, test } from 'vitest';
import { batchedFn } from 'batched-fn';
import { advance, flush, gatedHandler, useFakeClock } from './helpers.js';

useFakeClock();

test('preferredBatchSizes sends the largest preferred size the queue can fill, at once', async () => {
  const gate = gatedHandler<number>();
  const predict = batchedFn({ handler: gate.handler, maxBatchSize: 16, maxDelay: 1000, preferredBatchSizes: [4, 8] });
  for (let i = 0; i < 11; i++) void predict(i);
  await flush();
  expect(gate.batches).toEqual([[0, 1, 2, 3, 4, 5, 6, 7]]);
  gate.release();
  await flush();
  expect(gate.batches).toHaveLength(1); // three left: below every preferred size, so the window applies
  void predict(11);
  await flush();
  expect(gate.batches.at(-1)).toEqual([8, 9, 10, 11]);
  expect(predict.stats.dispatchReasons.preferred).toBe(2);
  gate.release();
  await flush();
});

test('pad grows a batch to the next preferred size; filler outputs never reach a caller', async () => {
  const seen: number[][] = [];
  const predict = batchedFn<number, number>({
    handler: (batch) => {
      seen.push([...batch]);
      return batch.map((x) => x * 10);
    },
    maxBatchSize: 8,
    maxDelay: 0,
    preferredBatchSizes: [4, 8],
    pad: (batch, target) => [...batch, ...Array<number>(target - batch.length).fill(-1)],
  });
  const results = await Promise.all([1, 2, 3, 4, 5].map((x) => predict(x)));
  // Four fill the preferred size 4 and go as they are; the fifth goes alone, padded up to 4.
  expect(seen).toEqual([
    [1, 2, 3, 4],
    [5, -1, -1, -1],
  ]);
  expect(results).toEqual([10, 20, 30, 40, 50]);
  const six = await Promise.all([6, 7, 8, 9, 10, 11].map((x) => predict(x)));
  expect(seen.slice(2)).toEqual([
    [6, 7, 8, 9],
    [10, 11, -1, -1],
  ]);
  expect(six).toEqual([60, 70, 80, 90, 100, 110]);
  expect(predict.stats).toMatchObject({ completed: 11, batchSize: { max: 4 } });
});

test('without preferred sizes, pad fills up to maxBatchSize', async () => {
  const seen: number[] = [];
  const predict = batchedFn<number, number>({
    handler: (batch) => {
      seen.push(batch.length);
      return batch;
    },
    maxBatchSize: 6,
    maxDelay: 0,
    pad: (batch, target) => batch.concat(Array<number>(target - batch.length).fill(0)),
  });
  expect(await predict(3)).toBe(3);
  expect(seen).toEqual([6]);
});

test('a handler that answers only the real rows of a padded batch gets ERR_BATCH_SIZE_MISMATCH', async () => {
  const predict = batchedFn<number, number>({
    handler: (batch) => batch.filter((x) => x >= 0),
    maxBatchSize: 4,
    maxDelay: 0,
    pad: (batch, target) => [...batch, ...Array<number>(target - batch.length).fill(-1)],
  });
  await expect(predict(1)).rejects.toMatchObject({ code: 'ERR_BATCH_SIZE_MISMATCH', expected: 4, received: 1 });
});

test('a pad hook that throws fails that batch, and the batcher keeps serving', async () => {
  let broken = true;
  const predict = batchedFn<number, number>({
    handler: (batch) => batch,
    maxBatchSize: 4,
    maxDelay: 0,
    pad: (batch, target) => {
      if (broken) throw new Error('pad broke');
      return [...batch, ...Array<number>(target - batch.length).fill(0)];
    },
  });
  await expect(predict(1)).rejects.toThrow('pad broke');
  broken = false;
  expect(await predict(2)).toBe(2);
});

test('preferredBatchSizes is validated against maxBatchSize, at construction and in configure()', async () => {
  const handler = (b: number[]) => b;
  expect(() => batchedFn({ handler, maxBatchSize: 8, preferredBatchSizes: [4, 16] })).toThrow(
    new RangeError('Expected every `preferredBatchSizes` entry to be at most maxBatchSize (8), got 16'),
  );
  expect(() => batchedFn({ handler, preferredBatchSizes: [] })).toThrow(TypeError);
  expect(() => batchedFn({ handler, preferredBatchSizes: [0] })).toThrow(
    new RangeError('Expected `preferredBatchSizes[0]` to be an integer from 1 and up, got `0` (number)'),
  );
  const predict = batchedFn({ handler, maxBatchSize: 8, preferredBatchSizes: [4, 8] });
  expect(() => predict.configure({ maxBatchSize: 6 })).toThrow(
    new RangeError('Expected `maxBatchSize` to be at least the largest preferredBatchSizes entry (8), got 6'),
  );
  await advance(0);
});
