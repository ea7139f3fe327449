import { expect, test } from 'vitest';
import { batchedStream, TimeoutError } from 'batched-fn';
import { collect, counting } from './stream-helpers.js';

test('abort while waiting: the sequence never reaches start; abort while running: step never sees it again', async () => {
  const { generate, steps, started } = counting({ maxBatchSize: 1 });
  const running = new AbortController();
  const waiting = new AbortController();
  const first = generate({ id: 'A', length: 5 }, { signal: running.signal });
  const second = generate({ id: 'B', length: 2 }, { signal: waiting.signal });
  const a = first.next();
  waiting.abort(new Error('not needed'));
  expect(await a).toEqual({ value: 'A:0', done: false });
  running.abort(new Error('enough'));
  await expect(first.next()).rejects.toThrow('enough');
  await expect(second.next()).rejects.toThrow('not needed');
  await new Promise((resolve) => setTimeout(resolve, 5));
  expect(started.flat()).not.toContain('B');
  expect(steps.filter((s) => s.includes('A')).length).toBeLessThanOrEqual(2);
  expect(generate.stats.ended.aborted).toBe(2);
});

test('breaking out of for await ends the stream quietly and frees its slot', async () => {
  const { generate, steps } = counting({ maxBatchSize: 1 });
  const values: string[] = [];
  for await (const value of generate({ id: 'A', length: 100 })) {
    values.push(value);
    if (values.length === 2) break;
  }
  const after = await collect(generate({ id: 'B', length: 1 }));
  expect(after.values).toEqual(['B:0']);
  expect(steps.filter((s) => s[0] === 'A').length).toBeLessThanOrEqual(3);
  expect(generate.stats.active).toBe(0);
});

test('timeout ends a stream with ERR_TIMEOUT, and its state is not stepped again', async () => {
  const seen: number[] = [];
  const generate = batchedStream<number, number, number>({
    step: async (states) => {
      seen.push(...states);
      await new Promise((resolve) => setTimeout(resolve, 20));
      return states.map((s) => ({ value: s }));
    },
    maxDelay: 0,
  });
  const result = await collect(generate(7, { timeout: 50 }));
  expect(result.error).toBeInstanceOf(TimeoutError);
  const count = seen.length;
  await new Promise((resolve) => setTimeout(resolve, 60));
  expect(seen.length).toBeLessThanOrEqual(count + 1);
  expect(generate.stats.ended.timeout).toBe(1);
  generate.destroy();
});
