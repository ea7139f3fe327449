import { expect, test } from 'vitest';
import {
  BatchedFnError,
  BatchSizeMismatchError,
  batchedFn,
  ClosedError,
  ItemTooLargeError,
  QueueFullError,
  TimeoutError,
  UnavailableError,
  WorkerExitedError,
} from 'batched-fn';
import { track, flush } from './helpers.js';

test('every error class has a stable code and name', () => {
  const cases: [BatchedFnError, string, string][] = [
    [new QueueFullError(3), 'ERR_QUEUE_FULL', 'QueueFullError'],
    [new ClosedError(), 'ERR_CLOSED', 'ClosedError'],
    [new TimeoutError(10), 'ERR_TIMEOUT', 'TimeoutError'],
    [new BatchSizeMismatchError(3, 2), 'ERR_BATCH_SIZE_MISMATCH', 'BatchSizeMismatchError'],
    [new ItemTooLargeError(9, 8), 'ERR_ITEM_TOO_LARGE', 'ItemTooLargeError'],
    [new WorkerExitedError(0, 1), 'ERR_WORKER_EXITED', 'WorkerExitedError'],
    [new UnavailableError('redis down'), 'ERR_UNAVAILABLE', 'UnavailableError'],
  ];
  for (const [error, code, name] of cases) {
    expect(error).toBeInstanceOf(BatchedFnError);
    expect(error).toBeInstanceOf(Error);
    expect(error.code).toBe(code);
    expect(error.name).toBe(name);
  }
});

test('a handler that throws rejects every caller in the batch with that same error, then keeps serving', async () => {
  const boom = new Error('model exploded');
  let fail = true;
  const predict = batchedFn<number, number>({
    handler: (batch) => {
      if (fail) throw boom;
      return batch;
    },
    maxBatchSize: 3,
    maxDelay: 0,
  });
  const results = await Promise.allSettled([predict(1), predict(2), predict(3)]);
  expect(results).toEqual([
    { status: 'rejected', reason: boom },
    { status: 'rejected', reason: boom },
    { status: 'rejected', reason: boom },
  ]);
  for (const r of results) expect((r as PromiseRejectedResult).reason).toBe(boom);
  fail = false;
  expect(await predict(4)).toBe(4);
  expect(predict.stats).toMatchObject({ completed: 1, failed: 3, failures: { handler: 3 } });
});

test('a handler that rejects behaves like one that throws', async () => {
  const boom = new Error('async failure');
  const predict = batchedFn<number, number>({ handler: async () => Promise.reject(boom), maxDelay: 0 });
  await expect(predict(1)).rejects.toBe(boom);
});

test('a handler that rejects with a non-error still rejects its callers', async () => {
  const predict = batchedFn<number, number>({ handler: async () => Promise.reject(undefined), maxDelay: 0 });
  const call = track(predict(1));
  await flush();
  expect(call.status).toBe('rejected');
  expect(call.error).toBeUndefined();
  expect(call.settles).toBe(1);
});

test('too few outputs: every caller gets ERR_BATCH_SIZE_MISMATCH', async () => {
  const predict = batchedFn<number, number>({ handler: (batch) => batch.slice(1), maxBatchSize: 3, maxDelay: 0 });
  const results = await Promise.allSettled([predict(1), predict(2), predict(3)]);
  for (const r of results) {
    expect(r.status).toBe('rejected');
    const error = (r as PromiseRejectedResult).reason as BatchSizeMismatchError;
    expect(error).toBeInstanceOf(BatchSizeMismatchError);
    expect(error.code).toBe('ERR_BATCH_SIZE_MISMATCH');
    expect(error.message).toBe('Handler returned 2 outputs for a batch of 3 inputs');
  }
});

test('too many outputs are not dropped silently', async () => {
  const predict = batchedFn<number, number>({ handler: (batch) => [...batch, 0], maxDelay: 0 });
  await expect(predict(1)).rejects.toMatchObject({ code: 'ERR_BATCH_SIZE_MISMATCH', expected: 1, received: 2 });
});

test('a non-array result is a mismatch', async () => {
  const predict = batchedFn<number, number>({ handler: () => 'nope' as never, maxDelay: 0 });
  await expect(predict(1)).rejects.toThrow('Handler must return an array of 1 outputs, got a non-array value');
});

test('a typed array of outputs is accepted', async () => {
  const predict = batchedFn<number, number>({
    handler: (batch) => Float64Array.from(batch, (x) => x / 2) as never,
    maxDelay: 0,
  });
  expect(await Promise.all([predict(1), predict(4)])).toEqual([0.5, 2]);
});

test('an Error in output slot i rejects only caller i', async () => {
  const bad = new RangeError('input 2 is out of vocabulary');
  const predict = batchedFn<number, number>({
    handler: (batch) => batch.map((x) => (x === 2 ? bad : x * 10)),
    maxBatchSize: 3,
    maxDelay: 0,
  });
  const results = await Promise.allSettled([predict(1), predict(2), predict(3)]);
  expect(results).toEqual([
    { status: 'fulfilled', value: 10 },
    { status: 'rejected', reason: bad },
    { status: 'fulfilled', value: 30 },
  ]);
});

test('a call never throws synchronously, whatever it is given', () => {
  const predict = batchedFn<number, number>({
    handler: (b) => b,
    size: () => {
      throw new Error('bad size');
    },
  });
  expect(() => predict(1).catch(() => {})).not.toThrow();
});
