import { afterAll, afterEach, beforeAll, expect, test } from 'vitest';
import { batchedFn, type BatchedFn } from 'batched-fn';
import { remoteBatchedFn, type RemoteWorker, startRemoteWorker } from '@batched-fn/redis';
import { TestRedis } from './redis-server.js';

const redis = new TestRedis();
beforeAll(async () => redis.start());
afterAll(async () => redis.stop());

let prefix = '';
let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const step of cleanup.reverse()) await step();
  cleanup = [];
});

function nextPrefix(): string {
  prefix = `t${Math.random().toString(36).slice(2, 8)}`;
  return prefix;
}

interface Seen {
  batches: number[][];
}

async function worker(
  options: {
    maxBatchSize?: number;
    maxDelay?: number | 'auto';
    claimIdleMs?: number;
    handlerDelay?: number;
    seen?: Seen;
  } = {},
): Promise<RemoteWorker<number, number>> {
  const seen = options.seen;
  let remote: RemoteWorker<number, number> | undefined;
  // The worker's own batcher does the batching: its window counts from each entry's arrival in Redis.
  const local: BatchedFn<number, number> = batchedFn({
    handler: async (batch: number[]) => {
      seen?.batches.push([...batch]);
      if (options.handlerDelay) await new Promise((resolve) => setTimeout(resolve, options.handlerDelay));
      return batch.map((x) => (x === 13 ? new RangeError('unlucky') : x * 2));
    },
    maxBatchSize: options.maxBatchSize ?? 16,
    maxDelay: options.maxDelay ?? 5,
    onBatch: (info) => remote?.observe(info),
  });
  remote = await startRemoteWorker({
    redis: redis.url,
    name: 'm',
    prefix,
    predict: local,
    claimIdleMs: options.claimIdleMs ?? 30_000,
  });
  const started = remote;
  cleanup.push(async () => {
    await started.stop();
    await local.close();
  });
  return remote;
}

function frontend(options: { channelCap?: number; drainTimeout?: number } = {}) {
  const predict = remoteBatchedFn<number, number>({ redis: redis.url, name: 'm', prefix, ...options });
  cleanup.push(async () => predict.destroy());
  return predict;
}

test('requests from two frontends are answered correctly and share batches', async () => {
  nextPrefix();
  const seen: Seen = { batches: [] };
  await worker({ seen, maxDelay: 20 });
  const a = frontend();
  const b = frontend();
  await Promise.all([a.ready(), b.ready()]);
  const calls = [...Array.from({ length: 10 }, (_, i) => a(i)), ...Array.from({ length: 10 }, (_, i) => b(100 + i))];
  expect(await Promise.all(calls)).toEqual([
    ...Array.from({ length: 10 }, (_, i) => i * 2),
    ...Array.from({ length: 10 }, (_, i) => (100 + i) * 2),
  ]);
  expect(seen.batches.some((batch) => batch.some((x) => x < 100) && batch.some((x) => x >= 100))).toBe(true);
  expect(seen.batches.flat().sort((x, y) => x - y)).toEqual(calls.map((_, i) => (i < 10 ? i : 90 + i)));
  expect(a.stats).toMatchObject({ calls: 10, completed: 10, failed: 0 });
  expect(a.stats.batches).toBeGreaterThan(0);
});

test('errors keep their codes: a handler error in one slot rejects only that caller', async () => {
  nextPrefix();
  await worker();
  const predict = frontend();
  const results = await Promise.allSettled([predict(1), predict(13), predict(3)]);
  expect(results[0]).toEqual({ status: 'fulfilled', value: 2 });
  expect(results[2]).toEqual({ status: 'fulfilled', value: 6 });
  expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ name: 'RangeError', message: 'unlucky' });
});

test('queue full: beyond channelCap entries, calls reject at once with ERR_QUEUE_FULL and nothing is trimmed', async () => {
  nextPrefix();
  const predict = frontend({ channelCap: 2 });
  const first = predict(1);
  const second = predict(2);
  await expect(predict(3)).rejects.toMatchObject({ code: 'ERR_QUEUE_FULL' });
  const client = redis.client();
  expect(await client.xlen(`${prefix}:m:requests`)).toBe(2);
  await worker();
  expect(await Promise.all([first, second])).toEqual([2, 4]);
  client.disconnect();
});

test('a deadline that passes before pickup rejects with ERR_TIMEOUT and deletes the entry', async () => {
  nextPrefix();
  const predict = frontend();
  const client = redis.client();
  await expect(predict(1, { timeout: 50 })).rejects.toMatchObject({ code: 'ERR_TIMEOUT' });
  await new Promise((resolve) => setTimeout(resolve, 50));
  expect(await client.xlen(`${prefix}:m:requests`)).toBe(0);
  client.disconnect();
});

test('entries that expire while queued are skipped by the worker, not run', async () => {
  nextPrefix();
  const seen: Seen = { batches: [] };
  const predict = frontend();
  await predict.ready();
  const late = predict(5, { timeout: 30 }).catch((e: unknown) => e);
  const client = redis.client();
  // Keep the entry from being deleted by its frontend's timeout: copy it, as a crashed frontend would leave it.
  while ((await client.xlen(`${prefix}:m:requests`)) < 1) await new Promise((resolve) => setTimeout(resolve, 5));
  const [first] = await client.xrange(`${prefix}:m:requests`, '-', '+');
  expect(first).toBeDefined();
  const fields = (first as [string, string[]])[1];
  await new Promise((resolve) => setTimeout(resolve, 60));
  expect(await late).toMatchObject({ code: 'ERR_TIMEOUT' });
  await client.xadd(`${prefix}:m:requests`, '*', ...fields);
  const remote = await worker({ seen });
  while (remote.stats.expired < 1) await new Promise((resolve) => setTimeout(resolve, 10));
  expect(seen.batches.flat()).not.toContain(5);
  client.disconnect();
});

test('abort before pickup deletes the entry', async () => {
  nextPrefix();
  const predict = frontend();
  await predict.ready();
  const client = redis.client();
  const controller = new AbortController();
  const call = predict(7, { signal: controller.signal });
  while ((await client.xlen(`${prefix}:m:requests`)) < 1) await new Promise((resolve) => setTimeout(resolve, 5));
  controller.abort(new Error('client left'));
  await expect(call).rejects.toThrow('client left');
  while ((await client.xlen(`${prefix}:m:requests`)) > 0) await new Promise((resolve) => setTimeout(resolve, 5));
  expect(await client.xlen(`${prefix}:m:requests`)).toBe(0);
  client.disconnect();
});

test('entries held by a dead consumer are reclaimed and answered, each caller exactly once', async () => {
  nextPrefix();
  const predict = frontend();
  await predict.ready();
  const client = redis.client();
  const calls = [1, 2, 3].map((x) => predict(x));
  while ((await client.xlen(`${prefix}:m:requests`)) < 3) await new Promise((resolve) => setTimeout(resolve, 5));
  // A worker that read the entries and died: they sit in its pending list, unanswered.
  await client.xreadgroup('GROUP', 'workers', 'dead-worker', 'COUNT', 10, 'STREAMS', `${prefix}:m:requests`, '>');
  const remote = await worker({ claimIdleMs: 200 });
  expect(await Promise.all(calls)).toEqual([2, 4, 6]);
  expect(remote.stats.reclaimed).toBe(3);
  expect(predict.stats).toMatchObject({ completed: 3, failed: 0 });
  client.disconnect();
});

test('a clean stop finishes the batch in hand before leaving', async () => {
  nextPrefix();
  const seen: Seen = { batches: [] };
  const remote = await worker({ seen, handlerDelay: 200 });
  const predict = frontend();
  const calls = [1, 2].map((x) => predict(x));
  while (seen.batches.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
  const stopped = remote.stop();
  expect(await Promise.all(calls)).toEqual([2, 4]);
  await stopped;
});

test('Redis restarted under a running frontend and worker: waiting calls reject with ERR_UNAVAILABLE, then both recover', async () => {
  nextPrefix();
  const seen: Seen = { batches: [] };
  await worker({ seen, handlerDelay: 400 });
  const predict = frontend();
  await predict.ready();
  const waiting = predict(1).catch((e: unknown) => e); // the worker holds it for 400 ms
  while (seen.batches.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
  await redis.stop();
  expect(await waiting).toMatchObject({ code: 'ERR_UNAVAILABLE', name: 'UnavailableError' });
  await expect(predict(2)).rejects.toMatchObject({ code: 'ERR_UNAVAILABLE' });
  // Restarted without persistence: the stream, its consumer group and the replies are gone.
  await redis.start();
  let answer: unknown;
  for (let i = 0; i < 100 && answer === undefined; i++) {
    answer = await predict(3).catch(() => undefined);
    if (answer === undefined) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  expect(answer).toBe(6);
});

test('close() waits for answers already on their way, but not forever', async () => {
  nextPrefix();
  const seen: Seen = { batches: [] };
  await worker({ seen, handlerDelay: 100 });
  const served = frontend();
  const answered = served(4);
  while (seen.batches.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
  await served.close();
  expect(await answered).toBe(8);
  await expect(served(5)).rejects.toMatchObject({ code: 'ERR_CLOSED' });

  nextPrefix(); // a model nobody serves
  const orphaned = frontend({ drainTimeout: 200 });
  const lost = orphaned(1).catch((e: unknown) => e);
  await orphaned.ready();
  const started = performance.now();
  await orphaned.close();
  expect(performance.now() - started).toBeGreaterThanOrEqual(150);
  expect(await lost).toMatchObject({
    code: 'ERR_CLOSED',
    message: 'Closed before an answer came back (waited 200 ms): is any worker running?',
  });
});

test("maxDelay 'auto' on the worker sends a lone request at once; a fixed window holds it", async () => {
  nextPrefix();
  await worker({ maxDelay: 300 });
  const windowed = frontend();
  await windowed.ready();
  let started = performance.now();
  expect(await windowed(1)).toBe(2);
  expect(performance.now() - started).toBeGreaterThanOrEqual(290);
  for (const step of cleanup.splice(0).reverse()) await step();

  nextPrefix();
  await worker({ maxDelay: 'auto' });
  const adaptive = frontend();
  await adaptive.ready();
  for (let i = 0; i < 10; i++) {
    started = performance.now();
    expect(await adaptive(i)).toBe(i * 2);
    expect(performance.now() - started).toBeLessThan(150);
  }
  expect(adaptive.stats.dispatchReasons.adaptive).toBe(10);
});
