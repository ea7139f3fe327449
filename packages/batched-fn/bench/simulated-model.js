// A simulated model that costs 2 ms + 0.05 ms per item (busy-wait, like a blocking runtime),
// driven by 64 callers with a batch limit of 64. The ceiling is 64 items per 5.2 ms.
import { batchedFn } from 'batched-fn';
import { fmt, percentile } from './closed-loop.js';

const CALLERS = 64;
const BATCH = 64;
const DURATION_MS = Number(process.env.BENCH_MODEL_MS ?? 3000);
const cost = (n) => 2 + 0.05 * n;

function spin(ms) {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

const predict = batchedFn({
  handler: (batch) => {
    spin(cost(batch.length));
    return batch;
  },
  maxBatchSize: BATCH,
  maxDelay: 5,
});

const latencies = [];
let done = 0;
let stop = false;
const started = performance.now();
setTimeout(() => (stop = true), DURATION_MS);
await Promise.all(
  Array.from({ length: CALLERS }, async () => {
    while (!stop) {
      const t = performance.now();
      await predict(1);
      latencies.push(performance.now() - t);
      done++;
    }
  }),
);
const seconds = (performance.now() - started) / 1000;
const throughput = done / seconds;
const ceiling = (BATCH / cost(BATCH)) * 1000;
latencies.sort((a, b) => a - b);
console.log(`\nSimulated model: cost 2 ms + 0.05 ms/item, ${CALLERS} callers, maxBatchSize ${BATCH}, ${DURATION_MS} ms`);
console.table([
  {
    'items/s': Math.round(throughput),
    'ceiling items/s': Math.round(ceiling),
    '% of ceiling': fmt((100 * throughput) / ceiling, 1),
    'p50 ms': fmt(percentile(latencies, 0.5)),
    'p99 ms': fmt(percentile(latencies, 0.99)),
    'mean batch': fmt(predict.stats.batchSize.mean, 1),
  },
]);
console.log(`target: >= 98 % of the ceiling`);
await predict.close();
