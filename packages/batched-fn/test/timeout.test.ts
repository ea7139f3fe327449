import { expect, test, vi } from 'vitest';
import { batchedFn, TimeoutError } from 'batched-fn';
import { advance, flush, gatedHandler, track, useFakeClock } from './helpers.js';

useFakeClock();

test('a call that times out in the queue leaves it and is never dispatched', async () => {
  const gate = gatedHandler<number>();
  const predict = batchedFn({ handler: gate.handler, maxBatchSize: 4, maxDelay: 0 });
  void predict(0);
  await flush();
  const late = track(predict(1, { timeout: 20 }));
  const patient = track(predict(2));
  await advance(19);
  expect(late.status).toBe('pending');
  await advance(1);
  expect(late.status).toBe('rejected');
  expect(late.error).toBeInstanceOf(TimeoutError);
  expect(late.error).toMatchObject({
    code: 'ERR_TIMEOUT',
    timeout: 20,
    predicted: false,
    message: 'Call timed out after 20 ms',
  });
  gate.release();
  await flush();
  expect(gate.batches).toEqual([[0], [2]]);
  gate.release();
  await flush();
  expect(patient).toMatchObject({ status: 'fulfilled', value: 2 });
});

test('a call that times out while its batch runs is released at once', async () => {
  const gate = gatedHandler<number>();
  const predict = batchedFn({ handler: gate.handler, maxBatchSize: 4, maxDelay: 0 });
  const call = track(predict(1, { timeout: 30 }));
  await flush();
  expect(gate.batches).toEqual([[1]]);
  await advance(30);
  expect(call.status).toBe('rejected');
  expect((call.error as TimeoutError).code).toBe('ERR_TIMEOUT');
  gate.release();
  await flush();
  expect(call.settles).toBe(1);
  expect(predict.stats).toMatchObject({ completed: 0, failed: 1, failures: { ERR_TIMEOUT: 1 }, batches: 1 });
});

test('a call answered before its deadline clears its timer', async () => {
  const predict = batchedFn<number, number>({ handler: (b) => b, maxDelay: 0 });
  expect(await predict(1, { timeout: 1000 })).toBe(1);
  await advance(0); // lets the dispatcher's end-of-stretch marker run
  expect(vi.getTimerCount()).toBe(0);
});

test('timeout: 0 expires before any batch can run it unless it is dispatched in the same tick', async () => {
  const gate = gatedHandler<number>();
  const predict = batchedFn({ handler: gate.handler, maxDelay: 5 });
  const call = track(predict(1, { timeout: 0 }));
  await advance(5);
  expect(call.status).toBe('rejected');
  expect(gate.batches).toEqual([]);
});
