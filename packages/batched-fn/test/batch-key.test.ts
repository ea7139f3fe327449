import { expect, test } from 'vitest';
import { batchedFn } from 'batched-fn';
import { advance, flush, gatedHandler, useFakeClock } from './helpers.js';

useFakeClock();

interface Req {
  model: string;
  id: number;
}

test('calls with different keys never share a batch, and keys are served oldest-first', async () => {
  const gate = gatedHandler<Req>();
  const predict = batchedFn({ handler: gate.handler, batchKey: (r: Req) => r.model, maxBatchSize: 4, maxDelay: 0 });
  void predict({ model: 'x', id: 0 });
  await flush();
  const order = ['b', 'a', 'b', 'c', 'a', 'b', 'a'];
  order.forEach((model, id) => void predict({ model, id: id + 1 }));
  for (let i = 0; i < 4; i++) {
    gate.release();
    await flush();
  }
  const shapes = gate.batches.map((batch) => batch.map((r) => `${r.model}${r.id}`));
  expect(shapes).toEqual([['x0'], ['b1', 'b3', 'b6'], ['a2', 'a5', 'a7'], ['c4']]);
  for (const batch of gate.batches) expect(new Set(batch.map((r) => r.model)).size).toBe(1);
});

test('a full lane goes at once while another lane waits for its window', async () => {
  const gate = gatedHandler<Req>();
  const predict = batchedFn({
    handler: gate.handler,
    batchKey: (r: Req) => r.model,
    maxBatchSize: 2,
    maxDelay: 50,
    concurrency: 2,
  });
  void predict({ model: 'slow', id: 1 });
  await advance(5);
  void predict({ model: 'busy', id: 2 });
  void predict({ model: 'busy', id: 3 });
  await flush();
  expect(gate.batches.map((b) => b.map((r) => r.id))).toEqual([[2, 3]]);
  await advance(45);
  expect(gate.batches.map((b) => b.map((r) => r.id))).toEqual([[2, 3], [1]]);
  expect(predict.stats.dispatchReasons).toMatchObject({ full: 1, delay: 1 });
});

test('a key function that throws or returns a non-key rejects that call only', async () => {
  const predict = batchedFn<Req, Req>({
    handler: (b) => b,
    batchKey: (r) => {
      if (r.id === 1) throw new Error('no key for 1');
      return (r.id === 2 ? { nope: true } : r.model) as string;
    },
    maxDelay: 0,
  });
  await expect(predict({ model: 'm', id: 1 })).rejects.toThrow('no key for 1');
  await expect(predict({ model: 'm', id: 2 })).rejects.toThrow(
    new TypeError('Expected `batchKey(input)` to return a string or a number, got an object'),
  );
  expect(await predict({ model: 'm', id: 3 })).toEqual({ model: 'm', id: 3 });
});
