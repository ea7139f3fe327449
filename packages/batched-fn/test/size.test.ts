import { expect, test } from 'vitest';
import { batchedFn, ItemTooLargeError } from 'batched-fn';
import { advance, flush, gatedHandler, useFakeClock } from './helpers.js';

useFakeClock();

const rowsOf = (input: number[]) => input.length;

test('batches are packed FIFO by size and never exceed maxBatchSize', async () => {
  const batches: number[][][] = [];
  const predict = batchedFn<number[], number>({
    handler: (batch) => {
      batches.push(batch);
      return batch.map((x) => x.length);
    },
    size: rowsOf,
    maxBatchSize: 5,
    maxDelay: 10,
  });
  const inputs = [[1, 1, 1], [2, 2], [3, 3], [4], [5, 5, 5, 5, 5], [6]];
  const all = Promise.all(inputs.map((x) => predict(x)));
  await advance(10);
  expect(batches).toEqual([
    [
      [1, 1, 1],
      [2, 2],
    ],
    [[3, 3], [4]],
    [[5, 5, 5, 5, 5]],
    [[6]],
  ]);
  expect(await all).toEqual([3, 2, 2, 1, 5, 1]);
  expect(predict.stats.batchSize.max).toBe(5);
});

test('the size limit counts rows, so a batch is "full" before it has maxBatchSize items', async () => {
  const gate = gatedHandler<number[]>();
  const predict = batchedFn<number[], number[]>({
    handler: gate.handler,
    size: rowsOf,
    maxBatchSize: 4,
    maxDelay: 1000,
  });
  void predict([1, 1]);
  void predict([2, 2]);
  await flush();
  expect(gate.batches).toEqual([
    [
      [1, 1],
      [2, 2],
    ],
  ]);
  expect(predict.stats.dispatchReasons.full).toBe(1);
  gate.release();
  await flush();
});

test('an item larger than maxBatchSize is rejected with ERR_ITEM_TOO_LARGE at the call', async () => {
  const predict = batchedFn<number[], number>({ handler: (b) => b.map(() => 0), size: rowsOf, maxBatchSize: 3 });
  const call = predict([1, 2, 3, 4]);
  await expect(call).rejects.toBeInstanceOf(ItemTooLargeError);
  await expect(predict([1, 2, 3, 4])).rejects.toMatchObject({
    code: 'ERR_ITEM_TOO_LARGE',
    size: 4,
    maxBatchSize: 3,
    message: 'Input has size 4, larger than maxBatchSize=3',
  });
  expect(predict.stats.queued).toBe(0);
});

test('a size function that returns nonsense or throws rejects that call only', async () => {
  const predict = batchedFn<number, number>({
    handler: (b) => b,
    size: (x) => {
      if (x === 2) throw new Error('cannot size 2');
      return x === 3 ? Number.NaN : x === 4 ? 0 : 1;
    },
    maxDelay: 0,
  });
  await expect(predict(2)).rejects.toThrow('cannot size 2');
  await expect(predict(3)).rejects.toThrow(
    new RangeError('Expected `size(input)` to return a finite number above 0, got NaN'),
  );
  await expect(predict(4)).rejects.toThrow(RangeError);
  expect(await predict(1)).toBe(1);
});

test('lowering maxBatchSize below a queued item rejects that item when it reaches the head', async () => {
  const gate = gatedHandler<number[]>();
  const predict = batchedFn<number[], number[]>({ handler: gate.handler, size: rowsOf, maxBatchSize: 4, maxDelay: 0 });
  void predict([0]);
  await flush();
  const big = predict([1, 1, 1]);
  const small = predict([2]);
  predict.configure({ maxBatchSize: 2 });
  gate.release();
  await expect(big).rejects.toMatchObject({ code: 'ERR_ITEM_TOO_LARGE', size: 3, maxBatchSize: 2 });
  await flush();
  expect(gate.batches).toEqual([[[0]], [[2]]]);
  gate.release();
  expect(await small).toEqual([2]);
});
