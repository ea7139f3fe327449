import { expect, test } from 'vitest';
import { batchedFn } from 'batched-fn';
import { advance, flush, gatedHandler, track, useFakeClock } from './helpers.js';

useFakeClock();

test('higher priority goes first; FIFO within a priority', async () => {
  const gate = gatedHandler<string>();
  const predict = batchedFn({ handler: gate.handler, maxBatchSize: 3, maxDelay: 0 });
  void predict('first');
  await flush();
  for (const [name, priority] of [
    ['a0', 0],
    ['b5', 5],
    ['c1', 1],
    ['d5', 5],
    ['e0', 0],
    ['f1', 1],
    ['g9', 9],
  ] as const) {
    void predict(name, { priority });
  }
  for (let i = 0; i < 4; i++) {
    gate.release();
    await flush();
  }
  expect(gate.batches).toEqual([['first'], ['g9', 'b5', 'd5'], ['c1', 'f1', 'a0'], ['e0']]);
});

test('the delay window counts from the oldest call, whatever its priority', async () => {
  const gate = gatedHandler<string>();
  const predict = batchedFn({ handler: gate.handler, maxBatchSize: 8, maxDelay: 10 });
  void predict('low', { priority: -1 });
  await advance(6);
  void predict('high', { priority: 3 });
  await advance(3);
  expect(gate.batches).toEqual([]);
  await advance(1);
  expect(gate.batches).toEqual([['high', 'low']]);
});

test('starvation is strict and bounded only by timeouts: low priority waits while high priority keeps batches full', async () => {
  const gate = gatedHandler<string>();
  const predict = batchedFn({ handler: gate.handler, maxBatchSize: 2, maxDelay: 0 });
  const low = track(predict('low', { priority: 0, timeout: 50 }));
  await flush();
  expect(gate.batches).toEqual([['low']]); // it was alone, so it ran: priority only orders waiting calls
  gate.release();
  await flush();
  const starving = track(predict('starving', { priority: 0, timeout: 50 }));
  void predict('h1', { priority: 1 });
  void predict('h2', { priority: 1 });
  await flush();
  expect(gate.batches.at(-1)).toEqual(['h1', 'h2']);
  // High-priority work keeps arriving and keeps the only slot busy; 'starving' never gets in.
  for (let round = 0; round < 5; round++) {
    void predict(`h${round}a`, { priority: 1 });
    void predict(`h${round}b`, { priority: 1 });
    await advance(10);
    gate.release();
    await flush();
  }
  expect(gate.batches.flat()).not.toContain('starving');
  expect(starving.status).toBe('rejected');
  expect(starving.error).toMatchObject({ code: 'ERR_TIMEOUT', predicted: false });
  expect(low).toMatchObject({ status: 'fulfilled', value: 'low' });
});

test('priority must be a finite number', async () => {
  const predict = batchedFn<number, number>({ handler: (b) => b });
  await expect(predict(1, { priority: Number.NaN })).rejects.toThrow(
    new TypeError('Expected `priority` to be a finite number, got `NaN` (number)'),
  );
  await expect(predict(1, { priority: Infinity })).rejects.toThrow(RangeError);
});
