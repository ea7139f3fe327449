import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { type RunningServer, startServer } from '@batched-fn/server';
import { grpcClient } from './grpc-client.js';
import { postJson } from './helpers.js';
import { tritonRepository } from './triton-helpers.js';

// Triton's classification extension: `classification: K` on a requested output answers BYTES
// "value:index[:label]" strings, the top K of each row, on REST and gRPC.
let server: RunningServer;
let client: ReturnType<typeof grpcClient>;

/** `scores`: PROB = X (FP32 [-1, 4]), labelled from a file; `counts`: N = X as INT32, labelled inline. */
const SCORES = `
export const inputs = [{ name: 'X', datatype: 'FP32', shape: [-1, 4] }];
export const outputs = [{ name: 'PROB', datatype: 'FP32', shape: [-1, 4] }, { name: 'N', datatype: 'INT32', shape: [-1, 4] }];
export function handler(requests) {
  return requests.map(({ inputs: { X } }) => ({ PROB: { data: X.data }, N: { data: Int32Array.from(X.data, Math.round) } }));
}
`;

beforeAll(async () => {
  const repo = tritonRepository({ scores: SCORES, mislabelled: SCORES });
  writeFileSync(join(repo, 'scores', 'labels.txt'), 'cat\ndog\nbird\nfish\n');
  writeFileSync(
    join(repo, 'scores', 'config.json'),
    JSON.stringify({ labels: { PROB: 'labels.txt', N: ['zero', 'one'] } }),
  );
  writeFileSync(join(repo, 'mislabelled', 'config.json'), JSON.stringify({ labels: { NOPE: ['a'] } }));
  server = await startServer({ modelRepository: repo, port: 0, grpcPort: 0 });
  client = grpcClient(server.grpcUrl as string);
});
afterAll(async () => {
  client.close();
  await server.close();
});

const X = [0.1, 0.7, 0.2, 0, 3, 1, 2, 5];
const body = (outputs: object[], data = X) =>
  JSON.stringify({ inputs: [{ name: 'X', shape: [data.length / 4, 4], datatype: 'FP32', data }], outputs });
const grpcRequest = (outputs: object[]) => ({
  model_name: 'scores',
  inputs: [{ name: 'X', datatype: 'FP32', shape: [2, 4], contents: { fp32_contents: X } }],
  outputs,
});
/** BYTES raw contents: 4-byte little-endian lengths, each followed by its bytes. */
const strings = (raw: Buffer): string[] => {
  const out: string[] = [];
  for (let at = 0; at < raw.length; ) {
    const length = raw.readUInt32LE(at);
    out.push(raw.subarray(at + 4, at + 4 + length).toString('utf8'));
    at += 4 + length;
  }
  return out;
};

test('REST: top 2 of each row as "value:index:label", values as C prints them, labels from the labels file', async () => {
  const response = await postJson(
    `${server.url}/v2/models/scores/infer`,
    body([{ name: 'PROB', parameters: { classification: 2 } }]),
  );
  expect(response.status).toBe(200);
  expect(response.body.outputs).toEqual([
    {
      name: 'PROB',
      datatype: 'BYTES',
      shape: [2, 2],
      data: ['0.700000:1:dog', '0.200000:2:bird', '5.000000:3:fish', '3.000000:0:cat'],
    },
  ]);
});

test("values print as C's %f does, exact ties to the even digit (Triton formats them with std::to_string)", async () => {
  const response = await postJson(
    `${server.url}/v2/models/scores/infer`,
    body([{ name: 'PROB', parameters: { classification: 4 } }], [0.0078125, 0.0234375, -1.5, 1e30]),
  );
  expect(response.body.outputs[0].data).toEqual([
    '1000000015047466219876688855040.000000:3:fish',
    '0.023438:1:dog',
    '0.007812:0:cat',
    '-1.500000:2:bird',
  ]);
});

test('gRPC: the same answer, from an int64_param, in raw_output_contents', async () => {
  const answer = await client.call(
    'ModelInfer',
    grpcRequest([{ name: 'PROB', parameters: { classification: { int64_param: 2 } } }]),
  );
  expect(answer.outputs).toEqual([expect.objectContaining({ name: 'PROB', datatype: 'BYTES', shape: [2, 2] })]);
  expect(strings(answer.raw_output_contents[0])).toEqual([
    '0.700000:1:dog',
    '0.200000:2:bird',
    '5.000000:3:fish',
    '3.000000:0:cat',
  ]);
});

test('integers are compared as integers and printed in decimal; inline labels name only the indices they have', async () => {
  const response = await postJson(
    `${server.url}/v2/models/scores/infer`,
    body([{ name: 'N', parameters: { classification: 3 } }]),
  );
  expect(response.body.outputs[0]).toEqual({
    name: 'N',
    datatype: 'BYTES',
    shape: [2, 3],
    data: ['1:1:one', '0:0:zero', '0:2', '5:3', '3:0:zero', '2:2'],
  });
});

test('K above the class count gives every class, as Triton does (shape [rows, classes]); 0 is the tensor itself', async () => {
  const response = await postJson(
    `${server.url}/v2/models/scores/infer`,
    body([
      { name: 'PROB', parameters: { classification: 10 } },
      { name: 'N', parameters: { classification: 0 } },
    ]),
  );
  expect(response.body.outputs[0]).toMatchObject({ name: 'PROB', datatype: 'BYTES', shape: [2, 4] });
  expect(response.body.outputs[0].data.slice(0, 4)).toEqual([
    '0.700000:1:dog',
    '0.200000:2:bird',
    '0.100000:0:cat',
    '0.000000:3:fish',
  ]);
  expect(response.body.outputs[1]).toEqual({
    name: 'N',
    datatype: 'INT32',
    shape: [2, 4],
    data: [0, 1, 0, 0, 3, 1, 2, 5],
  });
});

test("Triton's simple model: the sums classified, on both protocols", async () => {
  const a = Array.from({ length: 16 }, (_, i) => i);
  const rest = await postJson(
    `${server.url}/v2/models/simple/infer`,
    JSON.stringify({
      inputs: [
        { name: 'INPUT0', shape: [1, 16], datatype: 'INT32', data: a },
        { name: 'INPUT1', shape: [1, 16], datatype: 'INT32', data: a },
      ],
      outputs: [{ name: 'OUTPUT0', parameters: { classification: 3, binary_data: false } }],
    }),
  );
  expect(rest.body.outputs).toEqual([
    { name: 'OUTPUT0', datatype: 'BYTES', shape: [1, 3], data: ['30:15', '28:14', '26:13'] },
  ]);
  const grpc = await client.call('ModelInfer', {
    model_name: 'simple',
    inputs: [
      { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], contents: { int_contents: a } },
      { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], contents: { int_contents: a } },
    ],
    outputs: [{ name: 'OUTPUT1', parameters: { classification: { int64_param: 1 } } }, { name: 'OUTPUT0' }],
  });
  expect(strings(grpc.raw_output_contents[0])).toEqual(['0:0']);
  expect(grpc.outputs.map((o: { datatype: string }) => o.datatype)).toEqual(['BYTES', 'INT32']);
});

test('classification of a binary output goes back as binary BYTES', async () => {
  const response = await fetch(`${server.url}/v2/models/scores/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: body([{ name: 'PROB', parameters: { classification: 1, binary_data: true } }]),
  });
  const bytes = Buffer.from(await response.arrayBuffer());
  const headerLength = Number(response.headers.get('inference-header-content-length'));
  const header = JSON.parse(bytes.subarray(0, headerLength).toString('utf8'));
  expect(header.outputs).toEqual([
    {
      name: 'PROB',
      datatype: 'BYTES',
      shape: [2, 1],
      parameters: { binary_data_size: 2 * 4 + '0.700000:1:dog'.length + '5.000000:3:fish'.length },
    },
  ]);
  expect(strings(bytes.subarray(headerLength))).toEqual(['0.700000:1:dog', '5.000000:3:fish']);
});

test.each([
  [
    'a BYTES output',
    'simple_string',
    'OUTPUT0',
    2,
    "class result not available for output due to unsupported type 'BYTES'",
  ],
  [
    'a negative count',
    'scores',
    'PROB',
    -1,
    "Output `PROB`: invalid value for 'classification' parameter, expected an integer >= 0 (the number of classes), got -1",
  ],
  [
    'a string count',
    'scores',
    'PROB',
    'two',
    `Output \`PROB\`: invalid value for 'classification' parameter, expected an integer >= 0 (the number of classes), got "two"`,
  ],
])(
  '%s is a 400 (gRPC INVALID_ARGUMENT) before anything runs',
  async (_label, model, output, classification, message) => {
    const inputs =
      model === 'simple_string'
        ? [
            { name: 'INPUT0', shape: [1, 16], datatype: 'BYTES', data: Array(16).fill('1') },
            { name: 'INPUT1', shape: [1, 16], datatype: 'BYTES', data: Array(16).fill('1') },
          ]
        : [{ name: 'X', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }];
    const response = await postJson(
      `${server.url}/v2/models/${model}/infer`,
      JSON.stringify({ inputs, outputs: [{ name: output, parameters: { classification } }] }),
    );
    expect(response).toMatchObject({ status: 400, body: { error: message } });
    if (typeof classification === 'number' && classification > 0) {
      const grpcInputs = inputs.map((i) => ({
        name: i.name,
        datatype: i.datatype,
        shape: i.shape,
        contents:
          i.datatype === 'BYTES'
            ? { bytes_contents: (i.data as string[]).map((s) => Buffer.from(s)) }
            : { fp32_contents: i.data },
      }));
      expect(
        await client.fails('ModelInfer', {
          model_name: model,
          inputs: grpcInputs,
          outputs: [{ name: output, parameters: { classification: { int64_param: classification } } }],
        }),
      ).toEqual({ code: status.INVALID_ARGUMENT, details: message });
    }
  },
);

test('labels for an output the model does not have: the model is UNAVAILABLE with the reason', async () => {
  const index = await postJson(`${server.url}/v2/repository/index`, '{}');
  const entry = index.body.find((m: { name: string }) => m.name === 'mislabelled');
  expect(entry).toMatchObject({ state: 'UNAVAILABLE' });
  expect(entry.reason).toContain(
    '`labels` names output `NOPE`, which the model does not have (its outputs: `PROB`, `N`)',
  );
});

test('/v2 lists classification', async () => {
  expect(((await (await fetch(`${server.url}/v2`)).json()) as any).extensions).toContain('classification');
});
