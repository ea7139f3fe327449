import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { type RunningServer, startServer } from '@batched-fn/server';
import { postJson } from './helpers.js';

// A served model's worker hands back without a copy only the buffers it `move()`d (model/infer-codec.ts
// transfers those alone). A typed array a JS model answered may be one it keeps using: it is copied.
let repo = '';
let server: RunningServer | undefined;

const model = (handler: string): string => `
export const inputs = [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }];
export const outputs = [{ name: 'y', datatype: 'FP32', shape: [-1, 2] }];
${handler}
`;

beforeAll(async () => {
  repo = mkdtempSync(join(tmpdir(), 'bfn-worker-buffers-'));
  const folder = (name: string, source: string): void => {
    mkdirSync(join(repo, name));
    writeFileSync(join(repo, name, 'model.mjs'), source);
    writeFileSync(join(repo, name, 'config.json'), JSON.stringify({ maxBatchSize: 8, maxDelay: 20 }));
  };
  // The same module-level array for every request.
  folder(
    'constant',
    model(`const BIAS = Float32Array.of(7, 8);
export function handler(requests) { return requests.map(() => ({ y: { shape: [1, 2], data: BIAS } })); }`),
  );
  // One scratch buffer reused by every batch, each request's answer a view of its part (adjacent views).
  folder(
    'scratch',
    model(`const scratch = new Float32Array(64);
export function handler(requests) {
  let at = 0;
  return requests.map((r) => {
    const x = r.inputs.x.data;
    for (let i = 0; i < x.length; i++) scratch[at + i] = x[i] * 10;
    at += x.length;
    return { y: { data: scratch.subarray(at - x.length, at) } };
  });
}`),
  );
  // Small Buffers come out of Node's pool, whose ArrayBuffer Node 21 and later refuse to transfer (DataCloneError).
  folder(
    'pooled',
    `export const inputs = [{ name: 'x', datatype: 'UINT8', shape: [-1, 2] }];
export const outputs = [{ name: 'y', datatype: 'UINT8', shape: [-1, 2] }];
export function handler(requests) { return requests.map((r) => ({ y: { data: Buffer.from([r.inputs.x.data[0], 9]) } })); }`,
  );
  server = await startServer({ modelRepository: repo, port: 0, grpcPort: 0, threads: 1, workers: 1 });
});
afterAll(async () => {
  await server?.close();
  rmSync(repo, { recursive: true, force: true });
});

const infer = (name: string, values: number[], datatype = 'FP32') =>
  postJson(
    `${server?.url}/v2/models/${name}/infer`,
    JSON.stringify({ inputs: [{ name: 'x', datatype, shape: [values.length / 2, 2], data: values }] }),
  ).then((r) => (r.status === 200 ? r.body.outputs[0].data : `${r.status} ${r.body.error}`));

test('a JS model answering an array it keeps (a constant) answers it every time: the worker copies it, never moves it', async () => {
  for (let i = 0; i < 3; i++) expect(await infer('constant', [1, 2])).toEqual([7, 8]);
});

test('a JS model answering views of a scratch buffer it reuses keeps it across batches', async () => {
  for (let round = 0; round < 3; round++) {
    const answers = await Promise.all([1, 2, 3].map((v) => infer('scratch', [v + round, v])));
    expect(answers).toEqual([1, 2, 3].map((v) => [(v + round) * 10, v * 10]));
  }
});

test("a JS model answering Buffers from Node's pool is answered, alone or batched (the pool is never transferred)", async () => {
  expect(await infer('pooled', [1, 2], 'UINT8')).toEqual([1, 9]);
  expect(await Promise.all([3, 4, 5].map((v) => infer('pooled', [v, 0], 'UINT8')))).toEqual([
    [3, 9],
    [4, 9],
    [5, 9],
  ]);
});

// The other way: a request's small tensors are decoded into views of Node's Buffer pool
// (protocol/tensor-data.ts), which the main thread must never hand over. Moved, a batch of one would
// cross as a view of its buffer, transferred: the pool itself. Node 21 and later refuse that (every
// request here failed with a DataCloneError when served-batcher.ts moved them all); Node 20 copies.
test("a small request's tensor, a view into Node's Buffer pool, crosses by copy: the main thread's pool stays usable", async () => {
  const before = Buffer.from([1, 2, 3, 4]);
  for (let i = 0; i < 3; i++) expect(await infer('scratch', [i, 1])).toEqual([i * 10, 10]);
  expect([...before]).toEqual([1, 2, 3, 4]);
  expect(() => Buffer.from([5, 6])).not.toThrow();
  expect(await Promise.all([1, 2].map((v) => infer('scratch', [v, v])))).toEqual([
    [10, 10],
    [20, 20],
  ]);
});
