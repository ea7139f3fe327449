// file: examples/worker-pool.mjs
import { batchedFn, move } from 'batched-fn';

const predict = batchedFn({
  worker: new URL('./worker/model.worker.mjs', import.meta.url),
  workers: 2, // batches go to idle workers; the main thread stays free for I/O
  workerData: { scale: 0.5 },
  maxBatchSize: 32,
  maxDelay: 2,
});

// move() transfers the buffer to the worker instead of copying it; `row` is unusable afterwards.
const row = new Float32Array([1, 2, 3, 4]);
const score = await predict(move(row));
console.log('score', score, 'input detached:', row.byteLength === 0); // score 5 input detached: true
await predict.close();
