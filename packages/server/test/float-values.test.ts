import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { type RunningServer, startServer } from '@batched-fn/server';
import { grpcClient, rawOf } from './grpc-client.js';
import { postJson } from './helpers.js';

// One rule for NaN and the infinities: a floating-point tensor carries every IEEE 754 value wherever the encoding
// can express it (gRPC typed contents, raw bytes). JSON cannot, and reads an overflow (1e400) as Infinity: a 400.
// Before, a typed NaN was refused as "(null) overflows FP32" while a raw NaN passed.
let repo = '';
let server: RunningServer | undefined;

beforeAll(async () => {
  repo = mkdtempSync(join(tmpdir(), 'bfn-floats-'));
  mkdirSync(join(repo, 'same'));
  writeFileSync(
    join(repo, 'same', 'model.mjs'),
    `export const inputs = [{ name: 'x', datatype: 'FP32', shape: [-1, 3] }];
export const outputs = [{ name: 'y', datatype: 'FP32', shape: [-1, 3] }];
export function handler(requests) { return requests.map((r) => ({ y: { data: Float32Array.from(r.inputs.x.data) } })); }
`,
  );
  server = await startServer({ modelRepository: repo, port: 0, grpcPort: 0, maxDelay: 0 });
});

afterAll(async () => {
  await server?.close();
  rmSync(repo, { recursive: true, force: true });
});

const special = Float32Array.of(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY);

test('gRPC typed fp32_contents carry NaN and the infinities, as raw contents do', async () => {
  const client = grpcClient(server?.grpcUrl as string);
  try {
    const input = { name: 'x', datatype: 'FP32', shape: [1, 3], contents: { fp32_contents: [...special] } };
    const typed = await client.call('ModelInfer', { model_name: 'same', inputs: [input] });
    // Typed answers today; raw ones once every answer is raw, as Triton's are.
    const out = typed.outputs[0];
    const values = out.contents?.fp32_contents?.length
      ? out.contents.fp32_contents
      : [...new Float32Array(Uint8Array.from(typed.raw_output_contents[0]).buffer)];
    expect(values).toEqual([Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]);
    const raw = await client.call('ModelInfer', {
      model_name: 'same',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3] }],
      raw_input_contents: [rawOf(special)],
    });
    expect([...new Float32Array(Uint8Array.from(raw.raw_output_contents[0]).buffer)]).toEqual([
      Number.NaN,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
    ]);
  } finally {
    client.close();
  }
});

test('JSON has no NaN or Infinity: an overflowing number is a 400 that names the value', async () => {
  const response = await postJson(
    `${server?.url}/v2/models/same/infer`,
    '{"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[1,2,-1e400]}]}',
  );
  expect(response).toMatchObject({ status: 400, body: { error: 'Input `x`: element 2 (-Infinity) overflows FP32' } });
});
