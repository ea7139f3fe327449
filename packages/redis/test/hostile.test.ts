import { randomUUID } from 'node:crypto';
import { deserialize, serialize } from 'node:v8';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { batchedFn } from 'batched-fn';
import { remoteBatchedFn, startRemoteWorker } from '@batched-fn/redis';
import { TestRedis } from './redis-server.js';

// Whoever can write to a model's stream can write anything. These entries sit next to real traffic.
const redis = new TestRedis();
beforeAll(async () => redis.start());
afterAll(async () => redis.stop());

interface Item {
  values: number[];
  rows: number;
}

/** A model that concatenates rows, as a real batch would: a short item would shift every row after it. */
function concatModel(seen: number[][]) {
  return batchedFn<Item, number[]>({
    handler: (batch) => {
      const flat = batch.flatMap((item) => item.values);
      seen.push(flat);
      let offset = 0;
      return batch.map((item) => {
        const out = flat.slice(offset, offset + item.rows * 2).map((v) => v * 10);
        offset += item.rows * 2;
        return out;
      });
    },
    maxBatchSize: 64,
    maxDelay: 30,
    size: (item) => item.rows,
  });
}

const validate = (input: unknown): void => {
  const item = input as Item;
  if (
    typeof item !== 'object' ||
    item === null ||
    !Number.isInteger(item.rows) ||
    !Array.isArray(item.values) ||
    item.values.length !== item.rows * 2
  ) {
    throw Object.assign(new Error('values must hold 2 numbers per row'), { status: 400 });
  }
};

test('a lying entry fails alone with a 400-class error; every real caller gets its own answer', async () => {
  const prefix = `h${Math.random().toString(36).slice(2, 8)}`;
  const seen: number[][] = [];
  const local = concatModel(seen);
  const worker = await startRemoteWorker<Item, number[]>({
    redis: redis.url,
    name: 'm',
    prefix,
    predict: local,
    validate,
  });
  const predict = remoteBatchedFn<Item, number[]>({ redis: redis.url, name: 'm', prefix, size: (item) => item.rows });
  await predict.ready();
  const client = redis.client();
  const replyKey = `${prefix}:reply:${randomUUID()}`;
  const stream = `${prefix}:m:requests`;
  const real = Array.from({ length: 40 }, (_, i) => predict({ values: [i, i + 0.5], rows: 1 }));
  // A declared row with no values, and an entry whose payload is not even a structured clone.
  await client.xadd(
    stream,
    '*',
    'i',
    'evil:1',
    'r',
    replyKey,
    'd',
    '0',
    'n',
    '1',
    'p',
    serialize({ values: [], rows: 1 }),
  );
  await client.xadd(stream, '*', 'i', 'evil:2', 'r', replyKey, 'd', '0', 'n', '1', 'p', Buffer.from('not v8'));
  await client.xadd(
    stream,
    '*',
    'i',
    '',
    'r',
    replyKey,
    'd',
    'soon',
    'n',
    'x',
    'p',
    serialize({ values: [1, 2], rows: 1 }),
  );
  const answers = await Promise.all(real);
  expect(answers).toEqual(real.map((_, i) => [i * 10, (i + 0.5) * 10]));
  for (;;) {
    if (((await client.xlen(replyKey)) as number) >= 1 && worker.stats.invalid >= 3) break;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  expect(worker.stats.invalid).toBe(3);
  const replies = (await client.xrangeBuffer(replyKey, '-', '+')) as [Buffer, Buffer[]][];
  const results = replies.flatMap(
    ([, fields]) => (deserialize(fields[1] as Buffer) as { results: unknown[][] }).results,
  );
  const error = (id: string) =>
    results.find((r) => r[0] === id)?.[2] as { name: string; message: string; fields: Record<string, unknown> };
  expect(error('evil:1')).toMatchObject({
    name: 'Error',
    message: 'values must hold 2 numbers per row',
    fields: { status: 400 },
  });
  expect(results.find((r) => r[0] === 'evil:2')?.[1]).toBe(false);
  expect(error('')).toMatchObject({
    name: 'InvalidEntryError',
    message: 'Invalid request: request id must have 1 to 128 characters',
    fields: { statusCode: 400 },
  });
  // The model never saw a short row: every batch it ran holds 2 values per real call.
  expect(seen.flat().length).toBe(80);
  await worker.stop();
  await local.close();
  await predict.close();
  client.disconnect();
});

test('a reply key outside the deployment is never written to: the entry is dropped unanswered', async () => {
  const prefix = `h${Math.random().toString(36).slice(2, 8)}`;
  const local = concatModel([]);
  const worker = await startRemoteWorker<Item, number[]>({
    redis: redis.url,
    name: 'm',
    prefix,
    predict: local,
    validate,
  });
  const client = redis.client();
  const stream = `${prefix}:m:requests`;
  for (const target of [
    'victim:list',
    `${prefix}:m:requests`,
    `${prefix}:reply:not-a-uuid`,
    `other:reply:${randomUUID()}`,
  ]) {
    await client.xadd(
      stream,
      '*',
      'i',
      'x:1',
      'r',
      target,
      'd',
      '0',
      'n',
      '1',
      'p',
      serialize({ values: [1, 2], rows: 1 }),
    );
  }
  while (worker.stats.unanswerable < 4) await new Promise((resolve) => setTimeout(resolve, 10));
  expect(await client.exists('victim:list', `${prefix}:reply:not-a-uuid`)).toBe(0);
  expect(await client.xlen(stream)).toBe(0); // acknowledged and deleted, not left to be reclaimed forever
  expect(worker.stats).toMatchObject({ unanswerable: 4, entries: 0 });
  await worker.stop();
  await local.close();
  client.disconnect();
});

test('options and call options are validated like the core: a bad channelCap throws, a huge timeout rejects', async () => {
  expect(() => remoteBatchedFn({ redis: redis.url, name: 'm', channelCap: 0 })).toThrow(
    new RangeError('Expected `channelCap` to be an integer from 1 and up, or Infinity, got `0` (number)'),
  );
  expect(() => remoteBatchedFn({ redis: redis.url, name: 'm', drainTimeout: 2 ** 31 })).toThrow(
    new RangeError(
      'Expected `drainTimeout` to be a number of milliseconds from 0 to 2147483647, got `2147483648` (number)',
    ),
  );
  expect(() => remoteBatchedFn({ redis: redis.url, name: 'm', maxBatchSize: 4 } as never)).toThrow(
    new TypeError('Unknown option `maxBatchSize`'),
  );
  expect(() => remoteBatchedFn({ redis: redis.url } as never)).toThrow(new TypeError('Expected `name` to be given'));
  const predict = remoteBatchedFn<number, number>({ redis: redis.url, name: 'm' });
  await expect(predict(1, { timeout: 2 ** 31 })).rejects.toThrow(
    new RangeError('Expected `timeout` to be a number of milliseconds from 0 to 2147483647, got `2147483648` (number)'),
  );
  predict.destroy();
  const local = concatModel([]);
  await expect(
    startRemoteWorker({ redis: redis.url, name: 'm', predict: local, claimIdleMs: 2 ** 31 }),
  ).rejects.toThrow(
    new RangeError(
      'Expected `claimIdleMs` to be a number of milliseconds above 0 to 2147483647, got `2147483648` (number)',
    ),
  );
  await local.close();
});
