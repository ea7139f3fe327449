import { expect, test } from 'vitest';
import { BatchSizeMismatchError, batchedStream } from 'batched-fn';
import { collect, counting } from './stream-helpers.js';

test('an Error in slot i ends only stream i; the others go on', async () => {
  const { generate } = counting();
  const [a, b] = await Promise.all([
    collect(generate({ id: 'A', length: 3, fail: 1 })),
    collect(generate({ id: 'B', length: 3 })),
  ]);
  expect(a.values).toEqual(['A:0']);
  expect((a.error as Error).message).toBe('A failed');
  expect(b).toEqual({ values: ['B:0', 'B:1', 'B:2'] });
});

test('start or step throwing ends every stream of that call with the same error, and the generator keeps serving', async () => {
  let fail: 'start' | 'step' | undefined = 'start';
  const boom = new Error('boom');
  const generate = batchedStream<number, number, number>({
    start: (inputs) => {
      if (fail === 'start') throw boom;
      return inputs;
    },
    step: (states) => {
      if (fail === 'step') throw boom;
      return states.map((s) => ({ value: s, done: true }));
    },
    maxBatchSize: 2,
    maxDelay: 0,
  });
  const first = await Promise.all([collect(generate(1)), collect(generate(2))]);
  expect(first.map((r) => r.error)).toEqual([boom, boom]);
  fail = 'step';
  const second = await Promise.all([collect(generate(3)), collect(generate(4))]);
  expect(second.map((r) => r.error)).toEqual([boom, boom]);
  fail = undefined;
  expect(await collect(generate(5))).toEqual({ values: [5] });
  expect(generate.stats.ended).toEqual({ done: 1, error: 4, aborted: 0, timeout: 0 });
});

test.each(['inline', 'worker'] as const)(
  'a start returning the wrong number of states is ERR_BATCH_SIZE_MISMATCH for its streams, %s',
  async (mode) => {
    // One state for however many inputs: the start's two streams both fail, with the same error in both modes.
    const source =
      'export const start = () => [0]; export const step = (s) => s.map(() => ({ value: 1, done: true }));';
    const generate =
      mode === 'inline'
        ? batchedStream<number, number, number>({
            start: () => [0],
            step: (states) => states.map(() => ({ value: 1, done: true })),
            maxDelay: 5_000,
            maxBatchSize: 2,
          })
        : batchedStream<number, number>({
            worker: `data:text/javascript,${encodeURIComponent(source)}`,
            maxDelay: 5_000,
            maxBatchSize: 2,
          });
    try {
      const results = await Promise.all([collect(generate(1)), collect(generate(2))]);
      for (const { values, error } of results) {
        expect(values).toEqual([]);
        expect(error).toBeInstanceOf(BatchSizeMismatchError);
        expect((error as BatchSizeMismatchError).code).toBe('ERR_BATCH_SIZE_MISMATCH');
        expect((error as Error).message).toBe('Handler returned 1 outputs for a batch of 2 inputs');
      }
      expect(generate.stats.ended).toEqual({ done: 0, error: 2, aborted: 0, timeout: 0 });
    } finally {
      await generate.close();
    }
  },
);

test.each(['inline', 'worker'] as const)(
  'a step returning the wrong number of outputs is ERR_BATCH_SIZE_MISMATCH for its streams, %s',
  async (mode) => {
    const generate =
      mode === 'inline'
        ? batchedStream<number, number, number>({ step: () => [], maxDelay: 0 })
        : batchedStream<number, number>({
            worker: `data:text/javascript,${encodeURIComponent('export const step = () => [];')}`,
            maxDelay: 0,
          });
    try {
      const { error } = await collect(generate(1));
      expect(error).toBeInstanceOf(BatchSizeMismatchError);
      expect((error as Error).message).toBe('Handler returned 0 outputs for a batch of 1 inputs');
    } finally {
      await generate.close();
    }
  },
);
