// file: examples/worker/model.worker.mjs
import { threadId } from 'node:worker_threads';

// Runs inside each worker thread: the context (a loaded model) is built there, once.
export function context(workerData) {
  return { scale: workerData.scale, threadId };
}

export function handler(batch, model) {
  return batch.map((row) => row.reduce((sum, x) => sum + x * model.scale, 0));
}
