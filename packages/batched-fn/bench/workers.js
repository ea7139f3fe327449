// Worker mode: scaling of a CPU-bound model with 1 and 2 workers, the per-item overhead of
// crossing threads, and copying against transferring a 1 MB input.
import { batchedFn, move } from 'batched-fn';
import { fmt } from './closed-loop.js';

const fixture = (name) => new URL(`../test/fixtures/${name}`, import.meta.url);
const DURATION_MS = Number(process.env.BENCH_WORKER_MS ?? 3000);

async function throughput(predict, makeInput, callers, durationMs = DURATION_MS) {
  let done = 0;
  let stop = false;
  const timer = setTimeout(() => (stop = true), durationMs);
  const started = performance.now();
  await Promise.all(
    Array.from({ length: callers }, async () => {
      while (!stop) {
        await predict(makeInput());
        done++;
      }
    }),
  );
  clearTimeout(timer);
  return done / ((performance.now() - started) / 1000);
}

// 1. A CPU-bound pure-JS model: 256 inputs x 512 outputs per row.
const model = { inner: 256, outer: 512 };
const row = () => Float64Array.from({ length: 256 }, (_, i) => (i % 7) - 3);
const scaling = { 1: [], 2: [] };
// Alternating 1, 2, 1, 2 so neither setting always runs on a cold or a warm machine.
for (const workers of [1, 2, 1, 2]) {
  const predict = batchedFn({
    worker: fixture('matmul.worker.mjs'),
    workers,
    workerData: model,
    maxBatchSize: 16,
    maxDelay: 1,
  });
  await predict.ready();
  await throughput(predict, row, 64, 500); // warm-up: JIT in every worker
  scaling[workers].push(await throughput(predict, row, 64));
  await predict.close();
}
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
console.log(
  `\nCPU-bound model in workers (pure-JS 256x512 matmul per row, batches of 16, 64 callers, ${DURATION_MS} ms per run)`,
);
console.table([
  { workers: 1, 'rows/s (runs)': scaling[1].map(Math.round).join(' / ') },
  { workers: 2, 'rows/s (runs)': scaling[2].map(Math.round).join(' / ') },
]);
console.log(`2 workers / 1 worker = ${fmt(mean(scaling[2]) / mean(scaling[1]))} (target >= 1.7)`);

// 2. Per-item overhead of crossing threads, identity handler, same batching.
const inline = batchedFn({ handler: (batch) => batch, maxBatchSize: 64, maxDelay: 1 });
const pooled = batchedFn({ worker: fixture('faulty.worker.mjs'), maxBatchSize: 64, maxDelay: 1 });
await pooled.ready();
const inlineRate = await throughput(inline, () => 1, 256, 1500);
const workerRate = await throughput(pooled, () => 1, 256, 1500);
await pooled.close();
console.log('\nPer-item overhead, identity handler, 256 callers, batches of 64');
console.table([
  { mode: 'inline', 'items/s': Math.round(inlineRate), 'µs per item': fmt(1e6 / inlineRate, 3) },
  { mode: 'worker', 'items/s': Math.round(workerRate), 'µs per item': fmt(1e6 / workerRate, 3) },
]);
console.log(`worker mode adds ${fmt(1e6 / workerRate - 1e6 / inlineRate, 3)} µs per item`);

// 3. A 1 MB Float32Array input, copied versus transferred with move().
const megabyte = () => new Float32Array(262_144).fill(1);
const big = batchedFn({ worker: fixture('echo-length.worker.mjs'), maxBatchSize: 8, maxDelay: 0 });
await big.ready();
const copied = await throughput(big, megabyte, 8, 1500);
const moved = await throughput(big, () => move(megabyte()), 8, 1500);
await big.close();
console.log('\n1 MB Float32Array input, 8 callers');
console.table([
  { hand_off: 'copy (structured clone)', 'calls/s': Math.round(copied), 'GB/s crossing': fmt(copied / 1024, 2) },
  { hand_off: 'transfer (move)', 'calls/s': Math.round(moved), 'GB/s crossing': fmt(moved / 1024, 2) },
]);
console.log(`transfer / copy = ${fmt(moved / copied)}`);
