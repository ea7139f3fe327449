import { expect, test, vi } from 'vitest';
import { batchedFn } from 'batched-fn';
import { advance, flush, gatedHandler, recordingHandler, track, useFakeClock } from './helpers.js';

useFakeClock();

test('an already aborted signal rejects at once with signal.reason', async () => {
  const { batches, handler } = recordingHandler<number>();
  const predict = batchedFn({ handler, maxDelay: 0 });
  const reason = new Error('client went away');
  await expect(predict(1, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
  await flush();
  expect(batches).toEqual([]);
  expect(predict.stats).toMatchObject({ calls: 1, failed: 1, failures: { aborted: 1 }, queued: 0 });
});

test('aborting a queued call removes it before dispatch; the handler never sees it', async () => {
  const { batches, handler } = recordingHandler<number>();
  const predict = batchedFn({ handler, maxBatchSize: 4, maxDelay: 10 });
  const controller = new AbortController();
  const a = track(predict(1));
  const b = track(predict(2, { signal: controller.signal }));
  const c = track(predict(3));
  controller.abort();
  await flush();
  expect(b.status).toBe('rejected');
  expect((b.error as DOMException).name).toBe('AbortError');
  expect(predict.stats.queued).toBe(2);
  await advance(10);
  expect(batches).toEqual([[1, 3]]);
  expect(a).toMatchObject({ status: 'fulfilled', value: 2 });
  expect(c).toMatchObject({ status: 'fulfilled', value: 6 });
});

test('an aborted item frees its place under channelCap', async () => {
  const { handler } = recordingHandler<number>();
  const predict = batchedFn({ handler, maxDelay: 10, channelCap: 1 });
  const controller = new AbortController();
  const first = track(predict(1, { signal: controller.signal }));
  await expect(predict(2)).rejects.toMatchObject({ code: 'ERR_QUEUE_FULL' });
  controller.abort();
  const third = track(predict(3));
  await advance(10);
  expect(first.status).toBe('rejected');
  expect(third).toMatchObject({ status: 'fulfilled', value: 6 });
});

test('aborting after dispatch releases the caller at once and drops its output', async () => {
  const gate = gatedHandler<number>();
  const predict = batchedFn({ handler: gate.handler, maxBatchSize: 2, maxDelay: 0 });
  const controller = new AbortController();
  const a = track(predict(1, { signal: controller.signal }));
  const b = track(predict(2));
  await flush();
  expect(gate.batches).toEqual([[1, 2]]);
  controller.abort(new Error('gone'));
  await flush();
  expect(a.status).toBe('rejected');
  expect((a.error as Error).message).toBe('gone');
  expect(b.status).toBe('pending');
  gate.release();
  await flush();
  expect(b).toMatchObject({ status: 'fulfilled', value: 2 });
  expect(a.settles).toBe(1);
  expect(predict.stats).toMatchObject({ completed: 1, failed: 1 });
});

test('the abort listener is removed once the call settles', async () => {
  const { handler } = recordingHandler<number>();
  const predict = batchedFn({ handler, maxDelay: 0 });
  const controller = new AbortController();
  const removed = vi.spyOn(controller.signal, 'removeEventListener');
  await predict(1, { signal: controller.signal });
  expect(removed).toHaveBeenCalledTimes(1);
  // Aborting later must not touch the settled call.
  controller.abort();
  expect(predict.stats).toMatchObject({ completed: 1, failed: 0 });
});

test('one signal shared by many calls aborts them all, each exactly once', async () => {
  const { batches, handler } = recordingHandler<number>();
  const predict = batchedFn({ handler, maxBatchSize: 8, maxDelay: 5 });
  const controller = new AbortController();
  const calls = [1, 2, 3].map((i) => track(predict(i, { signal: controller.signal })));
  controller.abort();
  await advance(5);
  expect(batches).toEqual([]);
  expect(calls.map((c) => [c.status, c.settles])).toEqual([
    ['rejected', 1],
    ['rejected', 1],
    ['rejected', 1],
  ]);
});
