import { expect, test } from 'vitest';
import { batchedFn, TimeoutError } from 'batched-fn';
import { closedLoop } from './closed-loop-driver.js';
import { advance, flush, track, useFakeClock } from './helpers.js';

useFakeClock();

/**
 * A model whose batch of N rows takes exactly `cost(N)` ms on the fake clock. Integer costs,
 * because fake timers round fractional delays and the tests below compute exact deadlines.
 */
function simulatedModel(cost: (rows: number) => number = (rows) => 2 + rows) {
  const batches: number[][] = [];
  const handler = async (batch: number[]): Promise<number[]> => {
    batches.push([...batch]);
    await new Promise((resolve) => setTimeout(resolve, cost(batch.length)));
    return batch;
  };
  return { batches, handler };
}

/** Ten batches of sizes 1..10, so the cost model has learned c(N) = 2 + N. */
async function train(predict: (x: number) => Promise<number>): Promise<void> {
  for (let size = 1; size <= 10; size++) {
    const calls = Array.from({ length: size }, (_, i) => predict(i));
    await advance(20);
    await Promise.all(calls);
  }
}

test("maxDelay 'auto' sends a lone call at once, with no window to wait out", async () => {
  const { batches, handler } = simulatedModel();
  const predict = batchedFn({ handler, maxBatchSize: 64, maxDelay: 'auto' });
  await train(predict);
  expect(predict.stats.costModel).toMatchObject({ fixedMs: expect.closeTo(2, 6), perRowMs: expect.closeTo(1, 6) });
  await advance(1000); // quiet: the arrival rate decays to nothing
  const lone = track(predict(42));
  await flush();
  expect(batches.at(-1)).toEqual([42]);
  await advance(3);
  expect(lone).toMatchObject({ status: 'fulfilled', value: 42 });
  expect(predict.stats.dispatchReasons.adaptive).toBeGreaterThan(0);
  expect(predict.stats.dispatchReasons.delay).toBe(0);
});

test("under a backlog 'auto' batches fill while the handler runs", async () => {
  const { batches, handler } = simulatedModel((rows) => 2 + Math.ceil(rows / 20));
  const predict = batchedFn({ handler, maxBatchSize: 64, maxDelay: 'auto' });
  await train(predict);
  batches.length = 0;
  const calls: Promise<number>[] = [];
  // 40 rows per ms for 20 ms against a model that serves at most 64 rows per 6 ms.
  for (let ms = 0; ms < 20; ms++) {
    for (let i = 0; i < 40; i++) calls.push(predict(ms * 100 + i));
    await advance(1);
  }
  await advance(200);
  await Promise.all(calls);
  expect(batches.flat()).toHaveLength(800);
  const [first, ...rest] = batches;
  expect(first?.length).toBe(40); // the only batch formed on an idle handler
  expect(rest.slice(0, -1).every((b) => b.length === 64)).toBe(true);
});

test('with a known cost curve, a call that cannot meet its timeout is rejected at once, marked predicted', async () => {
  const { batches, handler } = simulatedModel();
  const predict = batchedFn({ handler, maxBatchSize: 8, maxDelay: 0 });
  await train(predict);
  batches.length = 0;
  // 40 rows: one batch of 8 runs (c(8) = 10 ms), four more full batches wait: a new call finishes near 53 ms.
  const backlog = Array.from({ length: 40 }, (_, i) => predict(i));
  await flush();
  const hopeless = track(predict(100, { timeout: 40 }));
  const feasible = track(predict(101, { timeout: 60 }));
  await flush();
  expect(hopeless.status).toBe('rejected');
  expect(hopeless.error).toBeInstanceOf(TimeoutError);
  expect(hopeless.error).toMatchObject({
    code: 'ERR_TIMEOUT',
    predicted: true,
    message: 'Call rejected early: its predicted completion is past its 40 ms deadline',
  });
  expect(feasible.status).toBe('pending');
  await advance(100);
  await Promise.all(backlog);
  expect(feasible).toMatchObject({ status: 'fulfilled', value: 101 });
  expect(batches.flat()).not.toContain(100);
});

test('latencyTarget sheds calls predicted to miss it, without a per-call timeout', async () => {
  const { handler } = simulatedModel();
  const predict = batchedFn({ handler, maxBatchSize: 8, maxDelay: 'auto', latencyTarget: 30 });
  await train(predict);
  const backlog = Array.from({ length: 40 }, (_, i) => track(predict(i)));
  await flush();
  // Each call is judged against what is ahead of it when it arrives: the first ones fit, the tail does not.
  const fulfilledLater = await (async () => {
    await advance(200);
    return backlog.filter((c) => c.status === 'fulfilled').length;
  })();
  const shed = backlog.filter((c) => c.status === 'rejected');
  expect(fulfilledLater + shed.length).toBe(40);
  expect(shed.length).toBeGreaterThan(0);
  expect(fulfilledLater).toBeGreaterThan(0);
  for (const c of shed) expect(c.error).toMatchObject({ code: 'ERR_TIMEOUT', predicted: true, timeout: 30 });
  // The accepted ones were the oldest: shedding never reorders the queue.
  const firstShed = backlog.findIndex((c) => c.status === 'rejected');
  expect(backlog.slice(firstShed).every((c) => c.status === 'rejected')).toBe(true);
});

test('a call accepted at arrival is shed at dispatch when its batch grew past what its deadline allows', async () => {
  const { batches, handler } = simulatedModel();
  const predict = batchedFn({ handler, maxBatchSize: 8, maxDelay: 0 });
  await train(predict);
  batches.length = 0;
  const running = predict(0); // runs from 0 to 3 ms
  await flush();
  // At arrival: the handler frees at 3, then c(1) = 3: finish 6 <= deadline 7, so it is accepted.
  const tight = track(predict(1, { timeout: 7 }));
  // Seven more join its batch: c(8) = 10 ms from 3 ends at 13, past the deadline.
  const others = [2, 3, 4, 5, 6, 7, 8].map((x) => predict(x));
  await flush();
  expect(tight.status).toBe('pending');
  await advance(3);
  await flush();
  expect(tight.status).toBe('rejected');
  expect(tight.error).toMatchObject({ code: 'ERR_TIMEOUT', predicted: true, timeout: 7 });
  expect(batches).toEqual([[0], [2, 3, 4, 5, 6, 7, 8]]);
  await advance(20);
  expect(await Promise.all([running, ...others])).toEqual([0, 2, 3, 4, 5, 6, 7, 8]);
});

/**
 * `clients` clients in a closed loop for 1 s on a model of `cost(rows)` ms (12 ms + 1 ms per 8 rows
 * unless given), batches of at most `clients` rows: the sizes of the batches sent in that second.
 * Client `i` sends again `roundTrip` ms after its answer (or `roundTrip(i, lap)` ms, its lap-th time).
 */
async function closedLoopBatchSizes(
  roundTrip: number | ((client: number, lap: number) => number),
  options: { batchKey?: (x: number) => string; clients?: number; cost?: (rows: number) => number } = {},
): Promise<number[]> {
  const clients = options.clients ?? 16;
  const loop = await closedLoop({
    clients,
    inFlight: 1,
    concurrency: 1,
    maxBatchSize: clients,
    maxDelay: 'auto',
    cost: options.cost ?? ((rows) => 12 + Math.ceil(rows / 8)),
    roundTrip,
    batchKey: options.batchKey,
  });
  return loop.batches.filter((b) => b.dispatched < loop.to).map((b) => b.rows);
}

test("under a closed loop 'auto' waits for the callers on their way back: the cohorts merge into full batches", async () => {
  // Callers back 2 ms after their answer.
  const sizes = await closedLoopBatchSizes(2);
  // Staggered starts split the clients into cohorts that take turns; once their return is seen, one batch takes all.
  expect(sizes.slice(0, 4).some((n) => n < 16)).toBe(true);
  expect(sizes.slice(-20)).toEqual(Array(20).fill(16));
});

test('callers that come back spread out end in full batches: the last ones back are not left for the next batch for good', async () => {
  // 64 clients back 1 to 4 ms after their answer (within a = 7 ms), 8 of them away for 30 ms once.
  // The last rows back used to count as rows that never return: batches settled at 61 for good.
  const sizes = await closedLoopBatchSizes((client, lap) => 1 + (client % 4) + (client < 8 && lap === 10 ? 30 : 0), {
    clients: 64,
    cost: (rows) => 7 + Math.ceil(rows / 64),
  });
  expect(sizes.slice(-20)).toEqual(Array(20).fill(64));
});

test('a closed loop whose callers come back later than the fixed cost is left as it is: waiting would not pay', async () => {
  // Back 14 ms after their answer: past a = 12 ms, so no cohort counts as returned.
  const sizes = await closedLoopBatchSizes(14);
  expect(sizes.slice(-20).some((n) => n < 16)).toBe(true);
});

test('with batch keys no batch waits for a cohort: one lane would wait for the callers of another', async () => {
  const sizes = await closedLoopBatchSizes(2, { batchKey: () => 'one key' });
  expect(sizes.slice(-20).some((n) => n < 16)).toBe(true);
});
