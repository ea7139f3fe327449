import { expect, test } from 'vitest';
import fc from 'fast-check';
import { batchedFn } from 'batched-fn';
import { track } from './helpers.js';

const rogue = new URL('./fixtures/rogue.worker.mjs', import.meta.url);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// Worker mode on real threads and real time: configure() of the pool's batch size, delay and
// concurrency, with aborts and timeouts. Fewer runs than the inline properties: each starts threads.
test('worker mode under random configure(), aborts and timeouts: every call settles once with its own output', async () => {
  const op = fc.oneof(
    {
      weight: 6,
      arbitrary: fc.record({
        kind: fc.constant('call' as const),
        abortAfter: fc.option(fc.integer({ min: 0, max: 5 }), { nil: undefined }),
        timeout: fc.option(fc.integer({ min: 0, max: 10 }), { nil: undefined }),
      }),
    },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 4 }) }) },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('configure' as const),
        maxBatchSize: fc.integer({ min: 1, max: 6 }),
        concurrency: fc.integer({ min: 1, max: 3 }),
        maxDelay: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.constant('auto' as const)),
      }),
    },
  );
  await fc.assert(
    fc.asyncProperty(fc.array(op, { maxLength: 30 }), fc.integer({ min: 1, max: 2 }), async (ops, workers) => {
      const predict = batchedFn<number, number>({ worker: rogue, workers, maxBatchSize: 4, maxDelay: 1 });
      const calls: ReturnType<typeof track<number>>[] = [];
      for (const o of ops) {
        if (o.kind === 'wait') await sleep(o.ms);
        else if (o.kind === 'configure')
          predict.configure({ maxBatchSize: o.maxBatchSize, concurrency: o.concurrency, maxDelay: o.maxDelay });
        else {
          const controller = o.abortAfter === undefined ? undefined : new AbortController();
          calls.push(
            track(
              predict(calls.length, {
                ...(controller ? { signal: controller.signal } : {}),
                ...(o.timeout === undefined ? {} : { timeout: o.timeout }),
              }),
            ),
          );
          if (controller !== undefined) setTimeout(() => controller.abort(), o.abortAfter);
        }
      }
      await predict.close();
      await sleep(10);
      for (const [id, call] of calls.entries()) {
        expect(call.settles).toBe(1);
        if (call.status === 'fulfilled') expect(call.value).toBe(id);
      }
      const stats = predict.stats;
      expect(stats.calls).toBe(stats.completed + stats.failed);
      expect(stats.queued + stats.inFlightItems).toBe(0);
    }),
    { numRuns: Number(process.env.FC_WORKER_RUNS ?? 15) },
  );
}, 60_000);
