import { expect, test } from 'vitest';
import fc from 'fast-check';
import { batchedFn } from 'batched-fn';
import { advance, flush, gatedHandler, track, useFakeClock } from './helpers.js';

useFakeClock();

/** A call of sequence `seq` (undefined: none), its `n`-th. */
interface Step {
  seq: string | undefined;
  n: number;
}

const shape = (batches: Step[][]): string[][] => batches.map((b) => b.map((s) => `${s.seq ?? '-'}${s.n}`));

test('a batch holds at most one call per sequence; the others wait, in order, for the next batches', async () => {
  const gate = gatedHandler<Step>();
  const predict = batchedFn({ handler: gate.handler, sequenceKey: (s: Step) => s.seq, maxBatchSize: 4, maxDelay: 0 });
  const calls = [
    { seq: 'a', n: 1 },
    { seq: 'a', n: 2 },
    { seq: 'b', n: 1 },
    { seq: 'a', n: 3 },
    { seq: 'b', n: 2 },
    { seq: undefined, n: 1 },
    { seq: 'c', n: 1 },
  ].map((s) => track(predict(s)));
  await flush();
  expect(shape(gate.batches)).toEqual([['a1', 'b1', '-1', 'c1']]);
  expect(predict.stats.queued).toBe(3);
  gate.release();
  await flush();
  expect(shape(gate.batches)).toEqual([
    ['a1', 'b1', '-1', 'c1'],
    ['a2', 'b2'],
  ]);
  gate.release();
  await flush();
  gate.release();
  await flush();
  expect(shape(gate.batches)).toEqual([['a1', 'b1', '-1', 'c1'], ['a2', 'b2'], ['a3']]);
  expect(calls.map((c) => c.status)).toEqual(Array(7).fill('fulfilled'));
  expect(predict.stats.queued).toBe(0);
});

test("a sequence's next call waits for the batch holding its previous call to end, even with a free runner", async () => {
  const gate = gatedHandler<Step>();
  const predict = batchedFn({
    handler: gate.handler,
    sequenceKey: (s: Step) => s.seq,
    maxBatchSize: 4,
    maxDelay: 0,
    concurrency: 2,
  });
  void predict({ seq: 'a', n: 1 });
  await flush();
  void predict({ seq: 'a', n: 2 });
  void predict({ seq: 'b', n: 1 });
  await flush();
  // The second runner takes b1 alone: a2 may not run beside a1.
  expect(shape(gate.batches)).toEqual([['a1'], ['b1']]);
  gate.release();
  await flush();
  expect(shape(gate.batches)).toEqual([['a1'], ['b1'], ['a2']]);
});

test('the window counts from when a parked call arrived: released after it passed, it goes at once', async () => {
  const gate = gatedHandler<Step>();
  const predict = batchedFn({ handler: gate.handler, sequenceKey: (s: Step) => s.seq, maxBatchSize: 4, maxDelay: 10 });
  void predict({ seq: 'a', n: 1 });
  void predict({ seq: 'a', n: 2 });
  await advance(10);
  expect(shape(gate.batches)).toEqual([['a1']]);
  await advance(30);
  gate.release();
  await flush();
  expect(shape(gate.batches)).toEqual([['a1'], ['a2']]);
});

test("a cancelled call lets its sequence's next call in; a cancelled parked call is skipped", async () => {
  const gate = gatedHandler<Step>();
  const predict = batchedFn({ handler: gate.handler, sequenceKey: (s: Step) => s.seq, maxBatchSize: 4, maxDelay: 0 });
  void predict({ seq: 'x', n: 0 });
  await flush();
  // x0 runs; with one runner, b1 queues, then a1 and its followers.
  const a1 = new AbortController();
  const a2 = new AbortController();
  const first = track(predict({ seq: 'a', n: 1 }, { signal: a1.signal }));
  const second = track(predict({ seq: 'a', n: 2 }, { signal: a2.signal }));
  const third = track(predict({ seq: 'a', n: 3 }));
  await flush();
  a1.abort(new Error('gone'));
  a2.abort(new Error('gone too'));
  await flush();
  expect([first.status, second.status, third.status]).toEqual(['rejected', 'rejected', 'pending']);
  expect(predict.stats.queued).toBe(1);
  gate.release();
  await flush();
  expect(shape(gate.batches)).toEqual([['x0'], ['a3']]);
});

test('timeouts of parked calls, and destroy(), settle every call once', async () => {
  const gate = gatedHandler<Step>();
  const predict = batchedFn({ handler: gate.handler, sequenceKey: (s: Step) => s.seq, maxBatchSize: 2, maxDelay: 0 });
  const running = track(predict({ seq: 'a', n: 1 }));
  const late = track(predict({ seq: 'a', n: 2 }, { timeout: 5 }));
  const parked = track(predict({ seq: 'a', n: 3 }));
  await advance(5);
  expect((late.error as { code?: string }).code).toBe('ERR_TIMEOUT');
  predict.destroy();
  await flush();
  expect([running.status, parked.status]).toEqual(['rejected', 'rejected']);
  expect([running.settles, late.settles, parked.settles]).toEqual([1, 1, 1]);
});

test('sequenceKey: a key function that throws or returns a non-key rejects that call only; the option is checked', async () => {
  const predict = batchedFn<Step, Step>({
    handler: (b) => b,
    sequenceKey: (s) => {
      if (s.n === 1) throw new Error('no key');
      return s.n === 2 ? ({} as unknown as string) : s.seq;
    },
    maxDelay: 0,
  });
  await expect(predict({ seq: 'a', n: 1 })).rejects.toThrow('no key');
  await expect(predict({ seq: 'a', n: 2 })).rejects.toThrow(
    'Expected `sequenceKey(input)` to return a string, a number or undefined, got',
  );
  await expect(predict({ seq: 'a', n: 3 })).resolves.toEqual({ seq: 'a', n: 3 });
  expect(() => batchedFn({ handler: (b: number[]) => b, sequenceKey: 3 as never })).toThrow(
    'Expected `sequenceKey` to be a function',
  );
  expect(() => batchedFn({ handler: (b: number[]) => b, affinity: () => 0 })).toThrow(
    'Expected `affinity` only with `worker`',
  );
});

test('channelCap counts parked calls', async () => {
  const gate = gatedHandler<Step>();
  const predict = batchedFn({
    handler: gate.handler,
    sequenceKey: (s: Step) => s.seq,
    maxBatchSize: 2,
    maxDelay: 0,
    channelCap: 2,
  });
  void predict({ seq: 'a', n: 1 });
  await flush();
  void predict({ seq: 'a', n: 2 });
  void predict({ seq: 'a', n: 3 });
  await expect(predict({ seq: 'b', n: 1 })).rejects.toMatchObject({ code: 'ERR_QUEUE_FULL' });
  gate.release();
  await flush();
  gate.release();
  await flush();
  gate.release();
  await flush();
  expect(shape(gate.batches)).toEqual([['a1'], ['a2'], ['a3']]);
});

// Random interleavings of sequences, aborts, waits and two runners: never two calls of one
// sequence in a batch, never two of one sequence running at once, each sequence's calls run in the
// order they were made (its cancelled ones left out), and every call settles once.
test('property: one call per sequence per batch, one at a time, in order', async () => {
  const op = fc.oneof(
    {
      weight: 6,
      arbitrary: fc.record({
        kind: fc.constant('call' as const),
        seq: fc.option(fc.constantFrom('a', 'b', 'c', 'd'), { nil: undefined }),
        abortAfter: fc.option(fc.integer({ min: 0, max: 6 }), { nil: undefined }),
      }),
    },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 6 }) }) },
  );
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        ops: fc.array(op, { maxLength: 40 }),
        maxBatchSize: fc.integer({ min: 1, max: 4 }),
        maxDelay: fc.integer({ min: 0, max: 4 }),
        concurrency: fc.integer({ min: 1, max: 2 }),
      }),
      async ({ ops, maxBatchSize, maxDelay, concurrency }) => {
        const batches: Step[][] = [];
        const running = new Set<string>();
        let overlap = false;
        const predict = batchedFn<Step, number>({
          handler: async (batch) => {
            batches.push([...batch]);
            for (const s of batch) {
              if (s.seq === undefined) continue;
              if (running.has(s.seq)) overlap = true;
              running.add(s.seq);
            }
            await new Promise((resolve) => setTimeout(resolve, 3));
            for (const s of batch) if (s.seq !== undefined) running.delete(s.seq);
            return batch.map((s) => s.n);
          },
          sequenceKey: (s) => s.seq,
          maxBatchSize,
          maxDelay,
          concurrency,
        });
        const made = new Map<string, number[]>();
        const calls: ReturnType<typeof track<number>>[] = [];
        let n = 0;
        for (const o of ops) {
          if (o.kind === 'wait') {
            await advance(o.ms);
            continue;
          }
          n++;
          const controller = new AbortController();
          if (o.abortAfter !== undefined) setTimeout(() => controller.abort(new Error('abort')), o.abortAfter);
          calls.push(track(predict({ seq: o.seq, n }, { signal: controller.signal })));
          if (o.seq !== undefined) made.set(o.seq, [...(made.get(o.seq) ?? []), n]);
        }
        await advance(1000);
        expect(overlap).toBe(false);
        for (const batch of batches) {
          const seqs = batch.flatMap((s) => (s.seq === undefined ? [] : [s.seq]));
          expect(new Set(seqs).size).toBe(seqs.length);
          expect(batch.length).toBeLessThanOrEqual(maxBatchSize);
        }
        for (const [seq, order] of made) {
          const ran = batches.flat().flatMap((s) => (s.seq === seq ? [s.n] : []));
          // What ran is the calls made, in order, with some (aborted) left out.
          expect(ran).toEqual(order.filter((x) => ran.includes(x)));
        }
        for (const call of calls) expect(call.settles).toBe(1);
        expect(predict.stats.queued).toBe(0);
      },
    ),
    { numRuns: 150 },
  );
});
