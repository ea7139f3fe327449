// file: examples/worker/model.worker.ts
import { threadId } from 'node:worker_threads';

// Runs inside each worker thread: the context (a loaded model) is built there, once.
export function context(workerData: { scale: number }) {
  return { scale: workerData.scale, threadId };
}

export function handler(batch: Float32Array[], model: { scale: number }): number[] {
  return batch.map((row) => row.reduce((sum, x) => sum + x * model.scale, 0));
}
