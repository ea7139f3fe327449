import { MessageChannel } from 'node:worker_threads';
import { expect, onTestFinished, test, vi } from 'vitest';
import { batchedFn, BatchTimeoutError, ClosedError } from 'batched-fn';
import { advance, track } from './helpers.js';

test('inline: a batch running past batchTimeout rejects its callers; the slot is freed and the late result dropped', async () => {
  useFakeClockHere();
  const settleLate: ((outputs: number[]) => void)[] = [];
  const seen: number[][] = [];
  const predict = batchedFn<number, number>({
    handler: (batch) => {
      seen.push([...batch]);
      if (batch.includes(0)) return new Promise((resolve) => settleLate.push(resolve));
      return batch.map((x) => x * 10);
    },
    maxBatchSize: 2,
    maxDelay: 0,
    batchTimeout: 100,
  });
  const hung = [track(predict(0)), track(predict(1))];
  await advance(0);
  const next = track(predict(2));
  await advance(99);
  expect(hung.map((c) => c.status)).toEqual(['pending', 'pending']);
  expect(next.status).toBe('pending'); // concurrency 1: behind the hung batch
  await advance(1);
  // Decided one turn of the event loop later, once what waited in its ports and sockets is read.
  await vi.runOnlyPendingTimersAsync();
  for (const call of hung) {
    expect(call.status).toBe('rejected');
    expect(call.error).toBeInstanceOf(BatchTimeoutError);
    expect((call.error as BatchTimeoutError).code).toBe('ERR_BATCH_TIMEOUT');
    expect((call.error as BatchTimeoutError).batchTimeout).toBe(100);
  }
  await advance(0);
  expect(next.value).toBe(20);
  settleLate.shift()?.([0, 10]);
  await advance(0);
  for (const call of hung) expect(call.settles).toBe(1);
  expect(seen).toEqual([[0, 1], [2]]);
  const stats = predict.stats;
  expect(stats.failures).toEqual({ ERR_BATCH_TIMEOUT: 2 });
  expect(stats.completed).toBe(1);
  expect(stats.inFlight).toBe(0);
  await predict.close();
});

test('close({ timeout }) destroys what a hung handler holds, so shutdown ends', async () => {
  useFakeClockHere();
  const predict = batchedFn<number, number>({ handler: () => new Promise(() => {}), maxBatchSize: 1, maxDelay: 0 });
  const running = track(predict(1));
  const queued = track(predict(2));
  await advance(0);
  const closed = track(predict.close({ timeout: 500 }));
  await advance(499);
  expect([running.status, queued.status, closed.status]).toEqual(['pending', 'pending', 'pending']);
  await advance(1);
  expect(closed.status).toBe('fulfilled');
  for (const call of [running, queued]) {
    expect(call.error).toBeInstanceOf(ClosedError);
    expect((call.error as Error).message).toBe(
      'close() timed out after 500 ms; calls still queued or running were rejected',
    );
  }
});

test('close({ timeout }) that is not needed changes nothing', async () => {
  useFakeClockHere();
  const predict = batchedFn<number, number>({ handler: (b) => b, maxDelay: 5 });
  const call = track(predict(7));
  const closed = track(predict.close({ timeout: 1000 }));
  await advance(0);
  expect(call.value).toBe(7);
  expect(closed.status).toBe('fulfilled');
});

const hang = new URL('./fixtures/hang.worker.mjs', import.meta.url);

test('worker mode: a worker stuck in a loop is terminated at batchTimeout and restarted; the next call is served', async () => {
  const predict = batchedFn<string, string>({ worker: hang, maxDelay: 0, batchTimeout: 200 });
  await predict.ready();
  const started = performance.now();
  const error = await predict('spin').catch((e: unknown) => e);
  expect(error).toBeInstanceOf(BatchTimeoutError);
  expect(performance.now() - started).toBeGreaterThanOrEqual(195);
  expect(await predict('fine')).toBe('fine');
  expect(predict.stats.workers[0]?.restarts).toBe(1);
  await predict.close();
});

test('regression: a main thread held past batchTimeout by another callback does not time out a worker that answered', async () => {
  // The handler answers at once; another message handler of the process (the poll phase, as a
  // socket's would be) then holds the main thread for 300 ms. The worker's answer waits in its
  // port, and timers run before the port is read again: the batch must not time out.
  const predict = batchedFn<string, string>({ worker: hang, maxDelay: 0, batchTimeout: 100 });
  await predict.ready();
  const answer = predict('fine');
  const { port1, port2 } = new MessageChannel();
  await new Promise<void>((resolve) => {
    port1.once('message', () => {
      const until = performance.now() + 300;
      while (performance.now() < until);
      resolve();
    });
    // After the batch went to the worker (the pump runs from a microtask).
    void Promise.resolve().then(() => port2.postMessage(0));
  });
  port1.close();
  expect(await answer).toBe('fine');
  expect(predict.stats.failures).toEqual({});
  expect(predict.stats.workers[0]?.restarts).toBe(0);
  await predict.close();
});

test('worker mode: close({ timeout }) ends even when a worker never answers', async () => {
  const predict = batchedFn<string, string>({ worker: hang, maxDelay: 0 });
  const stuck = predict('never').catch((e: unknown) => e);
  await new Promise((resolve) => setTimeout(resolve, 50));
  await predict.close({ timeout: 100 });
  expect(await stuck).toBeInstanceOf(ClosedError);
});

function useFakeClockHere(): void {
  // Fake timers only for the inline tests: worker threads run on real time.
  vi.useFakeTimers();
  onTestFinished(() => {
    vi.useRealTimers();
  });
}
