// Memory per queued item: 1 M calls waiting behind a batch that never finishes.
// Run with --expose-gc so the heap is measured after a full collection.
import { batchedFn } from 'batched-fn';
import { fmt } from './closed-loop.js';

const ITEMS = Number(process.env.BENCH_QUEUED ?? 1_000_000);
if (typeof globalThis.gc !== 'function') throw new Error('run with node --expose-gc');

let release;
const blocked = new Promise((resolve) => (release = resolve));
const hold = async (batch) => {
  await blocked;
  return batch;
};
const predict = batchedFn({ handler: hold, maxBatchSize: 1, maxDelay: 0 });
const blocker = predict(-1).catch(() => {}); // occupies the only batch slot
await new Promise((resolve) => setImmediate(resolve));

gc();
const before = process.memoryUsage().heapUsed;
const calls = new Array(ITEMS);
for (let i = 0; i < ITEMS; i++) calls[i] = predict(i);
gc();
const after = process.memoryUsage().heapUsed;
// The test's own array of promises holds 4 bytes per slot (compressed pointers); the rest is the batcher's.
const perItem = (after - before) / ITEMS - 4;
console.log(`\nMemory: ${ITEMS.toLocaleString()} queued calls`);
console.table([
  {
    queued: predict.stats.queued,
    'heap delta MB': fmt((after - before) / 2 ** 20, 1),
    'bytes per queued item': fmt(perItem, 0),
  },
]);
console.log('target: <= 200 bytes per item (the promise, its resolvers and the queue record)');
predict.destroy();
release();
await Promise.allSettled([blocker, ...calls]);
