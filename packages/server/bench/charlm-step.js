// Cost of one charlm decode step at N = 1, 8 and 32 sequences (one intra-op thread, median of 200
// steps after warm-up): a step is mostly reading W, so batching a step should pay.
import { measureStepCost } from './step-cost.js';

const cost = await measureStepCost([1, 8, 32]);
console.table(
  Object.entries(cost).map(([n, ms]) => ({
    N: Number(n),
    'ms per step': ms.toFixed(3),
    'ms per sequence-step': (ms / Number(n)).toFixed(3),
  })),
);
console.log(`a step of 32 costs ${(cost[32] / cost[1]).toFixed(1)}x a step of 1 (32x without batching)`);
