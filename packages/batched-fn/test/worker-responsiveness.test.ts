import { monitorEventLoopDelay } from 'node:perf_hooks';
import { expect, test } from 'vitest';
import { batchedFn } from 'batched-fn';

function spinFor(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

async function loopDelayP99While(work: () => Promise<unknown>): Promise<number> {
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  histogram.enable();
  await work();
  histogram.disable();
  return histogram.percentile(99) / 1e6;
}

// Checks that the loop is not blocked, not speed: the margins are wide on purpose.
test('a 50 ms-per-batch handler in a worker leaves the main loop responsive; inline it does not', async () => {
  const calls = (predict: (x: number) => Promise<number>) => async () => {
    for (let round = 0; round < 6; round++) await Promise.all([1, 2, 3].map((x) => predict(x)));
  };
  const inWorker = batchedFn<number, number>({
    worker: new URL('./fixtures/spin.worker.mjs', import.meta.url),
    workerData: { ms: 50 },
    maxDelay: 0,
  });
  await inWorker.ready();
  const workerP99 = await loopDelayP99While(calls(inWorker));
  await inWorker.close();

  const inline = batchedFn<number, number>({
    handler: (batch) => {
      spinFor(50);
      return batch;
    },
    maxDelay: 0,
  });
  const inlineP99 = await loopDelayP99While(calls(inline));
  await inline.close();

  // Blocked would be about 50 ms per batch; a loaded runner's scheduling noise stays well under 30.
  expect(workerP99).toBeLessThan(30);
  expect(inlineP99).toBeGreaterThan(40);
});
