// `maxDelay: 'auto'` against fixed delays 0 and 1 ms under closed loops, on batch slots with a device each or
// sharing one (in turns, or in slices), on the fake clock of the tests' closed-loop driver: every run is exact and
// the same on any machine. Per case (clients with 1-4 calls in flight each, returns of 0-3 ms after each answer,
// maxBatchSize 16, 32 or 64, a fixed-cost model 7 + ⌈n/16⌉ ms and a per-row one 2 + n ms), the rows `'auto'`
// answered in the last 500 ms of a second over the better fixed delay's; per group, their geometric mean and the
// worst case. `npm run bench:auto-slots --workspace batched-fn` (about 2 minutes; AUTO_SLOTS_QUICK=1: concurrency 2
// and 20 clients only).
import { test } from 'vitest';
import { closedLoop } from '../test/closed-loop-driver.js';
import { useFakeClock } from '../test/helpers.js';

useFakeClock();

const MODELS = {
  'fixed cost, 7 + ⌈n/16⌉ ms': (rows: number) => 7 + Math.ceil(rows / 16),
  'per row, 2 + n ms': (rows: number) => 2 + rows,
};
const DEVICES = ['own', 'turns', 'slices'] as const;
const quick = process.env.AUTO_SLOTS_QUICK === '1';
const GROUPS = quick
  ? [{ concurrency: 2, clients: 20 }]
  : [
      { concurrency: 2, clients: 20 },
      { concurrency: 3, clients: 20 },
      { concurrency: 2, clients: 64 },
    ];

test('auto against fixed delays, by batch slots', async () => {
  const rows: Record<string, string | number>[] = [];
  for (const device of DEVICES)
    for (const { concurrency, clients } of GROUPS)
      for (const [model, cost] of Object.entries(MODELS)) {
        let logSum = 0;
        let cases = 0;
        let worst = { ratio: Number.POSITIVE_INFINITY, label: '' };
        for (const maxBatchSize of [16, 32, 64])
          for (let inFlight = 1; inFlight <= 4; inFlight++)
            for (let roundTrip = 0; roundTrip <= 3; roundTrip++) {
              const served = async (maxDelay: number | 'auto') =>
                (await closedLoop({ clients, inFlight, concurrency, maxBatchSize, maxDelay, cost, roundTrip, device }))
                  .served;
              const ratio = (await served('auto')) / Math.max(await served(0), await served(1));
              logSum += Math.log(ratio);
              cases++;
              if (ratio < worst.ratio)
                worst = { ratio, label: `max ${maxBatchSize}, ${inFlight} each, back in ${roundTrip} ms` };
            }
        rows.push({
          device,
          slots: concurrency,
          clients,
          model,
          'auto / best fixed (geomean)': Number(Math.exp(logSum / cases).toFixed(3)),
          worst: `${worst.ratio.toFixed(2)} (${worst.label})`,
        });
      }
  console.table(rows);
}, 1_800_000);
