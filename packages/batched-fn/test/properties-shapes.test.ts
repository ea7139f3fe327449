import { expect, test } from 'vitest';
import fc from 'fast-check';
import { batchedFn } from 'batched-fn';
import { advance, track, useFakeClock } from './helpers.js';

useFakeClock();

interface Item {
  id: number;
  rows: number;
}

const FILLER = -1;

// Rows larger than the smallest preferred size, padding, aborts, timeouts and configure() together:
// the combination that once spun a core. Checked: each call settles once with its own output, no
// batch exceeds the limit, padded batches reach their target, and the stats add up at every step.
test('random schedules with preferred sizes, sizes, padding and configure: every call settles once with its own output', async () => {
  const scenario = fc.record({
    maxDelay: fc.oneof(fc.integer({ min: 0, max: 10 }), fc.constant('auto' as const)),
    preferred: fc.constantFrom([4, 8], [2, 4], [3], [8]),
    padding: fc.boolean(),
    concurrency: fc.integer({ min: 1, max: 2 }),
    ops: fc.array(
      fc.oneof(
        {
          weight: 6,
          arbitrary: fc.record({
            kind: fc.constant('call' as const),
            rows: fc.integer({ min: 1, max: 6 }),
            timeout: fc.option(fc.integer({ min: 0, max: 30 }), { nil: undefined }),
            abortAfter: fc.option(fc.integer({ min: 0, max: 20 }), { nil: undefined }),
          }),
        },
        {
          weight: 3,
          arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 15 }) }),
        },
        {
          weight: 1,
          arbitrary: fc.record({
            kind: fc.constant('configure' as const),
            maxDelay: fc.oneof(fc.integer({ min: 0, max: 10 }), fc.constant('auto' as const)),
          }),
        },
      ),
      { maxLength: 50 },
    ),
  });
  await fc.assert(
    fc.asyncProperty(scenario, async (s) => {
      const violations: string[] = [];
      const calls: ReturnType<typeof track<number>>[] = [];
      const predict = batchedFn<Item, number>({
        handler: async (batch) => {
          const real = batch.filter((x) => x.id !== FILLER);
          const rows = real.reduce((sum, x) => sum + x.rows, 0);
          if (rows > 8) violations.push(`batch of ${rows} rows`);
          if (s.padding && batch.length > real.length) {
            const padded = batch.reduce((sum, x) => sum + x.rows, 0);
            const target = s.preferred.find((p) => p >= rows) ?? 8;
            if (padded !== target) violations.push(`padded to ${padded}, target ${target}`);
          }
          await new Promise((resolve) => setTimeout(resolve, 1 + real.length));
          return batch.map((x) => x.id);
        },
        size: (x) => x.rows,
        maxBatchSize: 8,
        maxDelay: s.maxDelay,
        preferredBatchSizes: s.preferred,
        concurrency: s.concurrency,
        ...(s.padding
          ? {
              pad: (batch: Item[], target: number) => [
                ...batch,
                { id: FILLER, rows: target - batch.reduce((sum, x) => sum + x.rows, 0) },
              ],
            }
          : {}),
      });
      const invariant = (): void => {
        const st = predict.stats;
        if (st.calls !== st.completed + st.failed + st.queued + st.inFlightItems)
          violations.push('stats do not add up');
        if (st.queued === 0 && st.queuedRows !== 0) violations.push(`queuedRows ${st.queuedRows} with nothing queued`);
      };
      for (const op of s.ops) {
        invariant();
        if (op.kind === 'wait') await advance(op.ms);
        else if (op.kind === 'configure') predict.configure({ maxDelay: op.maxDelay });
        else {
          const id = calls.length;
          const controller = op.abortAfter === undefined ? undefined : new AbortController();
          calls.push(
            track(
              predict(
                { id, rows: op.rows },
                {
                  ...(controller ? { signal: controller.signal } : {}),
                  ...(op.timeout === undefined ? {} : { timeout: op.timeout }),
                },
              ),
            ),
          );
          if (controller !== undefined) setTimeout(() => controller.abort(), op.abortAfter);
        }
      }
      const closed = track(predict.close());
      for (let i = 0; i < 100 && closed.status === 'pending'; i++) await advance(20);
      invariant();
      expect(closed.status).toBe('fulfilled');
      expect(violations).toEqual([]);
      for (const [id, call] of calls.entries()) {
        expect(call.settles).toBe(1);
        if (call.status === 'fulfilled') expect(call.value).toBe(id);
      }
    }),
    { numRuns: Number(process.env.FC_RUNS ?? 150) },
  );
});
