import { afterAll, beforeAll, expect, test } from 'vitest';
import { batchedFn } from 'batched-fn';
import { remoteBatchedFn, type RemoteWorker, startRemoteWorker } from '@batched-fn/redis';
import { TestRedis } from './redis-server.js';

// The remote worker is the core batcher fed from the stream: rows, priorities and read-ahead.
const redis = new TestRedis();
beforeAll(async () => redis.start());
afterAll(async () => redis.stop());

interface Item {
  id: number;
  rows: number;
}

/** `maxDelay` long enough that a batch leaves only when full where a test asserts exact shapes (a loaded machine may deliver the second entry after 20 ms). */
function gated(maxDelay = 20) {
  const gates: (() => void)[] = [];
  const batches: Item[][] = [];
  const local = batchedFn<Item, number>({
    handler: async (batch) => {
      batches.push([...batch]);
      await new Promise<void>((resolve) => gates.push(resolve));
      return batch.map((x) => x.id);
    },
    maxBatchSize: 8,
    maxDelay,
    size: (x) => x.rows,
  });
  return { local, batches, release: () => gates.shift()?.(), running: () => gates.length };
}

async function until(check: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await check())) await new Promise((resolve) => setTimeout(resolve, 5));
}

async function setup(local: ReturnType<typeof gated>['local']) {
  const prefix = `c${Math.random().toString(36).slice(2, 8)}`;
  const worker: RemoteWorker<Item, number> = await startRemoteWorker({
    redis: redis.url,
    name: 'm',
    prefix,
    predict: local,
  });
  const front = remoteBatchedFn<Item, number>({ redis: redis.url, name: 'm', prefix, size: (x) => x.rows });
  await front.ready();
  return { worker, front, stream: `${prefix}:m:requests` };
}

test('rows count through size: 4-row requests fill a batch of 8 rows two at a time', async () => {
  const g = gated(2_000);
  const { worker, front } = await setup(g.local);
  const calls = Array.from({ length: 6 }, (_, id) => front({ id, rows: 4 }));
  for (let released = 0; released < 3; released++) {
    await until(() => g.running() > 0);
    g.release();
  }
  expect(await Promise.all(calls)).toEqual([0, 1, 2, 3, 4, 5]);
  expect(g.batches.map((b) => b.map((x) => x.rows))).toEqual([
    [4, 4],
    [4, 4],
    [4, 4],
  ]);
  expect(g.local.stats.dispatchReasons.full).toBe(3);
  await worker.stop();
  await g.local.close();
  front.destroy();
});

test('the worker reads only while its batcher has room; the backlog stays in the stream for other workers', async () => {
  const g = gated();
  const { worker, front, stream } = await setup(g.local);
  const client = redis.client();
  const calls = Array.from({ length: 40 }, (_, id) => front({ id, rows: 1 }));
  await until(() => g.running() === 1);
  await until(() => g.local.stats.queuedRows === 8);
  await new Promise((resolve) => setTimeout(resolve, 50));
  // One batch of 8 running, 8 rows queued (maxBatchSize × concurrency); the other 24 wait in Redis, unread.
  expect(g.local.stats.queuedRows).toBe(8);
  const [, , , consumers] = (await client.xpending(stream, 'workers')) as [
    number,
    string,
    string,
    [string, string][] | null,
  ];
  expect(Number(consumers?.[0]?.[1] ?? 0)).toBe(16);
  expect(await client.xlen(stream)).toBe(40);
  while (
    (await Promise.race([Promise.all(calls).then(() => true), new Promise((r) => setTimeout(() => r(false), 5))])) ===
    false
  )
    g.release();
  expect(await Promise.all(calls)).toEqual(Array.from({ length: 40 }, (_, i) => i));
  await worker.stop();
  await g.local.close();
  front.destroy();
  client.disconnect();
});

test('priority travels in the entry and orders calls inside the worker batcher (within what it has read)', async () => {
  const g = gated();
  const { worker, front } = await setup(g.local);
  const first = front({ id: 0, rows: 8 });
  await until(() => g.running() === 1);
  // Read-ahead is one batch (8 rows): both 4-row calls are read while the first batch runs.
  const low = front({ id: 1, rows: 4 });
  await until(() => g.local.stats.queued === 1);
  const high = front({ id: 2, rows: 4 }, { priority: 5 });
  await until(() => g.local.stats.queued === 2);
  for (let i = 0; i < 2; i++) {
    await until(() => g.running() > 0);
    g.release();
  }
  expect(await Promise.all([first, low, high])).toEqual([0, 1, 2]);
  expect(g.batches.map((b) => b.map((x) => x.id))).toEqual([[0], [2, 1]]);
  await worker.stop();
  await g.local.close();
  front.destroy();
});
