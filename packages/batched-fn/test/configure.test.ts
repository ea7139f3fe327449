import { expect, test } from 'vitest';
import { batchedFn } from 'batched-fn';
import { advance, flush, gatedHandler, useFakeClock } from './helpers.js';

useFakeClock();

test('configure() takes effect from the next batch; the running batch keeps its shape', async () => {
  const gate = gatedHandler<number>();
  const predict = batchedFn({ handler: gate.handler, maxBatchSize: 4, maxDelay: 0 });
  for (let i = 0; i < 10; i++) void predict(i);
  await flush();
  expect(gate.batches).toEqual([[0, 1, 2, 3]]);
  predict.configure({ maxBatchSize: 2 });
  await flush();
  expect(gate.batches).toEqual([[0, 1, 2, 3]]);
  gate.release();
  await flush();
  expect(gate.batches.at(-1)).toEqual([4, 5]);
  predict.configure({ maxBatchSize: 8 });
  gate.release();
  await flush();
  expect(gate.batches.at(-1)).toEqual([6, 7, 8, 9]);
  gate.release();
  await flush();
});

test('shortening maxDelay dispatches a waiting queue that is now due', async () => {
  const gate = gatedHandler<number>();
  const predict = batchedFn({ handler: gate.handler, maxBatchSize: 8, maxDelay: 1000 });
  void predict(1);
  await advance(20);
  expect(gate.batches).toEqual([]);
  predict.configure({ maxDelay: 10 });
  await flush();
  expect(gate.batches).toEqual([[1]]);
  gate.release();
  await flush();
});

test("switching to maxDelay 'auto' and back while running", async () => {
  const seen: number[][] = [];
  const predict = batchedFn<number, number>({
    handler: (batch) => {
      seen.push([...batch]);
      return batch;
    },
    maxDelay: 500,
  });
  predict.configure({ maxDelay: 'auto' });
  await predict(1);
  expect(seen).toEqual([[1]]);
  predict.configure({ maxDelay: 30 });
  const pending = predict(2);
  await advance(29);
  expect(seen).toHaveLength(1);
  await advance(1);
  expect(await pending).toBe(2);
});

test('raising channelCap and concurrency apply at once; lowering channelCap only stops new calls', async () => {
  const gate = gatedHandler<number>();
  const predict = batchedFn({ handler: gate.handler, maxBatchSize: 1, maxDelay: 0, channelCap: 2 });
  void predict(0);
  await flush(); // 0 runs; the next two fill the queue to its cap
  void predict(1);
  void predict(2);
  await expect(predict(9)).rejects.toMatchObject({ code: 'ERR_QUEUE_FULL' });
  predict.configure({ channelCap: 3 });
  void predict(3);
  predict.configure({ channelCap: 1 });
  expect(predict.stats.queued).toBe(3);
  await expect(predict(10)).rejects.toMatchObject({ code: 'ERR_QUEUE_FULL' });
  predict.configure({ concurrency: 4 });
  await flush();
  expect(gate.running()).toBe(4);
});
