import { expect, test } from 'vitest';
import { batchedFn, ClosedError } from 'batched-fn';
import { advance, flush, gatedHandler, recordingHandler, track, useFakeClock } from './helpers.js';

useFakeClock();

test('close() stops intake, flushes the queue without waiting for the delay, finishes in-flight work, then resolves', async () => {
  const gate = gatedHandler<number>();
  const predict = batchedFn({ handler: gate.handler, maxBatchSize: 2, maxDelay: 10_000 });
  const calls = [1, 2, 3, 4, 5].map((i) => track(predict(i)));
  await flush();
  expect(gate.batches).toEqual([[1, 2]]);
  const closed = track(predict.close());
  await expect(predict(6)).rejects.toBeInstanceOf(ClosedError);
  await expect(predict(6)).rejects.toMatchObject({ code: 'ERR_CLOSED' });
  gate.release();
  await flush();
  expect(gate.batches).toEqual([
    [1, 2],
    [3, 4],
  ]);
  gate.release();
  await flush();
  expect(gate.batches).toEqual([[1, 2], [3, 4], [5]]);
  expect(closed.status).toBe('pending');
  gate.release();
  await flush();
  expect(closed.status).toBe('fulfilled');
  expect(calls.map((c) => c.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'fulfilled']);
  expect(predict.stats.dispatchReasons).toEqual({ full: 2, delay: 0, backlog: 0, close: 1, adaptive: 0, preferred: 0 });
});

test('close() on an idle batcher resolves at once and is idempotent', async () => {
  const { handler } = recordingHandler<number>();
  const predict = batchedFn({ handler });
  const first = predict.close();
  expect(predict.close()).toBe(first);
  await first;
  await expect(predict.ready()).rejects.toBeInstanceOf(ClosedError);
});

test('destroy() rejects queued and running callers at once and drops late outputs', async () => {
  const gate = gatedHandler<number>();
  const predict = batchedFn({ handler: gate.handler, maxBatchSize: 1, maxDelay: 0 });
  const running = track(predict(1));
  const queued = track(predict(2));
  await flush();
  predict.destroy();
  await flush();
  expect(running.status).toBe('rejected');
  expect(queued.status).toBe('rejected');
  expect(running.error).toBeInstanceOf(ClosedError);
  expect((queued.error as ClosedError).message).toBe('The batcher was destroyed');
  gate.release();
  await flush();
  expect(running.settles).toBe(1);
  expect(gate.batches).toEqual([[1]]);
  await expect(predict(3)).rejects.toMatchObject({ code: 'ERR_CLOSED' });
  await predict.close();
});

test('destroy(reason) rejects with that reason', async () => {
  const { handler } = recordingHandler<number>();
  const predict = batchedFn({ handler, maxDelay: 100 });
  const call = track(predict(1));
  const reason = new Error('shutting down');
  predict.destroy(reason);
  await flush();
  expect(call.error).toBe(reason);
  await advance(200);
  expect(call.settles).toBe(1);
});

test('destroy() during close() lets close() resolve', async () => {
  const gate = gatedHandler<number>();
  const predict = batchedFn({ handler: gate.handler, maxDelay: 0 });
  void predict(1).catch(() => {});
  await flush();
  const closed = track(predict.close());
  predict.destroy();
  await flush();
  expect(closed.status).toBe('fulfilled');
});
