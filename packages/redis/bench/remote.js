// Redis Streams: end-to-end items/s with 1 and 2 workers against a simulated model that takes 10 ms per
// batch of up to 64 rows, with 1-row and 4-row requests; round-trip time at low load with an instant
// model; and the cost against the in-process batcher. Each worker is a core batcher fed from the stream.
// Everything runs on this machine: redis-server, frontend and workers share the same 2 cores.
import { batchedFn } from 'batched-fn';
import { remoteBatchedFn, startRemoteWorker } from '@batched-fn/redis';
import { LocalRedis } from '@batched-fn/redis/testing';

const DURATION_MS = Number(process.env.BENCH_REMOTE_MS ?? 3000);
const fmt = (n, d = 2) => Number(n).toFixed(d);
const percentile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
const tenMs = async (batch) => {
  await new Promise((r) => setTimeout(r, 10));
  return batch;
};
const instant = (batch) => batch;

const redis = new LocalRedis();
await redis.start();

async function closedLoop(predict, callers, ms, rows = 1) {
  let done = 0;
  let stop = false;
  const timer = setTimeout(() => (stop = true), ms);
  const started = performance.now();
  await Promise.all(
    Array.from({ length: callers }, async () => {
      while (!stop) {
        await predict(rows);
        done++;
      }
    }),
  );
  clearTimeout(timer);
  return done / ((performance.now() - started) / 1000);
}

// A request's input is its row count: rows count against the worker batcher's maxBatchSize through `size`.
const rowsOf = (rows) => rows;

async function remoteSetup(workers, handler, prefix, maxDelay = 'auto') {
  const locals = [];
  const remotes = [];
  for (let i = 0; i < workers; i++) {
    const local = batchedFn({ handler, maxBatchSize: 64, maxDelay, size: rowsOf });
    locals.push(local);
    remotes.push(await startRemoteWorker({ redis: redis.url, name: 'sim', prefix, predict: local }));
  }
  const predict = remoteBatchedFn({ redis: redis.url, name: 'sim', prefix, size: rowsOf });
  await predict.ready();
  return {
    predict,
    async close() {
      await predict.close();
      for (const r of remotes) await r.stop();
      for (const l of locals) await l.close();
    },
  };
}

// 1. Scaling: 256 callers, 10 ms per batch of up to 64 rows; requests of 1 and of 4 rows (rows/s reported).
const scaling = { 1: {}, 4: {} };
for (const rows of [1, 4]) {
  for (const workers of [1, 2]) {
    const setup = await remoteSetup(workers, tenMs, `scale${workers}r${rows}`);
    await closedLoop(setup.predict, 256, 500, rows);
    scaling[rows][workers] = rows * (await closedLoop(setup.predict, 256, DURATION_MS, rows));
    await setup.close();
  }
}
const local = batchedFn({ handler: tenMs, maxBatchSize: 64, maxDelay: 'auto', size: rowsOf });
const inProcess = await closedLoop(local, 256, DURATION_MS);
await local.close();

// 2. Round trip at low load: one caller at a time, instant model. With maxDelay 0 it is the transport
// alone; with the default 2 ms the worker also holds a lone entry for its window, hoping for company.
async function roundTrips(maxDelay) {
  const setup = await remoteSetup(1, instant, `rtt${maxDelay}`, maxDelay);
  const samples = [];
  for (let i = 0; i < 400; i++) {
    const t = performance.now();
    await setup.predict(1);
    samples.push(performance.now() - t);
  }
  await setup.close();
  return samples.sort((a, b) => a - b);
}
const samples = await roundTrips(0);
const windowed = await roundTrips(2);
const adaptive = await roundTrips('auto');
const inline = batchedFn({ handler: instant, maxDelay: 0 });
const localSamples = [];
for (let i = 0; i < 400; i++) {
  const t = performance.now();
  await inline(i);
  localSamples.push(performance.now() - t);
}
localSamples.sort((a, b) => a - b);

console.log(
  `\nRedis Streams, simulated model 10 ms per batch (up to 64 rows), 256 callers, worker maxDelay 'auto', ${DURATION_MS} ms per run; redis-server, frontend and workers on one 2-core machine`,
);
console.table([
  { setup: 'in-process batcher, 1-row requests', 'rows/s': Math.round(inProcess) },
  { setup: 'Redis, 1 worker, 1-row requests', 'rows/s': Math.round(scaling[1][1]) },
  { setup: 'Redis, 2 workers, 1-row requests', 'rows/s': Math.round(scaling[1][2]) },
  { setup: 'Redis, 1 worker, 4-row requests', 'rows/s': Math.round(scaling[4][1]) },
  { setup: 'Redis, 2 workers, 4-row requests', 'rows/s': Math.round(scaling[4][2]) },
]);
console.log(
  `2 workers / 1 worker = ${fmt(scaling[1][2] / scaling[1][1])} with 1-row requests, ${fmt(scaling[4][2] / scaling[4][1])} with 4-row requests (target >= 1.8); 1 Redis worker / in-process = ${fmt(scaling[1][1] / inProcess)}`,
);
console.log(
  `Round trip at low load (instant model), p50 (p99): worker maxDelay 0 ${fmt(percentile(samples, 0.5))} (${fmt(percentile(samples, 0.99))}) ms; 'auto' (the default) ${fmt(percentile(adaptive, 0.5))} (${fmt(percentile(adaptive, 0.99))}) ms; fixed 2 ms ${fmt(percentile(windowed, 0.5))} ms; in-process ${fmt(percentile(localSamples, 0.5), 3)} ms`,
);
await redis.stop();
