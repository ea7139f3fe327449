import { expect, test } from 'vitest';
import { closedLoop } from './closed-loop-driver.js';
import { useFakeClock } from './helpers.js';

// maxDelay 'auto' under a closed loop, with `concurrency` above what the device behind the handler runs at once:
// an async handler over one model on one device (an inline ONNX session, a remote server with one GPU), given
// concurrency 2 to overlap its I/O. Batches then queue for the device inside the handler. Found by an independent
// attack pass on 50edcd4; fails there, passes before it and after the fix.
//
// 50edcd4 capped the rate bound under a closed loop at the rows still owed even with a batch running: a cohort back
// whole went at once to the free batch slot, which is free only in the engine's eyes: its batch waited for the
// device behind the running one. The clients stayed split into concurrency-many cohorts that each paid the fixed
// cost a. Without the cap while a batch runs, the rate bound holds the cohort on that slot until the running batch's
// callers are back too, and the loop runs as one cohort, in full batches. Measured (64 clients, c(n) = 7 + ceil(n /
// 64) ms, the server's default MLP shape, one device): batches of 64 and ~7.1 rows/ms at concurrency 2 (as at
// concurrency 1); at 50edcd4, batches of 32, ~4.0 rows/ms, each call taking 15 ms instead of 8. The server showed
// the same with 2 ONNX sessions of 2 threads on 2 cores (`bench/cores.js`, 2 x 2): 0.59-0.61x ORT alone in batches
// of 53-55 before, 0.44-0.45x in batches of 23 at 50edcd4.

useFakeClock();

/** The rows answered in the last 500 ms of a second of the loop, and the mean size of the batches dispatched in it. */
async function oneDeviceLoop(options: { clients: number; concurrency: number; cost: (rows: number) => number }) {
  const loop = await closedLoop({
    ...options,
    inFlight: 1,
    maxBatchSize: 64,
    maxDelay: 'auto',
    roundTrip: 1,
    device: 'turns',
  });
  const late = loop.batches.filter((b) => b.dispatched >= loop.from && b.dispatched < loop.to);
  return { served: loop.served, meanBatch: late.reduce((sum, b) => sum + b.rows, 0) / late.length };
}

test('64 closed-loop clients, one device, concurrency 2: the loop still runs in full batches, as at concurrency 1', async () => {
  const cost = (n: number) => 7 + Math.ceil(n / 64);
  const one = await oneDeviceLoop({ clients: 64, concurrency: 1, cost });
  const two = await oneDeviceLoop({ clients: 64, concurrency: 2, cost });
  // Expected: a second batch slot in front of one device costs little; batches stay near the whole loop (64 rows).
  // Before 50edcd4 and after the fix: 64 rows. At 50edcd4: 32 (two cohorts taking turns on the device, each paying
  // a = 7 ms).
  expect.soft(two.meanBatch).toBeGreaterThanOrEqual(48);
  // Expected: at least 90 % of what concurrency 1 serves (~3560 rows in 500 ms, 7.1 rows/ms).
  // Before 50edcd4 and after the fix: ~3560 (100 %). At 50edcd4: ~2000 (56 %).
  expect.soft(two.served).toBeGreaterThanOrEqual(0.9 * one.served);
});
