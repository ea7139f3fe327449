import { expect, test } from 'vitest';
import { batchedFn, QueueFullError } from 'batched-fn';
import { flush, gatedHandler, track, useFakeClock } from './helpers.js';

useFakeClock();

test('concurrency: 1 runs one batch at a time; the queue fills meanwhile', async () => {
  const gate = gatedHandler<number>();
  const predict = batchedFn({ handler: gate.handler, maxBatchSize: 2, maxDelay: 0, concurrency: 1 });
  for (let i = 0; i < 6; i++) void predict(i);
  await flush();
  expect(gate.running()).toBe(1);
  expect(predict.stats).toMatchObject({ inFlight: 1, inFlightItems: 2, queued: 4 });
  gate.release();
  await flush();
  gate.release();
  await flush();
  gate.release();
  await flush();
  expect(gate.batches).toEqual([
    [0, 1],
    [2, 3],
    [4, 5],
  ]);
});

test('concurrency: 3 keeps up to three batches in flight', async () => {
  const gate = gatedHandler<number>();
  const predict = batchedFn({ handler: gate.handler, maxBatchSize: 2, maxDelay: 0, concurrency: 3 });
  for (let i = 0; i < 10; i++) void predict(i);
  await flush();
  expect(gate.running()).toBe(3);
  expect(gate.batches).toEqual([
    [0, 1],
    [2, 3],
    [4, 5],
  ]);
  expect(predict.stats).toMatchObject({ inFlight: 3, queued: 4 });
  gate.release();
  await flush();
  expect(gate.batches.at(-1)).toEqual([6, 7]);
  expect(gate.running()).toBe(3);
});

test('channelCap counts only waiting items, not the running batch', async () => {
  const gate = gatedHandler<number>();
  const predict = batchedFn({ handler: gate.handler, maxBatchSize: 2, maxDelay: 0, channelCap: 3 });
  const accepted = [0, 1].map((i) => track(predict(i)));
  await flush();
  expect(gate.batches).toEqual([[0, 1]]);
  accepted.push(...[2, 3, 4].map((i) => track(predict(i))));
  const rejected = track(predict(5));
  await flush();
  expect(rejected.status).toBe('rejected');
  expect(rejected.error).toBeInstanceOf(QueueFullError);
  expect(rejected.error).toMatchObject({ code: 'ERR_QUEUE_FULL', capacity: 3 });
  gate.release();
  await flush();
  // The next batch left the queue, so two places are free again.
  const later = track(predict(6));
  await flush();
  expect(later.status).toBe('pending');
  for (let i = 0; i < 2; i++) {
    gate.release();
    await flush();
  }
  expect(gate.batches).toEqual([
    [0, 1],
    [2, 3],
    [4, 6],
  ]);
  expect(accepted.every((c) => c.status === 'fulfilled')).toBe(true);
  expect(later.status).toBe('fulfilled');
  expect(predict.stats.failures).toEqual({ ERR_QUEUE_FULL: 1 });
});

test('configure({ concurrency }) takes effect at once', async () => {
  const gate = gatedHandler<number>();
  const predict = batchedFn({ handler: gate.handler, maxBatchSize: 1, maxDelay: 0, concurrency: 1 });
  for (let i = 0; i < 4; i++) void predict(i);
  await flush();
  expect(gate.running()).toBe(1);
  predict.configure({ concurrency: 3 });
  await flush();
  expect(gate.running()).toBe(3);
});
