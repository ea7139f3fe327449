import { expect, test } from 'vitest';
import { batchedFn } from 'batched-fn';

// Real timers on purpose: this checks that timers get to run at all.
test('callers that call again at once, with a synchronous handler, do not starve timers', async () => {
  const predict = batchedFn<number, number>({ handler: (batch) => batch, maxBatchSize: 64, maxDelay: 0 });
  let stop = false;
  let calls = 0;
  const fired = performance.now();
  setTimeout(() => {
    stop = true;
  }, 20);
  await Promise.all(
    Array.from({ length: 128 }, async () => {
      while (!stop) {
        await predict(1);
        calls++;
      }
    }),
  );
  // Without yielding, the loop never reaches the timer and this test hangs until its own timeout.
  expect(performance.now() - fired).toBeLessThan(5000);
  expect(calls).toBeGreaterThan(128);
});
