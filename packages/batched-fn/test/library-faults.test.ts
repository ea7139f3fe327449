import { expect, test } from 'vitest';
import { batchedFn, InvalidPadError } from 'batched-fn';
import { advance, track, useFakeClock } from './helpers.js';

// Faults from the library review, each pinned by the behaviour it now has.
useFakeClock();

test('preferred sizes + size: a call larger than the smallest preferred size is dispatched, and nothing spins', async () => {
  const seen: number[][] = [];
  const predict = batchedFn<{ rows: number }, number>({
    handler: (batch) => {
      seen.push(batch.map((x) => x.rows));
      return batch.map((x) => x.rows);
    },
    maxBatchSize: 64,
    maxDelay: 5,
    preferredBatchSizes: [8, 16, 32],
    size: (x) => x.rows,
  });
  const call = track(predict({ rows: 10 }));
  await advance(5);
  expect(call.value).toBe(10);
  expect(seen).toEqual([[10]]);
  // The head (10 rows) fits in 16 but the queue cannot fill 16: the delay rule applies, as below the smallest size.
  expect(predict.stats.dispatchReasons.delay).toBe(1);
  // 10 + 6 fills 16 at once.
  const pair = [track(predict({ rows: 10 })), track(predict({ rows: 6 }))];
  await advance(0);
  expect(pair.map((c) => c.value)).toEqual([10, 6]);
  expect(seen[1]).toEqual([10, 6]);
  expect(predict.stats.dispatchReasons.preferred).toBe(1);
});

test('with batch keys, a lane whose head is larger than the preferred size no longer starves the other keys', async () => {
  const predict = batchedFn<{ rows: number; key: string }, string>({
    handler: (batch) => batch.map((x) => x.key),
    maxBatchSize: 64,
    maxDelay: 5,
    preferredBatchSizes: [4, 8],
    size: (x) => x.rows,
    batchKey: (x) => x.key,
  });
  const big = track(predict({ rows: 6, key: 'a' }));
  const small = track(predict({ rows: 4, key: 'b' }));
  await advance(5);
  expect([big.value, small.value]).toEqual(['a', 'b']);
});

test('pad must return the batch itself first, at least as long: anything else rejects that batch with ERR_INVALID_PAD', async () => {
  const pads: ((batch: number[], target: number) => number[])[] = [
    () => undefined as unknown as number[], // a forgotten return
    (batch) => batch.slice(1).concat([0, 0]), // drops a real row: callers would get their neighbours' outputs
    (batch) => [...batch].reverse().concat([0]), // reorders
    (batch) => batch.slice(0, batch.length - 1), // shorter than the batch
  ];
  for (const pad of pads) {
    const predict = batchedFn<number, string>({
      handler: (batch) => batch.map((x) => `out-${x}`),
      maxBatchSize: 4,
      maxDelay: 0,
      pad,
    });
    const calls = [track(predict(1)), track(predict(2)), track(predict(3))];
    await advance(0);
    for (const call of calls) {
      expect(call.status).toBe('rejected');
      expect(call.error).toBeInstanceOf(InvalidPadError);
      expect((call.error as InvalidPadError).code).toBe('ERR_INVALID_PAD');
    }
    // And it keeps serving: the next batch settles (a one-item batch reversed is still valid).
    const next = track(predict(4));
    await advance(0);
    expect(next.settles).toBe(1);
  }
});

test('fractional sizes: five items of 0.5 rows padded to 4 "rows" by an item-counting pad is refused, not mis-assigned', async () => {
  const predict = batchedFn<number, number>({
    handler: (batch) => batch,
    maxBatchSize: 4,
    maxDelay: 0,
    size: () => 0.5,
    pad: (batch, target) => batch.concat(Array(Math.max(0, target - batch.length)).fill(-1)).slice(0, target),
  });
  const calls = Array.from({ length: 5 }, (_, i) => track(predict(i)));
  await advance(0);
  for (const call of calls) expect(call.error).toBeInstanceOf(InvalidPadError);
  expect(predict.stats.queuedRows).toBe(0);
});

test('a learned cost curve that locks into shedding everything recovers once the slowdown ends', async () => {
  let cost = 5;
  const predict = batchedFn<number, number>({
    handler: async (batch) => {
      await new Promise((resolve) => setTimeout(resolve, cost));
      return batch;
    },
    maxBatchSize: 8,
    maxDelay: 'auto',
    latencyTarget: 30,
  });
  const outcomes: ('ok' | 'shed' | 'timeout')[] = [];
  const send = (): void => {
    const index = outcomes.length;
    outcomes.push('timeout');
    predict(index, { timeout: 30 }).then(
      () => (outcomes[index] = 'ok'),
      (error: { predicted?: boolean }) => (outcomes[index] = error.predicted ? 'shed' : 'timeout'),
    );
  };
  // About 66 calls/s, in pairs of different sizes now and then so the curve is learned.
  const run = async (ms: number): Promise<[number, number]> => {
    const from = outcomes.length;
    for (let t = 0; t < ms; t += 15) {
      send();
      if (t % 90 === 0) send();
      await advance(15);
    }
    const slice = outcomes.slice(from);
    return [slice.filter((o) => o === 'ok').length, slice.length];
  };
  await run(1_000);
  expect(predict.stats.costModel).toBeDefined();
  cost = 50;
  await run(2_000);
  cost = 5;
  await run(2_000); // recovery time allowed: 2 s
  const [ok, sent] = await run(1_000);
  expect(ok / sent).toBeGreaterThan(0.9);
});
