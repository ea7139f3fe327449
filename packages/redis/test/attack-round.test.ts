import { afterAll, beforeAll, expect, test } from 'vitest';
import { batchedFn } from 'batched-fn';
import { remoteBatchedFn, startRemoteWorker } from '@batched-fn/redis';
import { TestRedis } from './redis-server.js';

// An attack round on the fixes of the hardening round: entries written by whoever can write to
// Redis, shaped to defeat the stream repair (stream-repair.ts). Each test is named after its attack.
const redis = new TestRedis();
beforeAll(async () => redis.start());
afterAll(async () => redis.stop());

const MAX_ID = '18446744073709551615-18446744073709551615';
const unique = (): string => `a${Math.random().toString(36).slice(2, 8)}`;

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

test('an entry of 10,000 values ahead of the clock, before waiting requests and the largest ID: the repair re-adds the requests, none is lost', async () => {
  const prefix = unique();
  const stream = `${prefix}:m:requests`;
  const predict = remoteBatchedFn<number, number>({ redis: redis.url, name: 'm', prefix });
  await predict.ready();
  const client = redis.client();
  // An hour ahead of Redis's clock, with more values than Lua's unpack takes (8,000): every entry
  // added after it gets an ID above it, so the repair has to move them all, this one first.
  const [seconds] = (await client.time()) as unknown as [string, string];
  const ahead = Number(seconds) * 1000 + 3_600_000;
  const odd = Array.from({ length: 5_000 }, (_, i) => [`f${i}`, 'v']).flat();
  await client.xadd(stream, `${ahead}-0`, ...odd);
  // No worker yet: three real requests wait in the stream, behind it.
  const waiting = [1, 2, 3].map((x) => predict(x, { timeout: 10_000 }));
  await until('the waiting requests to be in the stream', async () => (await client.xlen(stream)) === 4);
  await client.xadd(stream, MAX_ID, 'x', 'y');
  // The stream is exhausted: this call's XADD repairs it. Before the fix the repair stopped at the
  // odd entry (a Lua error from unpack, which redis.pcall does not catch): the three waiting
  // requests had been deleted and were never added again (each failed ERR_TIMEOUT), and this
  // call failed ERR_UNAVAILABLE "the automatic repair failed" though the stream was repaired.
  const repairing = predict(4, { timeout: 10_000 });
  await until('the repair', () => predict.stats.repairedStreams === 1);
  const local = batchedFn<number, number>({
    handler: (batch) => batch.map((x) => x * 10),
    maxBatchSize: 8,
    maxDelay: 1,
  });
  const worker = await startRemoteWorker<number, number>({ redis: redis.url, name: 'm', prefix, predict: local });
  expect(await Promise.all([...waiting, repairing])).toEqual([10, 20, 30, 40]);
  // The odd entry was dropped rather than added again: it was never a frontend's.
  const left = (await client.xrange(stream, '-', '+')) as [string, string[]][];
  expect(left.every(([, fields]) => fields.length <= 14)).toBe(true);
  await worker.stop();
  await predict.close();
  await local.close();
  client.disconnect();
}, 30_000);
