import { afterEach, expect, test } from 'vitest';
import { type BatchedFn, batchedFn } from 'batched-fn';

interface Pinned {
  id: number;
  worker: number | undefined;
}
interface Ran {
  id: number;
  threadId: number;
  batch: number[];
}

const FIXTURE = new URL('./fixtures/affinity.worker.mjs', import.meta.url);
let predict: BatchedFn<Pinned, Ran> | undefined;
afterEach(async () => {
  await predict?.close();
  predict = undefined;
});

test('each call runs on the worker its affinity names, and calls for different workers never share a batch', async () => {
  predict = batchedFn<Pinned, Ran>({
    worker: FIXTURE,
    workers: 3,
    affinity: (input) => input.worker,
    maxBatchSize: 8,
    maxDelay: 5,
  });
  await predict.ready();
  const threads = predict.stats.workers.map((w) => w.threadId);
  const inputs = Array.from({ length: 30 }, (_, id) => ({ id, worker: id % 4 === 3 ? undefined : id % 3 }));
  const answers = await Promise.all(inputs.map((input) => predict?.(input) as Promise<Ran>));
  const workerOf = new Map(inputs.map((input) => [input.id, input.worker]));
  for (const [i, answer] of answers.entries()) {
    const pinned = inputs[i]?.worker;
    if (pinned !== undefined) expect(answer.threadId).toBe(threads[pinned]);
    const workers = new Set(answer.batch.map((id) => workerOf.get(id)));
    expect(workers.size).toBe(1);
  }
});

test('a call whose affinity is out of range, not an integer, or throws is refused alone', async () => {
  predict = batchedFn<Pinned, Ran>({
    worker: FIXTURE,
    workers: 2,
    affinity: (input) => {
      if (input.id === 3) throw new Error('no worker');
      return input.worker;
    },
    maxDelay: 0,
  });
  await expect(predict({ id: 1, worker: 2 })).rejects.toThrow(
    'Expected `affinity(input)` to return a worker from 0 to 1 or undefined, got `2` (number)',
  );
  await expect(predict({ id: 2, worker: 0.5 })).rejects.toBeInstanceOf(RangeError);
  await expect(predict({ id: 3, worker: 0 })).rejects.toThrow('no worker');
  await expect(predict({ id: 4, worker: 1 })).resolves.toMatchObject({ id: 4, batch: [4] });
});

test('sequences pinned to one worker: a batch holds one call per sequence, and the others follow in order', async () => {
  predict = batchedFn<Pinned & { seq: string }, Ran>({
    worker: FIXTURE,
    workers: 2,
    affinity: (input) => input.worker,
    sequenceKey: (input) => input.seq,
    maxBatchSize: 4,
    maxDelay: 20,
  }) as unknown as BatchedFn<Pinned, Ran>;
  const calls = [
    { id: 1, seq: 'a', worker: 0 },
    { id: 2, seq: 'a', worker: 0 },
    { id: 3, seq: 'b', worker: 0 },
    { id: 4, seq: 'c', worker: 1 },
    { id: 5, seq: 'b', worker: 0 },
  ];
  const answers = await Promise.all(calls.map((call) => predict?.(call) as Promise<Ran>));
  expect(answers.map((a) => a.batch)).toEqual([[1, 3], [2, 5], [1, 3], [4], [2, 5]]);
});
