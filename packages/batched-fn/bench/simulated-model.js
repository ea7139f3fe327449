// A simulated model that costs 2 ms + 0.05 ms per item (busy-wait, like a blocking runtime),
// driven by 64 callers with a batch limit of 64. The ceiling is 64 items per 5.2 ms.
// A bare "group of 64 promises, then run" loop runs in the same process as the machine's own floor.
import { batchedFn } from 'batched-fn';
import { fmt, percentile } from './closed-loop.js';

const CALLERS = 64;
const BATCH = 64;
const DURATION_MS = Number(process.env.BENCH_MODEL_MS ?? 3000);
const ROUNDS = Number(process.env.BENCH_MODEL_ROUNDS ?? 3);
const cost = (n) => 2 + 0.05 * n;
const ceiling = (BATCH / cost(BATCH)) * 1000;

function spin(ms) {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

const model = (batch) => {
  spin(cost(batch.length));
  return batch;
};

function makeBatchedFn() {
  return batchedFn({ handler: model, maxBatchSize: BATCH, maxDelay: 5 });
}

function makeBare() {
  let pending = [];
  const run = () => {
    const group = pending;
    pending = [];
    model(group);
    for (const { input, resolve } of group) resolve(input);
  };
  return (input) =>
    new Promise((resolve) => {
      pending.push({ input, resolve });
      if (pending.length === BATCH) queueMicrotask(run);
    });
}

async function drive(predict) {
  const latencies = [];
  let done = 0;
  let stop = false;
  const started = performance.now();
  const timer = setTimeout(() => (stop = true), DURATION_MS);
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
  clearTimeout(timer);
  latencies.sort((a, b) => a - b);
  return {
    throughput: done / ((performance.now() - started) / 1000),
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
  };
}

const rows = [];
for (let round = 0; round < ROUNDS; round++) {
  const predict = makeBatchedFn();
  const ours = await drive(predict);
  const mean = predict.stats.batchSize.mean;
  await predict.close();
  // The bare loop never yields to the event loop, so its time limit is a count of batches instead.
  const bare = await driveBare();
  rows.push({
    round: round + 1,
    'batched-fn items/s': Math.round(ours.throughput),
    '% of ceiling': fmt((100 * ours.throughput) / ceiling, 1),
    'p50 ms': fmt(ours.p50),
    'p99 ms': fmt(ours.p99),
    'mean batch': fmt(mean, 1),
    'bare floor % of ceiling': fmt((100 * bare) / ceiling, 1),
  });
}

async function driveBare() {
  const predict = makeBare();
  const batches = Math.round(DURATION_MS / cost(BATCH));
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CALLERS }, async () => {
      for (let i = 0; i < batches; i++) await predict(1);
    }),
  );
  return (batches * CALLERS) / ((performance.now() - started) / 1000);
}

console.log(
  `\nSimulated model: cost 2 ms + 0.05 ms/item, ${CALLERS} callers, maxBatchSize ${BATCH}, ceiling ${Math.round(ceiling)} items/s`,
);
console.table(rows);
console.log('target: >= 98 % of the ceiling; the bare floor shows what this machine allows with zero batching logic');
