// Queue overhead: 256 callers in a closed loop, identity handler, batches of 64.
// The three contenders run interleaved in one process, so the ratios share the machine's noise.
import DataLoader from 'dataloader';
import { batchedFn } from 'batched-fn';
import { closedLoop, fmt } from './closed-loop.js';

const CALLERS = 256;
const BATCH = 64;
const TOTAL = Number(process.env.BENCH_CALLS ?? 2_000_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);

function makeBatchedFn() {
  return batchedFn({ handler: (batch) => batch, maxBatchSize: BATCH, maxDelay: 1 });
}

function makeDataLoader() {
  const loader = new DataLoader(async (keys) => keys, { cache: false, maxBatchSize: BATCH });
  return (key) => loader.load(key);
}

/** The floor: one promise per call, resolved in groups of 64, nothing else. */
function makeBare() {
  let pending = [];
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    const group = pending;
    pending = [];
    for (const { input, resolve } of group) resolve(input);
  };
  return (input) =>
    new Promise((resolve) => {
      pending.push({ input, resolve });
      if (pending.length === BATCH) flush();
      else if (!scheduled) {
        scheduled = true;
        queueMicrotask(flush);
      }
    });
}

const contenders = { 'batched-fn': makeBatchedFn, dataloader: makeDataLoader, 'bare promises': makeBare };
const results = Object.fromEntries(Object.keys(contenders).map((k) => [k, []]));

// Warm-up so the JIT has seen every contender before timing starts.
for (const make of Object.values(contenders)) await closedLoop(make(), { callers: CALLERS, total: 200_000 });
// Each round runs all three back to back, in a rotating order, and ratios are taken within a round:
// on a noisy 2-core machine, rounds differ by 30 % while contenders in one round see the same conditions.
const names = Object.keys(contenders);
for (let round = 0; round < ROUNDS; round++) {
  for (let k = 0; k < names.length; k++) {
    const name = names[(round + k) % names.length];
    results[name][round] = await closedLoop(contenders[name](), { callers: CALLERS, total: TOTAL });
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ours = results['batched-fn'];
const pairedRatio = (name) => median(ours.map((x, round) => x / results[name][round]));
const rows = Object.entries(results).map(([name, xs]) => ({
  contender: name,
  'M items/s (median)': fmt(median(xs) / 1e6),
  'runs (M/s)': xs.map((x) => fmt(x / 1e6)).join(' / '),
  'batched-fn ÷ this (median of paired rounds)': fmt(pairedRatio(name)),
}));
console.log(
  `\nQueue overhead: ${CALLERS} callers, identity handler, batches of ${BATCH}, ${TOTAL.toLocaleString()} calls x ${ROUNDS} rounds`,
);
console.table(rows);
console.log(
  `batched-fn / dataloader = ${fmt(pairedRatio('dataloader'))} (target >= 1.0); batched-fn / bare promises = ${fmt(pairedRatio('bare promises'))}`,
);
