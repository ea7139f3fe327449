// biome-ignore-all lint/suspicious/noThenProperty: these tests hand the batcher thenables that misbehave on purpose.
import { expect, test } from 'vitest';
import { batchedFn, BatchSizeMismatchError } from 'batched-fn';
import { track } from './helpers.js';

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('a thenable whose then() throws rejects every caller of the batch, and the batcher goes on', async () => {
  let round = 0;
  const predict = batchedFn<number, number>({
    handler: (batch) => {
      if (round++ === 0) {
        return {
          then() {
            throw new Error('then exploded');
          },
        } as unknown as number[];
      }
      return batch;
    },
    maxBatchSize: 4,
    maxDelay: 0,
  });
  const first = [track(predict(1)), track(predict(2))];
  await tick();
  for (const call of first) {
    expect(call.status).toBe('rejected');
    expect((call.error as Error).message).toBe('then exploded');
  }
  expect(await predict(3)).toBe(3);
  expect(predict.stats.failures).toEqual({ handler: 2 });
});

test('a then getter that throws is adopted the same way', async () => {
  const result = {};
  Object.defineProperty(result, 'then', {
    get() {
      throw new Error('getter exploded');
    },
  });
  const predict = batchedFn<number, number>({ handler: () => result as number[], maxDelay: 0 });
  await expect(predict(1)).rejects.toThrow('getter exploded');
});

test('a thenable that resolves twice settles its callers once, with the first value', async () => {
  const predict = batchedFn<number, number>({
    handler: (batch) =>
      ({
        then(resolve: (v: number[]) => void) {
          resolve(batch.map((x) => x + 1));
          resolve(batch.map((x) => x + 100));
        },
      }) as unknown as number[],
    maxBatchSize: 2,
    maxDelay: 0,
  });
  const calls = [track(predict(1)), track(predict(2))];
  await tick();
  expect(calls.map((c) => [c.value, c.settles])).toEqual([
    [2, 1],
    [3, 1],
  ]);
  expect(predict.stats.completed).toBe(2);
  expect(predict.stats.batches).toBe(1);
});

test('a promise whose own then() was replaced cannot throw into the dispatcher', async () => {
  const predict = batchedFn<number, number>({
    handler: (batch) => {
      const promise = Promise.resolve(batch);
      promise.then = () => {
        throw new Error('patched then');
      };
      return promise;
    },
    maxDelay: 0,
  });
  expect(await predict(5)).toBe(5);
});

test('a plain object (neither an array nor a thenable) is an output-count mismatch', async () => {
  const predict = batchedFn<number, number>({ handler: () => ({ length: 1 }) as unknown as number[], maxDelay: 0 });
  const error = await predict(1).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(BatchSizeMismatchError);
});
