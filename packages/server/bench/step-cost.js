// charlm's step cost on one intra-op thread: the median of 200 steps after 50 warm-up steps, per batch size.
import * as ort from 'onnxruntime-node';
import { CHARLM, ensureCharLm } from '../dist/index.js';

export async function measureStepCost(sizes) {
  const session = await ort.InferenceSession.create(ensureCharLm(), {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    executionMode: 'sequential',
  });
  const cost = {};
  for (const n of sizes) {
    const feeds = {
      token: new ort.Tensor('int64', new BigInt64Array(n).fill(5n), [n]),
      state: new ort.Tensor('float32', new Float32Array(n * CHARLM.hidden), [n, CHARLM.hidden]),
    };
    for (let i = 0; i < 50; i++) await session.run(feeds);
    const times = [];
    for (let i = 0; i < 200; i++) {
      const t = performance.now();
      await session.run(feeds);
      times.push(performance.now() - t);
    }
    cost[n] = times.sort((a, b) => a - b)[100];
  }
  await session.release();
  return cost;
}
