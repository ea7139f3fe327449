import { afterAll, beforeAll, expect, test } from 'vitest';
import { type RunningServer, startServer } from '@batched-fn/server';
import { postJson, writeIntModel } from './helpers.js';

let server: RunningServer;
beforeAll(async () => {
  server = await startServer({ port: 0, model: writeIntModel(), name: 'ints' });
});
afterAll(async () => server?.close());

const body = (ids: unknown, mask: unknown, idsType = 'INT64', maskType = 'INT32') =>
  JSON.stringify({
    inputs: [
      { name: 'ids', shape: [2, 4], datatype: idsType, data: ids },
      { name: 'mask', shape: [2, 4], datatype: maskType, data: mask },
    ],
  });

test('INT64 and INT32 inputs are validated against the model and computed correctly', async () => {
  const metadata = (await (await fetch(`${server.url}/v2/models/ints`)).json()) as { inputs: unknown };
  expect(metadata.inputs).toEqual([
    { name: 'ids', datatype: 'INT64', shape: [-1, 4] },
    { name: 'mask', datatype: 'INT32', shape: [-1, 4] },
  ]);
  const response = await postJson(
    `${server.url}/v2/models/ints/infer`,
    body([1, 2, 3, 4, 5, 6, 7, 8], [1, 0, 1, 0, 1, 1, 0, 0]),
  );
  expect(response.status).toBe(200);
  expect(response.body.outputs).toEqual([
    { name: 'out', datatype: 'FP32', shape: [2, 4], data: [1, 0, 3, 0, 5, 6, 0, 0] },
  ]);
});

test('integer inputs reject fractions, and each input keeps its own datatype', async () => {
  const fraction = await postJson(
    `${server.url}/v2/models/ints/infer`,
    body([1.5, 2, 3, 4, 5, 6, 7, 8], [1, 1, 1, 1, 1, 1, 1, 1]),
  );
  expect(fraction).toMatchObject({
    status: 400,
    body: { error: 'Input `ids` is INT64: element 0 (1.5) is not an integer' },
  });
  const swapped = await postJson(
    `${server.url}/v2/models/ints/infer`,
    body([1, 2, 3, 4, 5, 6, 7, 8], [1, 1, 1, 1, 1, 1, 1, 1], 'INT32', 'INT32'),
  );
  expect(swapped).toMatchObject({ status: 400, body: { error: 'Input `ids` must have datatype INT64, got "INT32"' } });
});

test('every model input is required, and all inputs must have the same rows', async () => {
  const missing = await postJson(
    `${server.url}/v2/models/ints/infer`,
    JSON.stringify({ inputs: [{ name: 'ids', shape: [1, 4], datatype: 'INT64', data: [1, 2, 3, 4] }] }),
  );
  expect(missing).toMatchObject({ status: 400, body: { error: 'Missing input `mask`' } });
  const mismatched = await postJson(
    `${server.url}/v2/models/ints/infer`,
    JSON.stringify({
      inputs: [
        { name: 'ids', shape: [1, 4], datatype: 'INT64', data: [1, 2, 3, 4] },
        { name: 'mask', shape: [2, 4], datatype: 'INT32', data: [1, 1, 1, 1, 1, 1, 1, 1] },
      ],
    }),
  );
  expect(mismatched.status).toBe(400);
  expect(mismatched.body.error).toMatch(/^All inputs must have the same first dimension/);
});
