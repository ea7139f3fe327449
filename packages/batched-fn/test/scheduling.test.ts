import { describe, expect, test } from 'vitest';
import { batchedFn } from 'batched-fn';
import { advance, flush, gatedHandler, recordingHandler, track, useFakeClock } from './helpers.js';

useFakeClock();

describe('maxDelay is counted from the oldest item arrival', () => {
  test('a lone item waits exactly maxDelay', async () => {
    const { batches, handler } = recordingHandler<number>();
    const predict = batchedFn({ handler, maxBatchSize: 8, maxDelay: 20 });
    const call = track(predict(1));
    await advance(19);
    expect(batches).toEqual([]);
    await advance(1);
    expect(batches).toEqual([[1]]);
    await flush();
    expect(call).toMatchObject({ status: 'fulfilled', value: 2 });
  });

  test('items that waited behind a running batch go at once when it ends (the original waited again)', async () => {
    const gate = gatedHandler<number>();
    const predict = batchedFn({ handler: gate.handler, maxBatchSize: 4, maxDelay: 50, concurrency: 1 });
    void predict(0);
    await advance(50);
    expect(gate.batches).toEqual([[0]]);
    void predict(1);
    void predict(2);
    await advance(190); // the first batch runs long; 1 and 2 are now 190 ms old
    expect(gate.batches.length).toBe(1);
    gate.release();
    await flush();
    expect(gate.batches).toEqual([[0], [1, 2]]);
    expect(predict.stats.dispatchReasons.backlog).toBe(1);
    gate.release();
    await flush();
  });

  test('a later arrival does not push the window back', async () => {
    const { batches, handler } = recordingHandler<number>();
    const predict = batchedFn({ handler, maxBatchSize: 8, maxDelay: 30 });
    void predict(1);
    await advance(20);
    void predict(2);
    await advance(10);
    expect(batches).toEqual([[1, 2]]);
  });

  test('fractional delays are honoured below a millisecond', async () => {
    const { batches, handler } = recordingHandler<number>();
    const predict = batchedFn({ handler, maxBatchSize: 8, maxDelay: 0.5 });
    void predict(1);
    await flush();
    expect(batches).toEqual([]);
    await advance(1);
    expect(batches).toEqual([[1]]);
  });
});

describe('maxDelay: 0', () => {
  test('dispatches everything queued in the same tick as one batch (the original sent batches of one)', async () => {
    const { batches, handler } = recordingHandler<number>();
    const predict = batchedFn({ handler, maxBatchSize: 64, maxDelay: 0 });
    const calls = Array.from({ length: 10 }, (_, i) => predict(i));
    await Promise.all(calls);
    expect(batches).toEqual([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]]);
  });

  test('splits by maxBatchSize and keeps FIFO order', async () => {
    const { batches, handler } = recordingHandler<number>();
    const predict = batchedFn({ handler, maxBatchSize: 4, maxDelay: 0 });
    await Promise.all(Array.from({ length: 10 }, (_, i) => predict(i)));
    expect(batches).toEqual([
      [0, 1, 2, 3],
      [4, 5, 6, 7],
      [8, 9],
    ]);
  });

  test('a lone caller pays no delay at all', async () => {
    const { batches, handler } = recordingHandler<number>();
    const predict = batchedFn({ handler, maxDelay: 0 });
    const call = track(predict(5));
    await flush();
    expect(batches).toEqual([[5]]);
    expect(call).toMatchObject({ status: 'fulfilled', value: 10 });
  });

  test('under load, items queued while the handler is busy form the next batch', async () => {
    const gate = gatedHandler<number>();
    const predict = batchedFn({ handler: gate.handler, maxBatchSize: 8, maxDelay: 0 });
    void predict(0);
    await flush();
    for (let i = 1; i <= 5; i++) void predict(i);
    await flush();
    expect(gate.batches).toEqual([[0]]);
    gate.release();
    await flush();
    expect(gate.batches).toEqual([[0], [1, 2, 3, 4, 5]]);
    gate.release();
    await flush();
  });
});

test('a full queue dispatches without waiting for the delay', async () => {
  const { batches, handler } = recordingHandler<number>();
  const predict = batchedFn({ handler, maxBatchSize: 3, maxDelay: 10_000 });
  void predict(1);
  void predict(2);
  void predict(3);
  await flush();
  expect(batches).toEqual([[1, 2, 3]]);
  expect(predict.stats.dispatchReasons.full).toBe(1);
});

test('the handler is never called inside the caller stack', () => {
  const { batches, handler } = recordingHandler<number>();
  const predict = batchedFn({ handler, maxBatchSize: 1, maxDelay: 0 });
  void predict(1);
  expect(batches).toEqual([]);
});

test('a handler that calls back into the batcher does not re-enter dispatch', async () => {
  const seen: number[][] = [];
  const predict = batchedFn<number, number>({
    handler: (batch) => {
      seen.push([...batch]);
      if (batch[0] === 1) void predict(100);
      return batch;
    },
    maxBatchSize: 2,
    maxDelay: 0,
  });
  await predict(1);
  await advance(0);
  await flush();
  expect(seen).toEqual([[1], [100]]);
});
