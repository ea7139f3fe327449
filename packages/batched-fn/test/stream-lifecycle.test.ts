import { expect, test } from 'vitest';
import { batchedStream, ClosedError, QueueFullError } from 'batched-fn';
import { collect, counting } from './stream-helpers.js';

test('beyond channelCap the stream refuses on its first next(); the call itself never throws', async () => {
  const { generate } = counting({ maxBatchSize: 1, channelCap: 1, maxDelay: 20 });
  const a = generate({ id: 'A', length: 1 });
  const refused = generate({ id: 'B', length: 1 });
  await expect(refused.next()).rejects.toBeInstanceOf(QueueFullError);
  expect((await collect(a)).values).toEqual(['A:0']);
});

test('close() refuses new sequences with ERR_CLOSED, runs waiting and active ones to the end, then resolves', async () => {
  const { generate } = counting({ maxBatchSize: 1, maxDelay: 1000 });
  const a = collect(generate({ id: 'A', length: 3 }));
  const b = collect(generate({ id: 'B', length: 2 }));
  const closed = generate.close();
  await expect(generate({ id: 'C', length: 1 }).next()).rejects.toBeInstanceOf(ClosedError);
  await closed;
  expect((await a).values).toEqual(['A:0', 'A:1', 'A:2']);
  expect((await b).values).toEqual(['B:0', 'B:1']);
});

test('destroy() ends every stream at once, waiting and running', async () => {
  const generate = batchedStream<number, number, number>({
    step: async (states) => {
      await new Promise((resolve) => setTimeout(resolve, 10));
      return states.map((s) => ({ value: s }));
    },
    maxBatchSize: 1,
    maxDelay: 0,
  });
  const running = generate(1);
  const waiting = generate(2);
  expect(await running.next()).toEqual({ value: 1, done: false });
  generate.destroy();
  await expect(running.next()).rejects.toBeInstanceOf(ClosedError);
  await expect(waiting.next()).rejects.toBeInstanceOf(ClosedError);
  expect(generate.stats).toMatchObject({ active: 0, waiting: 0 });
});

test('options are validated like batchedFn options', () => {
  expect(() => batchedStream({ step: () => [], maxBatchSize: 0 })).toThrow(
    new RangeError('Expected `maxBatchSize` to be an integer from 1 and up, got `0` (number)'),
  );
  expect(() => batchedStream({ step: () => [], mode: 'batch' as never })).toThrow(
    new TypeError("Expected `mode` to be 'continuous' or 'static', got `\"batch\"` (string)"),
  );
  expect(() => batchedStream({ step: () => [], bogus: 1 } as never)).toThrow(new TypeError('Unknown option `bogus`'));
});
