import { expect, test, vi } from 'vitest';
import { batchedFn } from 'batched-fn';
import { advance, recordingHandler, useFakeClock } from './helpers.js';

useFakeClock();

// The Rust crate's own test, which every port must pass.
test('max 4, delay 50: call 0, wait 10 ms, call 1..9 → [[0,1,2,3],[4,5,6,7],[8,9]]', async () => {
  const { batches, handler } = recordingHandler<number>();
  const predict = batchedFn({ handler, maxBatchSize: 4, maxDelay: 50 });
  const first = predict(0);
  await advance(10);
  expect(batches).toEqual([]);
  const rest = [1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => predict(i));
  await advance(0);
  expect(batches).toEqual([
    [0, 1, 2, 3],
    [4, 5, 6, 7],
  ]);
  // 8 and 9 arrived at t=10, so their window closes at t=60, not 50 ms after being dequeued.
  await advance(49);
  expect(batches.length).toBe(2);
  await advance(1);
  expect(batches).toEqual([
    [0, 1, 2, 3],
    [4, 5, 6, 7],
    [8, 9],
  ]);
  expect(await first).toBe(0);
  expect(await Promise.all(rest)).toEqual([2, 4, 6, 8, 10, 12, 14, 16, 18]);
  expect(predict.stats.dispatchReasons).toEqual({ full: 2, delay: 1, backlog: 0, close: 0, adaptive: 0, preferred: 0 });
});

test('the same case with real timers and a wide margin', async () => {
  vi.useRealTimers();
  const { batches, handler } = recordingHandler<number>();
  const predict = batchedFn({ handler, maxBatchSize: 4, maxDelay: 50 });
  const first = predict(0);
  await new Promise((resolve) => setTimeout(resolve, 10));
  const rest = [1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => predict(i));
  await Promise.all([first, ...rest]);
  expect(batches).toEqual([
    [0, 1, 2, 3],
    [4, 5, 6, 7],
    [8, 9],
  ]);
});
