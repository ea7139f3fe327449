import { expect, test } from 'vitest';
import fc from 'fast-check';
import { batchedFn } from 'batched-fn';
import { advance, flush, track, useFakeClock } from './helpers.js';

useFakeClock();

type Fault = 'ok' | 'throw' | 'reject' | 'short' | 'slot-error' | 'thenable-throws' | 'thenable-twice' | 'never';

interface Input {
  id: number;
  rows: number;
}

const callOp = fc.record({
  kind: fc.constant('call' as const),
  rows: fc.integer({ min: 1, max: 5 }),
  timeout: fc.option(fc.integer({ min: 0, max: 40 }), { nil: undefined }),
  abortAfter: fc.option(fc.integer({ min: -1, max: 40 }), { nil: undefined }),
});
const waitOp = fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 30 }) });
const configureOp = fc.record({
  kind: fc.constant('configure' as const),
  maxBatchSize: fc.integer({ min: 1, max: 6 }),
});

const scenario = fc.record({
  maxBatchSize: fc.integer({ min: 1, max: 6 }),
  maxDelay: fc.integer({ min: 0, max: 20 }),
  channelCap: fc.oneof(fc.constant(Number.POSITIVE_INFINITY), fc.integer({ min: 1, max: 12 })),
  concurrency: fc.integer({ min: 1, max: 3 }),
  faults: fc.array(
    fc.constantFrom<Fault>(
      'ok',
      'ok',
      'ok',
      'throw',
      'reject',
      'short',
      'slot-error',
      'thenable-throws',
      'thenable-twice',
      'never',
    ),
    { minLength: 1, maxLength: 8 },
  ),
  costs: fc.array(fc.integer({ min: 0, max: 25 }), { minLength: 1, maxLength: 8 }),
  ops: fc.array(
    fc.oneof({ weight: 5, arbitrary: callOp }, { weight: 3, arbitrary: waitOp }, { weight: 1, arbitrary: configureOp }),
    {
      maxLength: 60,
    },
  ),
  end: fc.constantFrom('close', 'destroy'),
});

test('random schedules: every call settles exactly once, batches respect the limit, aborted items never reach the handler', async () => {
  await fc.assert(
    fc.asyncProperty(scenario, async (s) => {
      let limit = s.maxBatchSize;
      let batchNo = 0;
      const calls: ReturnType<typeof track<number>>[] = [];
      const abortedBeforeDispatch = new Set<number>();
      const violations: string[] = [];
      const dispatched: number[] = [];

      const predict = batchedFn<Input, number>({
        handler: async (batch) => {
          const rows = batch.reduce((sum, x) => sum + x.rows, 0);
          if (rows > limit) violations.push(`batch of ${rows} rows exceeds ${limit}`);
          for (const item of batch) {
            if (abortedBeforeDispatch.has(item.id)) violations.push(`settled item ${item.id} reached the handler`);
            if (calls[item.id]?.status !== 'pending') violations.push(`item ${item.id} dispatched after settling`);
            dispatched.push(item.id);
          }
          const n = batchNo++;
          const fault = s.faults[n % s.faults.length] as Fault;
          await new Promise((resolve) => setTimeout(resolve, s.costs[n % s.costs.length]));
          if (fault === 'throw') throw new Error('handler threw');
          if (fault === 'reject') return Promise.reject(new Error('handler rejected'));
          if (fault === 'short') return batch.slice(1).map((x) => x.id);
          if (fault === 'slot-error') return batch.map((x, i) => (i === 0 ? new Error('slot') : x.id));
          // Handler results a promise would adopt, misbehaving: batchTimeout (40 ms) ends the one that never settles.
          if (fault === 'thenable-throws')
            return {
              // biome-ignore lint/suspicious/noThenProperty: a thenable that throws, on purpose
              then: () => {
                throw new Error('then threw');
              },
            } as unknown as number[];
          if (fault === 'thenable-twice') {
            const ids = batch.map((x) => x.id);
            return {
              // biome-ignore lint/suspicious/noThenProperty: a thenable that resolves twice, on purpose
              then: (ok: (v: number[]) => void) => {
                ok(ids);
                ok([]);
              },
            } as unknown as number[];
          }
          if (fault === 'never') return new Promise<number[]>(() => {});
          return batch.map((x) => x.id);
        },
        size: (x) => x.rows,
        maxBatchSize: s.maxBatchSize,
        maxDelay: s.maxDelay,
        channelCap: s.channelCap,
        concurrency: s.concurrency,
        batchTimeout: 40,
      });

      const invariant = (): void => {
        const st = predict.stats;
        if (st.calls !== st.completed + st.failed + st.queued + st.inFlightItems) {
          violations.push(
            `calls ${st.calls} != completed ${st.completed} + failed ${st.failed} + queued ${st.queued} + inFlight ${st.inFlightItems}`,
          );
        }
      };
      for (const op of s.ops) {
        invariant();
        if (op.kind === 'wait') {
          await advance(op.ms);
        } else if (op.kind === 'configure') {
          predict.configure({ maxBatchSize: op.maxBatchSize });
          limit = op.maxBatchSize;
        } else {
          const id = calls.length;
          const controller = op.abortAfter === undefined ? undefined : new AbortController();
          if (controller !== undefined && op.abortAfter === -1) controller.abort();
          const call = track(
            predict(
              { id, rows: op.rows },
              {
                ...(controller === undefined ? {} : { signal: controller.signal }),
                ...(op.timeout === undefined ? {} : { timeout: op.timeout }),
              },
            ),
          );
          calls.push(call);
          if (controller !== undefined && op.abortAfter !== undefined && op.abortAfter >= 0) {
            setTimeout(() => {
              if (!dispatched.includes(id) && call.status === 'pending') abortedBeforeDispatch.add(id);
              controller.abort();
            }, op.abortAfter);
          }
        }
      }
      if (s.end === 'close') {
        const closed = track(predict.close());
        for (let i = 0; i < 100 && closed.status === 'pending'; i++) await advance(25);
        expect(closed.status).toBe('fulfilled');
      } else {
        predict.destroy();
        await flush();
      }
      await advance(100);

      expect(violations).toEqual([]);
      for (const call of calls) expect(call.settles).toBe(1);
      const stats = predict.stats;
      const fulfilled = calls.filter((c) => c.status === 'fulfilled').length;
      const rejected = calls.filter((c) => c.status === 'rejected').length;
      expect(fulfilled + rejected).toBe(calls.length);
      expect(stats.calls).toBe(calls.length);
      expect(stats.completed).toBe(fulfilled);
      expect(stats.failed).toBe(rejected);
      expect(stats.queued + stats.inFlightItems).toBe(0);
      // FIFO: dispatch order follows call order.
      expect(dispatched).toEqual([...dispatched].sort((a, b) => a - b));
      // Fulfilled calls got their own output.
      for (const [id, call] of calls.entries()) if (call.status === 'fulfilled') expect(call.value).toBe(id);
    }),
    { numRuns: Number(process.env.FC_RUNS ?? 150) },
  );
});

test('random schedules with keys and priorities: no batch mixes keys, FIFO holds within a key and priority, all settle once', async () => {
  const keyedScenario = fc.record({
    maxBatchSize: fc.integer({ min: 1, max: 5 }),
    maxDelay: fc.oneof(fc.integer({ min: 0, max: 15 }), fc.constant('auto' as const)),
    concurrency: fc.integer({ min: 1, max: 3 }),
    preferred: fc.boolean(),
    ops: fc.array(
      fc.oneof(
        {
          weight: 5,
          arbitrary: fc.record({
            kind: fc.constant('call' as const),
            key: fc.constantFrom('a', 'b', 'c'),
            priority: fc.integer({ min: -1, max: 2 }),
            timeout: fc.option(fc.integer({ min: 0, max: 30 }), { nil: undefined }),
          }),
        },
        {
          weight: 2,
          arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 20 }) }),
        },
      ),
      { maxLength: 50 },
    ),
  });
  await fc.assert(
    fc.asyncProperty(keyedScenario, async (s) => {
      const violations: string[] = [];
      const dispatched: { id: number; key: string; priority: number }[] = [];
      const calls: ReturnType<typeof track<number>>[] = [];
      const meta: { key: string; priority: number }[] = [];
      const predict = batchedFn<{ id: number; key: string; priority: number }, number>({
        handler: async (batch) => {
          if (batch.length > s.maxBatchSize) violations.push(`batch of ${batch.length} > ${s.maxBatchSize}`);
          if (new Set(batch.map((x) => x.key)).size > 1)
            violations.push(`mixed keys ${batch.map((x) => x.key).join('')}`);
          dispatched.push(...batch);
          await new Promise((resolve) => setTimeout(resolve, 1 + batch.length));
          return batch.map((x) => x.id);
        },
        batchKey: (x) => x.key,
        maxBatchSize: s.maxBatchSize,
        maxDelay: s.maxDelay,
        concurrency: s.concurrency,
        ...(s.preferred && s.maxBatchSize >= 2 ? { preferredBatchSizes: [2] } : {}),
      });
      for (const op of s.ops) {
        if (op.kind === 'wait') {
          await advance(op.ms);
          continue;
        }
        const id = calls.length;
        meta.push({ key: op.key, priority: op.priority });
        calls.push(
          track(
            predict(
              { id, key: op.key, priority: op.priority },
              { priority: op.priority, ...(op.timeout === undefined ? {} : { timeout: op.timeout }) },
            ),
          ),
        );
      }
      const closed = track(predict.close());
      for (let i = 0; i < 200 && closed.status === 'pending'; i++) await advance(10);
      await advance(50);
      expect(closed.status).toBe('fulfilled');
      expect(violations).toEqual([]);
      for (const call of calls) expect(call.settles).toBe(1);
      for (const [id, call] of calls.entries()) if (call.status === 'fulfilled') expect(call.value).toBe(id);
      // Within one key and priority, calls are dispatched in the order they were made.
      const groups = new Map<string, number[]>();
      for (const d of dispatched)
        groups.set(`${d.key}/${d.priority}`, [...(groups.get(`${d.key}/${d.priority}`) ?? []), d.id]);
      for (const ids of groups.values()) expect(ids).toEqual([...ids].sort((x, y) => x - y));
      const stats = predict.stats;
      expect(stats.completed + stats.failed).toBe(calls.length);
      expect(stats.queued + stats.inFlightItems).toBe(0);
    }),
    { numRuns: Number(process.env.FC_RUNS ?? 100) },
  );
});
