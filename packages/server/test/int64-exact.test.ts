import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { type RunningServer, startServer } from '@batched-fn/server';
import { credentials, loadPackageDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { PROTO_OPTIONS, PROTO_PATH } from '@batched-fn/server';
import { postJson } from './helpers.js';

// 64-bit integers past 2^53 were rounded on their way in (a JSON number is a double) and on their way out
// (BigInt → Number), and the model silently ran on the rounded values.
let repo = '';
let server: RunningServer | undefined;

beforeAll(async () => {
  repo = mkdtempSync(join(tmpdir(), 'bfn-int64-'));
  mkdirSync(join(repo, 'ids'));
  // Answers each id plus one, computed on BigInt, so a rounded input shows in the output.
  writeFileSync(
    join(repo, 'ids', 'model.mjs'),
    `export const inputs = [{ name: 'x', datatype: 'INT64', shape: [-1, -1] }];
export const outputs = [{ name: 'y', datatype: 'INT64', shape: [-1, -1] }];
export function handler(requests) {
  return requests.map((r) => ({ y: { shape: r.inputs.x.shape, data: BigInt64Array.from(r.inputs.x.data, (v) => v + 1n) } }));
}
`,
  );
  server = await startServer({ modelRepository: repo, port: 0, grpcPort: 0, maxDelay: 0 });
});

afterAll(async () => {
  await server?.close();
  rmSync(repo, { recursive: true, force: true });
});

const infer = () => `${server?.url}/v2/models/ids/infer`;

test('a JSON INT64 beyond 2^53 - 1 is a 400, not a silently rounded value', async () => {
  for (const text of ['9007199254740993', '4611686018427387905', '-9007199254740993']) {
    const body = `{"inputs":[{"name":"x","datatype":"INT64","shape":[1,1],"data":[${text}]}]}`;
    const response = await postJson(infer(), body);
    expect(response.status).toBe(400);
    expect(response.body.error).toMatch(
      /^Input `x` is INT64: element 0 \(-?\d+\) is beyond 2\^53 - 1, which a JSON number cannot carry exactly; send it as binary data$/,
    );
  }
  const edge = await postJson(
    infer(),
    `{"inputs":[{"name":"x","datatype":"INT64","shape":[1,2],"data":[9007199254740991,-9007199254740991]}]}`,
  );
  expect(edge.status).toBe(200);
});

test('INT64 values past 2^53 travel exactly in binary, and come back exactly in JSON text', async () => {
  const values = BigInt64Array.of(2n ** 53n + 1n, 2n ** 62n + 1n, -(2n ** 63n) + 5n);
  const header = Buffer.from(
    JSON.stringify({
      inputs: [{ name: 'x', datatype: 'INT64', shape: [1, 3], parameters: { binary_data_size: 24 } }],
      outputs: [{ name: 'y' }],
    }),
  );
  const response = await fetch(infer(), {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) },
    body: Buffer.concat([header, Buffer.from(values.buffer)]),
  });
  expect(response.status).toBe(200);
  const text = await response.text();
  // JSON.parse would round the numbers again: read the digits from the text itself.
  expect(text).toContain('"data":[9007199254740994,4611686018427387906,-9223372036854775802]');
  expect(JSON.parse(text).outputs[0]).toMatchObject({ name: 'y', datatype: 'INT64', shape: [1, 3] });
});

test('gRPC typed int64_contents past 2^53 reach the model exactly, and come back exactly', async () => {
  // A client that reads 64-bit integers as strings, as a careful user's would.
  const pkg = loadPackageDefinition(loadSync(PROTO_PATH, { ...PROTO_OPTIONS, longs: String })) as any;
  const client = new pkg.inference.GRPCInferenceService(
    ((server as RunningServer).grpcUrl as string).replace('grpc://', ''),
    credentials.createInsecure(),
  );
  try {
    const request = {
      model_name: 'ids',
      inputs: [
        {
          name: 'x',
          datatype: 'INT64',
          shape: [1, 2],
          contents: { int64_contents: ['9007199254740993', '4611686018427387905'] },
        },
      ],
    };
    const response: any = await new Promise((resolve, reject) =>
      client.ModelInfer(request, (error: Error | null, answer: unknown) => (error ? reject(error) : resolve(answer))),
    );
    const out = response.outputs[0];
    const values = out.contents?.int64_contents?.length
      ? out.contents.int64_contents
      : [...new BigInt64Array(Uint8Array.from(response.raw_output_contents[0]).buffer)].map(String);
    expect(values).toEqual(['9007199254740994', '4611686018427387906']);
  } finally {
    client.close();
  }
});
