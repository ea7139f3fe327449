// file: examples/quickstart.mjs
import { batchedFn } from 'batched-fn';

// Stands in for a real model: one call scores a whole batch.
const model = { predict: (rows) => rows.map((row) => row.reduce((a, b) => a + b, 0)) };

const predict = batchedFn({
  handler: (batch, m) => m.predict(batch),
  context: () => model, // built once, before the first batch
  maxBatchSize: 16,
  maxDelay: 5,
});

// Each caller awaits its own answer; concurrent calls share one model run.
const answers = await Promise.all([predict([1, 2]), predict([3, 4]), predict([5, 6])]);
console.log(answers, 'in', predict.stats.batches, 'batch'); // [ 3, 7, 11 ] in 1 batch
await predict.close();
