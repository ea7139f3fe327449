// Cost of one charlm decode step at N = 1, 8 and 32 sequences (one intra-op thread, median of 200
// steps after warm-up): a step is mostly reading W, so batching a step should pay.
import * as ort from 'onnxruntime-node';
import { CHARLM, ensureCharLm } from '../dist/index.js';

const session = await ort.InferenceSession.create(ensureCharLm(), { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential' });
const rows = [];
for (const n of [1, 8, 32]) {
  const feeds = { token: new ort.Tensor('int64', new BigInt64Array(n).fill(5n), [n]), state: new ort.Tensor('float32', new Float32Array(n * CHARLM.hidden), [n, CHARLM.hidden]) };
  for (let i = 0; i < 50; i++) await session.run(feeds);
  const times = [];
  for (let i = 0; i < 200; i++) {
    const t = performance.now();
    await session.run(feeds);
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  const ms = times[100];
  rows.push({ N: n, 'ms per step': ms.toFixed(3), 'ms per sequence-step': (ms / n).toFixed(3) });
}
console.table(rows);
const [one, , many] = rows;
console.log(`a step of 32 costs ${(Number(many['ms per step']) / Number(one['ms per step'])).toFixed(1)}x a step of 1 (32x without batching)`);
await session.release();
