import { setMaxListeners } from 'node:events';
import v8 from 'node:v8';
import vm from 'node:vm';
import { expect, test, vi } from 'vitest';
import fc from 'fast-check';
import { type BatchInfo, batchedFn, batchedStream } from 'batched-fn';
import { advance, flush, track, useFakeClock } from './helpers.js';
import { collect } from './stream-helpers.js';

// An attack pass on the chunked CallQueue (queue.ts, 0c7668f) through the public API: backlogs of
// several chunks (64 to 4096 calls each, sized from the live maxBatchSize), a batch adopting a
// whole chunk of plain calls and then copying cancellable ones, arrival runs, tombstones, resizing
// mid-backlog, priorities, keys, streams joining at step boundaries, destroy/close, worker mode,
// and what a chunk keeps alive once its calls have left.

useFakeClock();

interface In {
  id: number;
  rows: number;
  prio: number;
  key: number;
}

type Kind = 'plain' | 'signal' | 'timeout' | 'prio' | 'back';

const callSpec = fc.record({
  kind: fc.constantFrom<Kind>('plain', 'plain', 'plain', 'signal', 'timeout', 'prio', 'back'),
  prio: fc.integer({ min: 0, max: 2 }),
  back: fc.integer({ min: 0, max: 6 }),
  rows: fc.constantFrom(1, 1, 1, 1, 2),
  key: fc.integer({ min: 0, max: 2 }),
});

const op = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('burst' as const),
      calls: fc.array(callSpec, { maxLength: 180, size: 'max' }),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 6 }) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('abort' as const),
      picks: fc.array(fc.nat(), { maxLength: 12, size: 'max' }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('configure' as const),
      maxBatchSize: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 60, max: 150 })),
    }),
  },
);

const scenario = fc.record({
  maxBatchSize: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 60, max: 150 })),
  maxDelay: fc.integer({ min: 0, max: 3 }),
  concurrency: fc.integer({ min: 1, max: 2 }),
  sized: fc.boolean(),
  keyed: fc.boolean(),
  ops: fc.array(op, { maxLength: 14, size: 'max' }),
  end: fc.constantFrom('close', 'destroy'),
});

// The engine-level model: each batch the handler sees is checked when it starts (limit, priority
// order, nothing cancelled, one key), its onBatch report against the arrival times the test gave
// (exact: the clock is fake), and at the end every call has settled once, with its own output.
test('random chunked backlogs, aborts, configure(): exact shapes, order and waits; all settle once', async () => {
  await fc.assert(
    fc.asyncProperty(scenario, async (s) => {
      let limit = s.maxBatchSize;
      const violations: string[] = [];
      const inputs: In[] = [];
      const arrivals: number[] = [];
      const calls: ReturnType<typeof track<number>>[] = [];
      const controllers = new Map<number, AbortController>();
      const aborted = new Set<number>();
      const cancelled = new Set<number>();
      const dispatched: In[] = [];
      const expected: { items: number; rows: number; maxWait: number; totalWait: number }[] = [];
      const reports: BatchInfo[] = [];
      const predict = batchedFn<In, number>({
        handler: async (batch) => {
          const started = performance.now();
          const rows = batch.reduce((sum, x) => sum + x.rows, 0);
          if (rows > limit) violations.push(`batch of ${rows} rows > ${limit}`);
          if (s.keyed && new Set(batch.map((x) => x.key)).size > 1) violations.push('a batch mixed keys');
          let maxWait = 0;
          let totalWait = 0;
          for (let i = 0; i < batch.length; i++) {
            const x = batch[i] as In;
            if (i > 0 && (batch[i - 1] as In).prio < x.prio) violations.push(`priority order broken at ${x.id}`);
            if (cancelled.has(x.id)) violations.push(`cancelled call ${x.id} ran`);
            if (calls[x.id]?.status !== 'pending') violations.push(`call ${x.id} ran after it settled`);
            const wait = started - (arrivals[x.id] as number);
            if (wait > maxWait) maxWait = wait;
            totalWait += wait;
          }
          dispatched.push(...batch);
          // Equal costs: batches finish in the order they started, as their reports come.
          expected.push({ items: batch.length, rows, maxWait, totalWait });
          await new Promise((resolve) => setTimeout(resolve, 2));
          return batch.map((x) => x.id * 2);
        },
        maxBatchSize: s.maxBatchSize,
        maxDelay: s.maxDelay,
        concurrency: s.concurrency,
        onBatch: (info) => {
          reports.push(info);
        },
        ...(s.sized ? { size: (x: In) => x.rows } : {}),
        ...(s.keyed ? { batchKey: (x: In) => x.key } : {}),
      });
      for (const o of s.ops) {
        if (o.kind === 'wait') {
          await advance(o.ms);
          await flush();
        } else if (o.kind === 'configure') {
          predict.configure({ maxBatchSize: o.maxBatchSize });
          limit = o.maxBatchSize;
        } else if (o.kind === 'abort') {
          const live = [...controllers.keys()];
          for (const pick of o.picks) {
            if (live.length === 0) break;
            const id = live.splice(pick % live.length, 1)[0] as number;
            const controller = controllers.get(id) as AbortController;
            controllers.delete(id);
            aborted.add(id);
            // Not yet handed to the handler: it must never run (a call in a running batch may have).
            if (calls[id]?.status === 'pending' && !dispatched.some((x) => x.id === id)) cancelled.add(id);
            controller.abort(new Error(`abort ${id}`));
          }
        } else {
          const now = performance.now();
          for (const c of o.calls) {
            const id = inputs.length;
            const input: In = { id, rows: s.sized ? c.rows : 1, prio: c.kind === 'prio' ? c.prio : 0, key: c.key };
            inputs.push(input);
            let promise: Promise<number>;
            if (c.kind === 'plain') {
              arrivals.push(now);
              promise = predict(input);
            } else if (c.kind === 'signal') {
              arrivals.push(now);
              const controller = new AbortController();
              controllers.set(id, controller);
              promise = predict(input, { signal: controller.signal });
            } else if (c.kind === 'timeout') {
              // A handle that never fires, and a deadline too far off to be shed.
              arrivals.push(now);
              promise = predict(input, { timeout: 1e9 });
            } else if (c.kind === 'prio') {
              arrivals.push(now);
              promise = predict(input, { priority: c.prio });
            } else {
              // Back-dated: arrival runs within one chunk, not in time order.
              arrivals.push(now - c.back);
              promise = predict(input, { arrival: now - c.back });
            }
            calls.push(track(promise));
          }
        }
      }
      if (s.end === 'close') {
        const closed = track(predict.close());
        for (let i = 0; i < 400 && closed.status === 'pending'; i++) await advance(5);
        expect(closed.status).toBe('fulfilled');
      } else {
        predict.destroy(new Error('destroyed'));
        await advance(10);
      }
      await flush();
      expect(violations).toEqual([]);
      for (const [id, call] of calls.entries()) {
        expect(call.settles).toBe(1);
        if (call.status === 'fulfilled') expect(call.value).toBe(id * 2);
        if (call.status === 'rejected') {
          const error = call.error as { code?: string; message?: string };
          const why =
            error.code === 'ERR_ITEM_TOO_LARGE'
              ? 'too large'
              : aborted.has(id) && error.message === `abort ${id}`
                ? 'aborted'
                : s.end === 'destroy' && error.message === 'destroyed'
                  ? 'destroyed'
                  : `unexpected: ${String(call.error)}`;
          expect(why).not.toMatch(/unexpected/);
        }
      }
      // FIFO within a key and a priority.
      const groups = new Map<string, number[]>();
      for (const x of dispatched) {
        const group = `${s.keyed ? x.key : 0}/${x.prio}`;
        groups.set(group, [...(groups.get(group) ?? []), x.id]);
      }
      for (const ids of groups.values()) expect(ids).toEqual([...ids].sort((a, b) => a - b));
      // No call ran twice.
      expect(new Set(dispatched.map((x) => x.id)).size).toBe(dispatched.length);
      // Each report is its batch's: items, rows, the longest and the summed wait.
      expect(reports.length).toBe(s.end === 'close' ? expected.length : reports.length);
      for (const [i, report] of reports.entries()) {
        const want = expected[i] as (typeof expected)[number];
        expect({ items: report.items, rows: report.rows, maxWait: report.maxWaitMs }).toEqual({
          items: want.items,
          rows: want.rows,
          maxWait: want.maxWait,
        });
        expect(report.totalWaitMs).toBeCloseTo(want.totalWait, 6);
      }
      const stats = predict.stats;
      expect(stats.calls).toBe(calls.length);
      expect(stats.queued + stats.queuedRows + stats.inFlightItems).toBe(0);
      expect(stats.completed).toBe(calls.filter((c) => c.status === 'fulfilled').length);
      expect(stats.failed).toBe(calls.filter((c) => c.status === 'rejected').length);
      if (process.env.DEBUG_CHUNKS)
        console.log('RUN', calls.length, dispatched.length, Math.max(0, ...expected.map((e) => e.items)));
      // Every call that left the queue into a batch recorded its wait once.
      if (dispatched.length <= 4096) expect(stats.waitMs.count).toBe(dispatched.length);
    }),
    { numRuns: Number(process.env.FC_RUNS ?? 60) },
  );
});

/** A handler whose batches finish when the test says; records each batch's inputs. */
function gated<T>() {
  const batches: T[][] = [];
  const gates: (() => void)[] = [];
  const handler = async (batch: T[]): Promise<T[]> => {
    batches.push([...batch]);
    await new Promise<void>((resolve) => gates.push(resolve));
    return batch;
  };
  const release = async (): Promise<void> => {
    gates.shift()?.();
    await flush();
    await advance(0);
  };
  return { batches, handler, release };
}

const range = (from: number, count: number): number[] => Array.from({ length: count }, (_, i) => from + i);

/**
 * A batcher (maxDelay 0) whose handler is held by a first call, -1, so that the calls that follow wait
 * in its queue until the test releases batches. Every batch's report is kept.
 */
async function held(options: { maxBatchSize: number }) {
  const g = gated<number>();
  const reports: BatchInfo[] = [];
  const predict = batchedFn<number, number>({
    handler: g.handler,
    maxDelay: 0,
    onBatch: (info) => reports.push(info),
    ...options,
  });
  const first = track(predict(-1));
  await flush();
  return { g, predict, reports, first };
}

// A batch adopts the prio-1 queue's last chunk (30 plain calls, the chunk's own arrays), then copies the
// prio-0 calls, whose handles go to indices 30 and up of those same arrays: cancelling one of them while the
// batch runs must empty its own slot, not a neighbour's.
test('adopted chunk then copied handles: cancelling one in the batch releases exactly that caller', async () => {
  const { g, predict, first } = await held({ maxBatchSize: 100 });
  expect(g.batches).toEqual([[-1]]);
  const high = range(0, 30).map((x) => track(predict(x, { priority: 1 })));
  const controllers = range(0, 50).map(() => new AbortController());
  const low = range(100, 50).map((x, i) => track(predict(x, { signal: (controllers[i] as AbortController).signal })));
  await g.release();
  expect(first.value).toBe(-1);
  expect(g.batches[1]).toEqual([...range(0, 30), ...range(100, 50)]);
  // Index 30 is low[0], the first copied call; index 40 is low[10]; index 79 is the last.
  const gone = [0, 1, 10, 49];
  for (const i of gone) (controllers[i] as AbortController).abort(new Error(`gone ${100 + i}`));
  await flush();
  for (const i of gone) expect([low[i]?.status, String(low[i]?.error)]).toEqual(['rejected', `Error: gone ${100 + i}`]);
  expect(low.filter((c) => c.status !== 'pending')).toHaveLength(gone.length);
  expect(predict.stats.inFlightItems).toBe(80 - gone.length);
  await g.release();
  for (const [i, call] of high.entries()) expect([call.status, call.value]).toEqual(['fulfilled', i]);
  for (const [i, call] of low.entries()) {
    if (gone.includes(i)) expect(call.settles).toBe(1);
    else expect([call.status, call.value, call.settles]).toEqual(['fulfilled', 100 + i, 1]);
  }
  expect(predict.stats.failures.aborted).toBe(gone.length);
  await predict.close();
});

// The same inside one queue: configure() grows maxBatchSize past the chunks' capacity, so a batch adopts a
// whole chunk and goes on copying from the next one.
test('maxBatchSize grown mid-backlog: a batch adopts a chunk, copies on, handles keep their slots', async () => {
  const { g, predict } = await held({ maxBatchSize: 64 });
  const plain = range(0, 64).map((x) => track(predict(x)));
  const controllers = range(0, 20).map(() => new AbortController());
  const cancellable = range(64, 20).map((x, i) =>
    track(predict(x, { signal: (controllers[i] as AbortController).signal })),
  );
  const tail = range(84, 40).map((x) => track(predict(x)));
  predict.configure({ maxBatchSize: 100 });
  await g.release();
  expect(g.batches.slice(1)).toEqual([range(0, 100)]);
  // Index 64 is cancellable[0], the first call copied after the adopted chunk; index 70 is cancellable[6].
  for (const i of [0, 6]) (controllers[i] as AbortController).abort(new Error(`gone ${64 + i}`));
  await flush();
  expect(cancellable.map((c) => c.status === 'rejected')).toEqual(range(0, 20).map((i) => i === 0 || i === 6));
  expect(String(cancellable[0]?.error)).toBe('Error: gone 64');
  await g.release();
  expect(g.batches.slice(2)).toEqual([range(100, 24)]);
  await g.release();
  for (const [i, call] of [...plain, ...cancellable, ...tail].entries())
    if (i !== 64 && i !== 70) expect([call.status, call.value]).toEqual(['fulfilled', i]);
  expect(predict.stats.queued + predict.stats.inFlightItems).toBe(0);
  await predict.close();
});

test('maxBatchSize shrunk below a chunk mid-backlog: batches copy within and across chunks, in order', async () => {
  const { g, predict } = await held({ maxBatchSize: 200 });
  const calls = range(0, 250).map((x) => track(predict(x)));
  predict.configure({ maxBatchSize: 64 });
  for (let i = 0; i < 5; i++) await g.release();
  expect(g.batches.slice(1).map((b) => b.length)).toEqual([64, 64, 64, 58]);
  expect(g.batches.slice(1).flat()).toEqual(range(0, 250));
  for (const [i, call] of calls.entries()) expect(call.value).toBe(i);
  await predict.close();
});

test('maxBatchSize grown past several chunks: one batch adopts one, copies on, stops mid-chunk', async () => {
  const { g, predict } = await held({ maxBatchSize: 64 });
  const calls = range(0, 64 * 3 + 10).map((x) => track(predict(x)));
  predict.configure({ maxBatchSize: 200 });
  await g.release();
  await g.release();
  expect(g.batches.slice(1)).toEqual([range(0, 200), range(200, 2)]);
  await g.release();
  for (const [i, call] of calls.entries()) expect(call.value).toBe(i);
  await predict.close();
});

// Tombstones at a chunk's start, at its end and across its boundary; the head skipping them must land on the
// next live call of the next chunk, and the totals stay exact.
test('cancelled calls at chunk edges: skipped, never run, counted once; the rest run in full batches', async () => {
  const { g, predict } = await held({ maxBatchSize: 64 });
  const controllers = range(0, 200).map(() => new AbortController());
  const calls = range(0, 200).map((x) => track(predict(x, { signal: (controllers[x] as AbortController).signal })));
  const gone = [0, 1, 62, 63, 64, 65, 127, 128, 190, 199];
  for (const x of gone) (controllers[x] as AbortController).abort();
  await flush();
  expect(predict.stats.queued).toBe(190);
  for (let i = 0; i < 5; i++) await g.release();
  const live = range(0, 200).filter((x) => !gone.includes(x));
  expect(g.batches.slice(1)).toEqual([live.slice(0, 64), live.slice(64, 128), live.slice(128)]);
  for (const x of range(0, 200)) {
    const call = calls[x] as (typeof calls)[number];
    expect(call.settles).toBe(1);
    expect(call.status).toBe(gone.includes(x) ? 'rejected' : 'fulfilled');
  }
  expect(predict.stats.failures.aborted).toBe(gone.length);
  await predict.close();
});

// A chunk with one timed-out call is no longer plain: its live calls are copied. A later chunk of plain calls
// is adopted again.
test('timeouts in a chunk of plain calls: the timed-out calls fail ERR_TIMEOUT, the others run in order', async () => {
  const { g, predict } = await held({ maxBatchSize: 64 });
  const calls = range(0, 130).map((x) => track(x % 16 === 5 ? predict(x, { timeout: 10 }) : predict(x)));
  await advance(20);
  const timedOut = range(0, 130).filter((x) => x % 16 === 5);
  for (const x of timedOut) expect(calls[x]?.error).toMatchObject({ code: 'ERR_TIMEOUT' });
  for (let i = 0; i < 4; i++) await g.release();
  const live = range(0, 130).filter((x) => x % 16 !== 5);
  expect(g.batches.slice(1)).toEqual([live.slice(0, 64), live.slice(64)]);
  for (const x of live) expect(calls[x]?.value).toBe(x);
  expect(predict.stats.failures.ERR_TIMEOUT).toBe(timedOut.length);
  await predict.close();
});

test('destroy() with a backlog of several chunks (plain, cancellable, cancelled): all settle once', async () => {
  const { g, predict, first: running } = await held({ maxBatchSize: 64 });
  const controllers = new Map<number, AbortController>();
  const calls = range(0, 300).map((x) => {
    if (x % 7 !== 0) return track(predict(x));
    const controller = new AbortController();
    controllers.set(x, controller);
    return track(predict(x, { signal: controller.signal }));
  });
  for (const x of [0, 63, 70, 140]) controllers.get(x)?.abort(new Error(`abort ${x}`));
  await flush();
  const reason = new Error('shut');
  predict.destroy(reason);
  await flush();
  expect(running.error).toBe(reason);
  for (const [x, call] of calls.entries()) {
    expect(call.settles).toBe(1);
    expect(call.error).toEqual([0, 63, 70, 140].includes(x) ? new Error(`abort ${x}`) : reason);
  }
  // Aborts after destroy find nothing.
  for (const controller of controllers.values()) controller.abort();
  await flush();
  for (const call of calls) expect(call.settles).toBe(1);
  expect(predict.stats).toMatchObject({ calls: 301, failed: 301, completed: 0, queued: 0, inFlightItems: 0 });
  expect(g.batches).toHaveLength(1);
});

test('close() with a backlog of several chunks: everything runs in order, in full batches', async () => {
  const g = gated<number>();
  const sizes: number[] = [];
  const predict = batchedFn<number, number>({
    handler: g.handler,
    maxBatchSize: 100,
    maxDelay: 50,
    onBatch: (info) => sizes.push(info.items),
  });
  const calls = range(0, 350).map((x) => track(predict(x)));
  const closed = track(predict.close());
  for (let i = 0; i < 6; i++) await g.release();
  expect(closed.status).toBe('fulfilled');
  expect(g.batches).toEqual([range(0, 100), range(100, 100), range(200, 100), range(300, 50)]);
  expect(sizes).toEqual([100, 100, 100, 50]);
  for (const [x, call] of calls.entries()) expect(call.value).toBe(x);
});

// The arrival runs: a chunk of calls made at four clock readings, taken whole, reports the waits of each run.
test('waits of an adopted chunk come from its arrival runs: maxWaitMs, totalWaitMs and waitMs are exact', async () => {
  const { g, predict, reports } = await held({ maxBatchSize: 64 });
  const t0 = performance.now();
  const calls: ReturnType<typeof track<number>>[] = [];
  for (const [run, count] of [10, 20, 30, 4].entries()) {
    for (let i = 0; i < count; i++) calls.push(track(predict(calls.length)));
    await advance(run + 1);
  }
  // Runs arrived at t0, t0 + 1, t0 + 3, t0 + 6; the batch starts at t0 + 10.
  await g.release();
  expect(g.batches[1]).toEqual(range(0, 64));
  await g.release();
  const report = reports[1] as BatchInfo;
  expect(report.items).toBe(64);
  expect(report.maxWaitMs).toBeCloseTo(10, 9);
  expect(report.totalWaitMs).toBeCloseTo(10 * 10 + 20 * 9 + 30 * 7 + 4 * 4, 6);
  expect(performance.now() - t0).toBeCloseTo(10, 9);
  expect(predict.stats.waitMs.count).toBe(65);
  expect(predict.stats.waitMs.max).toBeCloseTo(10, 9);
  await predict.close();
});

// A back-dated call (options.arrival) lands in a run of its own in the middle of a chunk: its wait counts.
test('a back-dated call inside a chunk: its own wait is the batch maxWaitMs', async () => {
  const { g, predict, reports } = await held({ maxBatchSize: 64 });
  const now = performance.now();
  const calls = range(0, 64).map((x) => track(x === 40 ? predict(x, { arrival: now - 25 }) : predict(x)));
  await advance(2);
  await g.release();
  await g.release();
  const report = reports[1] as BatchInfo;
  expect(report.items).toBe(64);
  expect(report.maxWaitMs).toBeCloseTo(27, 9);
  expect(report.totalWaitMs).toBeCloseTo(63 * 2 + 27, 6);
  for (const [x, call] of calls.entries()) expect(call.value).toBe(x);
  await predict.close();
});

test('batchKey lanes each keep chunks of their own: shapes per key are exact across chunks', async () => {
  const g = gated<{ k: string; x: number }>();
  const predict = batchedFn<{ k: string; x: number }, { k: string; x: number }>({
    handler: g.handler,
    maxBatchSize: 64,
    maxDelay: 0,
    batchKey: (v) => v.k,
  });
  track(predict({ k: 'warm', x: 0 }));
  await flush();
  const calls = range(0, 200).map((x) => track(predict({ k: x % 3 === 0 ? 'a' : 'b', x })));
  for (let i = 0; i < 8; i++) await g.release();
  const a = range(0, 200).filter((x) => x % 3 === 0);
  const b = range(0, 200).filter((x) => x % 3 !== 0);
  const shapes = g.batches.slice(1).map((batch) => `${batch[0]?.k}:${batch.map((v) => v.x).join(',')}`);
  expect(shapes.sort()).toEqual(
    [
      `a:${a.slice(0, 64).join(',')}`,
      `a:${a.slice(64).join(',')}`,
      `b:${b.slice(0, 64).join(',')}`,
      `b:${b.slice(64, 128).join(',')}`,
      `b:${b.slice(128).join(',')}`,
    ].sort(),
  );
  for (const [x, call] of calls.entries()) expect(call.value?.x).toBe(x);
  await predict.close();
});

test('sequenceKey with a chunked backlog: one call per sequence per batch, each sequence in order', async () => {
  const g = gated<{ s: number; n: number }>();
  const predict = batchedFn<{ s: number; n: number }, { s: number; n: number }>({
    handler: g.handler,
    maxBatchSize: 64,
    maxDelay: 0,
    sequenceKey: (v) => v.s,
  });
  track(predict({ s: -1, n: 0 }));
  await flush();
  // 100 sequences of 3 calls each: the first call of each queues (2 chunks), the others park.
  const calls: ReturnType<typeof track<{ s: number; n: number }>>[] = [];
  for (let n = 0; n < 3; n++) for (let s = 0; s < 100; s++) calls.push(track(predict({ s, n })));
  for (let i = 0; i < 50 && calls.some((c) => c.status === 'pending'); i++) await g.release();
  for (const batch of g.batches) {
    expect(batch.length).toBeLessThanOrEqual(64);
    expect(new Set(batch.map((v) => v.s)).size).toBe(batch.length);
  }
  const order = new Map<number, number[]>();
  for (const batch of g.batches.slice(1)) for (const v of batch) order.set(v.s, [...(order.get(v.s) ?? []), v.n]);
  for (let s = 0; s < 100; s++) expect(order.get(s)).toEqual([0, 1, 2]);
  for (const call of calls) expect(call.status).toBe('fulfilled');
  await predict.close();
});

test('pad with an adopted chunk: the handler gets the batch then filler; callers get their outputs', async () => {
  const seen: number[][] = [];
  const g = gated<number>();
  const predict = batchedFn<number, number>({
    handler: async (batch) => {
      seen.push([...batch]);
      return g.handler(batch);
    },
    maxBatchSize: 100,
    pad: (batch, target) => [...batch, ...Array(target - batch.length).fill(-7)],
    maxDelay: 0,
  });
  track(predict(-1));
  await flush();
  const calls = range(0, 70).map((x) => track(predict(x)));
  await g.release();
  await g.release();
  expect(seen[1]).toEqual([...range(0, 70), ...Array(30).fill(-7)]);
  for (const [x, call] of calls.entries()) expect(call.value).toBe(x);
  await predict.close();
});

// Continuous batching: waiting sequences (two chunks' worth, some cancelled while waiting) join a running
// group at step boundaries, up to maxBatchSize.
test('batchedStream: a backlog of several chunks joins at step boundaries; cancelled ones never start', async () => {
  vi.useRealTimers();
  const started: number[] = [];
  const steps: number[] = [];
  const generate = batchedStream<{ id: number; length: number }, { id: number; left: number }, number>({
    start: (inputs) => {
      started.push(...inputs.map((s) => s.id));
      return inputs.map((s) => ({ id: s.id, left: s.length }));
    },
    step: (states) => {
      steps.push(states.length);
      return states.map((s) => {
        s.left--;
        return { value: s.id, done: s.left === 0 };
      });
    },
    maxBatchSize: 70,
    maxDelay: 0,
  });
  const controllers = range(0, 200).map(() => new AbortController());
  const streams = range(0, 200).map((id) =>
    generate({ id, length: 1 + (id % 4) }, { signal: (controllers[id] as AbortController).signal }),
  );
  const cancelled = [75, 76, 139, 140, 141, 199];
  for (const id of cancelled) (controllers[id] as AbortController).abort();
  const results = await Promise.all(streams.map((s) => collect(s)));
  for (const [id, result] of results.entries()) {
    if (cancelled.includes(id)) expect(result.values).toEqual([]);
    else expect(result.values).toEqual(Array(1 + (id % 4)).fill(id));
  }
  expect(started.filter((id) => cancelled.includes(id))).toEqual([]);
  expect([...started].sort((a, b) => a - b)).toEqual(range(0, 200).filter((id) => !cancelled.includes(id)));
  // FIFO: sequences start in the order they were made.
  expect(started).toEqual([...started].sort((a, b) => a - b));
  expect(Math.max(...steps)).toBeLessThanOrEqual(70);
  expect(generate.stats).toMatchObject({ active: 0, waiting: 0 });
  await generate.close();
});

test('worker mode: adopted and copied batches cross to the thread and come back to their own callers', async () => {
  vi.useRealTimers();
  const sizes: number[] = [];
  const predict = batchedFn<number, number>({
    worker: new URL('./fixtures/rogue.worker.mjs', import.meta.url),
    workers: 1,
    maxBatchSize: 64,
    maxDelay: 0,
    onBatch: (info) => sizes.push(info.items),
  });
  await predict.ready();
  const controllers = range(0, 200).map(() => new AbortController());
  const calls = range(0, 200).map((x) =>
    track(x % 9 === 4 ? predict(x, { signal: (controllers[x] as AbortController).signal }) : predict(x)),
  );
  (controllers[13] as AbortController).abort();
  (controllers[130] as AbortController).abort();
  await predict.close();
  for (const [x, call] of calls.entries()) {
    expect(call.settles).toBe(1);
    if (x === 13 || x === 130) expect(call.status).toBe('rejected');
    else expect(call.value).toBe(x);
  }
  expect(sizes.reduce((a, b) => a + b, 0)).toBe(198);
  for (const size of sizes) expect(size).toBeLessThanOrEqual(64);
});

/** Inputs made here, referenced only through the returned WeakRefs and the batcher. */
function weakInputs(count: number, from: number): { refs: WeakRef<object>[]; inputs: { id: number; pad: number[] }[] } {
  const inputs = range(from, count).map((id) => ({ id, pad: Array(64).fill(id) }));
  return { refs: inputs.map((x) => new WeakRef(x)), inputs };
}

// What a chunk keeps alive: once a call has left its chunk (copied into a batch that has settled, or
// cancelled), its input must be collectable while the chunk still holds other waiting calls.
test('a partly used chunk does not keep the inputs of calls that left it', async () => {
  vi.useRealTimers();
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const gates: (() => void)[] = [];
  const predict = batchedFn<{ id: number; pad: number[] }, number>({
    handler: async (batch) => {
      const ids = batch.map((x) => x.id);
      await new Promise<void>((resolve) => gates.push(resolve));
      return ids;
    },
    maxBatchSize: 10,
    maxDelay: 0,
  });
  const controller = new AbortController();
  const made = weakInputs(64, 0);
  const calls = made.inputs.map((x) => (x.id === 50 ? predict(x, { signal: controller.signal }) : predict(x)));
  made.inputs.length = 0;
  calls[50]?.catch(() => {});
  // Batch 1 (ids 0-9) runs; finish it, so batch 2 (10-19) runs and the chunk still holds 20-63.
  await new Promise((resolve) => setTimeout(resolve, 5));
  gates.shift()?.();
  await new Promise((resolve) => setTimeout(resolve, 5));
  controller.abort();
  await Promise.all(calls.slice(0, 10));
  await new Promise((resolve) => setTimeout(resolve, 5));
  gc();
  await new Promise((resolve) => setTimeout(resolve, 5));
  gc();
  expect(predict.stats.queued).toBe(43);
  const alive = made.refs.map((ref, id) => (ref.deref() === undefined ? -1 : id)).filter((id) => id >= 0);
  // 0-9 ran and settled, 50 was cancelled: gone. 10-19 run now, 20-63 wait.
  expect(alive).toEqual(range(10, 54).filter((id) => id !== 50));
  predict.destroy();
  await Promise.allSettled(calls);
});

// What a lane costs while one call waits in it. Each new chunk is sized for a whole batch (up to 4096 slots),
// and its inputs, resolvers and (for a cancellable call) handles arrays are allocated at that size up front,
// 8 bytes a slot: with batchKey, every lane (and every priority queue of a lane) pays it for its first call.
// The ring buffer this replaced cost about 7.8 KB a lane whatever maxBatchSize was; chunks cost about 100 KB a
// lane at maxBatchSize 4096 (26 KB at 1024). On the server a model with an open dimension is keyed by shape, and
// every request carries a signal: 1024 waiting requests (the default channelCap) of distinct shapes held ~100 MB.
test('a lane with one waiting call does not reserve a whole batch of slots (batchKey, maxBatchSize 4096)', async () => {
  vi.useRealTimers();
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const predict = batchedFn<number, number>({
    handler: () => new Promise<number[]>(() => {}),
    maxBatchSize: 4096,
    maxDelay: 60_000,
    concurrency: 1,
    batchKey: (x) => x,
  });
  const controller = new AbortController();
  setMaxListeners(0, controller.signal);
  const lanes = 1000;
  gc();
  const before = process.memoryUsage().heapUsed;
  const calls = range(0, lanes).map((x) => predict(x, { signal: controller.signal }));
  await new Promise((resolve) => setTimeout(resolve, 10));
  gc();
  const perLane = (process.memoryUsage().heapUsed - before) / lanes;
  expect(predict.stats.queued).toBe(lanes);
  predict.destroy();
  await Promise.allSettled(calls);
  expect(Math.round(perLane / 1024)).toBeLessThanOrEqual(16);
});
