import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { encodeModel, type RunningServer, startServer } from '@batched-fn/server';
import { postJson } from './helpers.js';
import { scratchDir } from './scratch.js';

// An ONNX model that says it keeps the batch dimension but does not: ReduceSum over every axis
// answers one row whatever the batch holds. A batch of 2 rows must fail with a clear 500 that
// names the output, never hand one row's answer to two callers; a batch of 1 row is served.
let server: RunningServer;

beforeAll(async () => {
  const path = join(scratchDir('batched-fn-rows-'), 'squash.onnx');
  writeFileSync(
    path,
    encodeModel({
      name: 'squash',
      // Opset 11: ReduceSum without an `axes` input reduces every axis, keeping them as 1s.
      opset: 11,
      nodes: [{ opType: 'ReduceSum', inputs: ['x'], outputs: ['total'], name: 'sum' }],
      initializers: [],
      inputs: [{ name: 'x', shape: ['batch', 4] }],
      outputs: [{ name: 'total', shape: ['batch', 1] }],
    }),
  );
  server = await startServer({ model: path, port: 0, maxBatchSize: 8, maxDelay: 0, threads: 1 });
});
afterAll(async () => {
  await server.close();
});

const infer = (rows: number) =>
  postJson(
    `${server.url}/v2/models/squash/infer`,
    JSON.stringify({
      inputs: [{ name: 'x', datatype: 'FP32', shape: [rows, 4], data: Array.from({ length: rows * 4 }, (_, i) => i) }],
    }),
  );

test('a batch whose output lost the batch dimension fails with a 500 naming the output', async () => {
  const answer = await infer(2);
  expect(answer.status).toBe(500);
  expect(answer.body).toEqual({
    error: 'Model failed: Output `total` has 1 rows for 2 input rows; the model must keep the batch dimension',
  });
});

test('the same model answers a batch of one row, and the worker still serves after the failure', async () => {
  const first = await infer(2);
  expect(first.status).toBe(500);
  const answer = await infer(1);
  expect(answer.status).toBe(200);
  expect(answer.body.outputs).toEqual([{ name: 'total', datatype: 'FP32', shape: [1, 1], data: [6] }]);
});
