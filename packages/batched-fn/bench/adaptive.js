// Scheduling: the simulated model (2 ms + 0.05 ms·N, busy-waiting in a worker thread) under Poisson
// arrivals at 5 %, 50 % and 95 % of its ceiling, with fixed maxDelay 1, 10 and 50 ms against 'auto'.
// The driver spins on the main thread between setImmediate turns, so arrivals land within microseconds
// of their schedule; latency is measured from each call's scheduled arrival time.
import { mkdirSync, writeFileSync } from 'node:fs';
import { batchedFn } from 'batched-fn';
import { fmt, percentile } from './closed-loop.js';
import { barChart } from './svg-bars.js';

const MAX = 64;
const cost = (n) => 2 + 0.05 * n;
const ceilingPerMs = MAX / cost(MAX);
const LOADS = [0.05, 0.5, 0.95];
const SETTINGS = [1, 10, 50, 'auto'];
const RUN_MS = Number(process.env.BENCH_SCHED_MS ?? 3000);
const WARMUP_MS = 600;

function exponential(rate, random) {
  return -Math.log(1 - random()) / rate;
}

function seeded(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

async function run(load, maxDelay) {
  const predict = batchedFn({ worker: new URL('./spin-cost.worker.js', import.meta.url), maxBatchSize: MAX, maxDelay });
  await predict.ready();
  const rate = load * ceilingPerMs;
  const random = seeded(Math.round(load * 1000));
  const latencies = [];
  let measured = 0;
  const start = performance.now();
  const end = start + WARMUP_MS + RUN_MS;
  let next = start + exponential(rate, random);
  const pending = [];
  await new Promise((resolve) => {
    const tick = () => {
      const t = performance.now();
      while (next <= t && next < end) {
        const scheduled = next;
        const inWindow = scheduled >= start + WARMUP_MS;
        pending.push(
          predict(1).then(() => {
            if (inWindow) {
              latencies.push(performance.now() - scheduled);
              measured++;
            }
          }),
        );
        next += exponential(rate, random);
      }
      if (t >= end) resolve();
      else setImmediate(tick);
    };
    tick();
  });
  await Promise.all(pending);
  const elapsed = RUN_MS / 1000;
  latencies.sort((a, b) => a - b);
  const offered = rate * RUN_MS;
  const stats = predict.stats;
  await predict.close();
  return {
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    throughput: measured / elapsed,
    served: measured / offered,
    meanBatch: stats.batchSize.mean,
  };
}

/** A caller alone on an idle batcher: calls spaced far apart, so every one finds the handler free. */
async function lone(maxDelay) {
  const predict = batchedFn({ worker: new URL('./spin-cost.worker.js', import.meta.url), maxBatchSize: MAX, maxDelay });
  await predict.ready();
  // Teach the cost model batch sizes first, as a live server would have.
  for (let n = 1; n <= 12; n++) await Promise.all(Array.from({ length: n }, () => predict(1)));
  await new Promise((resolve) => setTimeout(resolve, 300));
  const latencies = [];
  for (let i = 0; i < 40; i++) {
    const t = performance.now();
    await predict(1);
    latencies.push(performance.now() - t);
    await new Promise((resolve) => setTimeout(resolve, 15));
  }
  await predict.close();
  latencies.sort((a, b) => a - b);
  return percentile(latencies, 0.5);
}

const results = {};
for (const load of LOADS) {
  results[load] = {};
  for (const setting of SETTINGS) results[load][setting] = await run(load, setting);
}

const rows = [];
for (const load of LOADS) {
  const fixed = SETTINGS.filter((s) => s !== 'auto').map((s) => results[load][s].p99);
  const bestFixed = Math.min(...fixed);
  for (const setting of SETTINGS) {
    const r = results[load][setting];
    rows.push({
      load: `${load * 100} %`,
      maxDelay: String(setting),
      'p50 ms': fmt(r.p50),
      'p99 ms': fmt(r.p99),
      'items/s': Math.round(r.throughput),
      'served / offered': `${fmt(100 * r.served, 1)} %`,
      'mean batch': fmt(r.meanBatch, 1),
      'p99 / best fixed': setting === 'auto' ? fmt(r.p99 / bestFixed) : '',
    });
  }
}
console.log(
  `\nScheduling: simulated model c(N) = 2 ms + 0.05 ms·N in a worker, maxBatchSize ${MAX}, ceiling ${Math.round(ceilingPerMs * 1000)} items/s, Poisson arrivals, ${RUN_MS} ms per run`,
);
console.table(rows);
const loneAuto = await lone('auto');
const loneFixed = await lone(1);
console.log(
  `A caller alone on an idle batcher (40 calls 15 ms apart): p50 ${fmt(loneAuto)} ms with 'auto', ${fmt(loneFixed)} ms with maxDelay 1; c(1) = ${fmt(cost(1))} ms`,
);
const low = results[0.05].auto;
const high = results[0.95].auto;
console.log(
  `targets: 5 % load p50 ${fmt(low.p50)} ms (<= c(1) + 0.2 = ${fmt(cost(1) + 0.2)}); 95 % load served ${fmt(100 * high.served, 1)} % (>= 98 %); p99 within 1.1x of the best fixed setting at every load`,
);

const out = process.env.BENCH_OUT ?? 'bench-out';
mkdirSync(out, { recursive: true });
writeFileSync(
  `${out}/scheduling.svg`,
  barChart({
    title: 'p99 latency by load: fixed maxDelay against auto (lower is better)',
    groups: LOADS.map((l) => `${l * 100} % load`),
    series: SETTINGS.map((s) => (s === 'auto' ? "'auto'" : `${s} ms`)),
    values: LOADS.map((l) => SETTINGS.map((s) => results[l][s].p99)),
    unit: 'p99 ms',
  }),
);
writeFileSync(`${out}/scheduling.json`, `${JSON.stringify(results, null, 2)}\n`);
console.log(`Wrote ${out}/scheduling.svg`);
