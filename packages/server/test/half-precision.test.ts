import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect, test } from 'vitest';
import {
  encodeModel,
  fromBFloat16Bits,
  fromFloat16Bits,
  ONNX_BFLOAT16,
  ONNX_FLOAT,
  ONNX_FLOAT16,
  type RunningServer,
  startServer,
  toBFloat16Bits,
  toFloat16Bits,
} from '@batched-fn/server';
import { grpcClient, rawOf } from './grpc-client.js';
import { jsonRequest, postJson } from './helpers.js';

// FP16 and BF16 wherever ONNX Runtime and the protocol carry them: REST JSON (numbers, rounded to
// nearest even) and binary, gRPC raw, ONNX models (float16; onnxruntime-node cannot pass bfloat16),
// JS models (Uint16Array bit patterns).
let repo = '';
let server: RunningServer | undefined;

/** y = x · 2 computed in float32 between two Casts: x and y are `elemType`. */
function doubler(elemType: number): Uint8Array {
  return encodeModel({
    name: 'half',
    opset: 17,
    nodes: [
      { opType: 'Cast', inputs: ['x'], outputs: ['xf'], name: 'up', attributes: { to: ONNX_FLOAT } },
      { opType: 'Mul', inputs: ['xf', 'two'], outputs: ['yf'], name: 'mul' },
      { opType: 'Cast', inputs: ['yf'], outputs: ['y'], name: 'down', attributes: { to: elemType } },
    ],
    initializers: [{ name: 'two', dims: [], data: Float32Array.of(2) }],
    inputs: [{ name: 'x', elemType, shape: ['batch', 4] }],
    outputs: [{ name: 'y', elemType, shape: ['batch', 4] }],
  });
}

// A JS model: `h` (FP16) and `b` (BF16) come in as Uint16Array bit patterns; it answers them doubled
// as bit patterns (exponent + 1, for the normal numbers used here), and `n` as plain numbers the server rounds.
const JS_MODEL = `
export const inputs = [{ name: 'h', datatype: 'FP16', shape: [-1, 3] }, { name: 'b', datatype: 'BF16', shape: [-1, 3] }];
export const outputs = [
  { name: 'h2', datatype: 'FP16', shape: [-1, 3] },
  { name: 'b2', datatype: 'BF16', shape: [-1, 3] },
  { name: 'n', datatype: 'FP16', shape: [-1, 3] },
  { name: 'kinds', datatype: 'BYTES', shape: [-1, 2] },
];
export function handler(requests) {
  return requests.map((r) => {
    const rows = r.inputs.h.shape[0];
    return {
      h2: { data: r.inputs.h.data.map((bits) => bits + (1 << 10)) },
      b2: { data: r.inputs.b.data.map((bits) => bits + (1 << 7)) },
      n: { data: Array.from({ length: rows * 3 }, (_, i) => [0.1, 1 / 3, 65519][i % 3]) },
      kinds: { data: Array.from({ length: rows }, () => [r.inputs.h.data.constructor.name, r.inputs.b.data.constructor.name]).flat() },
    };
  });
}
`;

function folder(name: string, files: Record<string, string | Uint8Array>): void {
  mkdirSync(join(repo, name), { recursive: true });
  for (const [file, content] of Object.entries(files)) writeFileSync(join(repo, name, file), content);
}

beforeAll(() => {
  repo = mkdtempSync(join(tmpdir(), 'bfn-half-'));
  folder('half', {
    'model.onnx': doubler(ONNX_FLOAT16),
    'config.json': JSON.stringify({ maxBatchSize: 8, maxDelay: 20 }),
  });
  folder('bfonnx', { 'model.onnx': doubler(ONNX_BFLOAT16) });
  folder('jshalf', { 'model.mjs': JS_MODEL });
});
afterAll(() => rmSync(repo, { recursive: true, force: true }));
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function start(): Promise<RunningServer> {
  server = await startServer({ modelRepository: repo, port: 0, grpcPort: 0, threads: 1, maxDelay: 5, workers: 1 });
  return server;
}

/** A binary-extension request: one input as raw bytes, every output asked back as binary. */
async function postBinary(
  url: string,
  inputs: { name: string; datatype: string; shape: number[]; bits: Uint16Array }[],
): Promise<{ status: number; json: any; outputs: Record<string, Buffer> }> {
  const header = Buffer.from(
    JSON.stringify({
      inputs: inputs.map(({ name, datatype, shape, bits }) => ({
        name,
        datatype,
        shape,
        parameters: { binary_data_size: bits.byteLength },
      })),
      parameters: { binary_data_output: true },
    }),
  );
  const body = Buffer.concat([header, ...inputs.map(({ bits }) => rawOf(bits))]);
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'inference-header-content-length': String(header.length) },
    body,
  });
  const bytes = Buffer.from(await response.arrayBuffer());
  if (response.status !== 200) return { status: response.status, json: JSON.parse(bytes.toString()), outputs: {} };
  const length = Number(response.headers.get('inference-header-content-length'));
  const json = JSON.parse(bytes.subarray(0, length).toString());
  const outputs: Record<string, Buffer> = {};
  let offset = length;
  for (const output of json.outputs) {
    outputs[output.name] = bytes.subarray(offset, offset + output.parameters.binary_data_size);
    offset += output.parameters.binary_data_size;
  }
  return { status: response.status, json, outputs };
}

const bitsOf = (buffer: Buffer): number[] => Array.from(new Uint16Array(Uint8Array.from(buffer).buffer));
const half = (values: number[]): Uint16Array => Uint16Array.from(values, toFloat16Bits);
const bf = (values: number[]): Uint16Array => Uint16Array.from(values, toBFloat16Bits);

test('an FP16 ONNX model over REST JSON: numbers in, rounded to the nearest FP16, and numbers out; several at once share batches', async () => {
  const { url } = await start();
  const meta = (await (await fetch(`${url}/v2/models/half`)).json()) as any;
  expect(meta.inputs).toEqual([{ name: 'x', datatype: 'FP16', shape: [-1, 4] }]);
  const config = (await (await fetch(`${url}/v2/models/half/config`)).json()) as any;
  expect([config.input[0].data_type, config.output[0].data_type]).toEqual(['TYPE_FP16', 'TYPE_FP16']);
  // 0.1 is 0.0999755859375 in FP16; 65519 rounds down to 65504 (65520 would round to infinity); 1 + 2^-11 is a tie, to even (1).
  const answers = await Promise.all(
    [0, 1, 2, 3].map((k) =>
      postJson(`${url}/v2/models/half/infer`, jsonRequest('x', [1, 4], 'FP16', [0.1, 1 + 2 ** -11, -2.5 - k, 30000])),
    ),
  );
  for (const [k, answer] of answers.entries()) {
    expect(answer.status).toBe(200);
    expect(answer.body.outputs[0]).toEqual({
      name: 'y',
      datatype: 'FP16',
      shape: [1, 4],
      data: [0.199951171875, 2, -5 - 2 * k, 60000],
    });
  }
  const top = await postJson(
    `${url}/v2/models/half/infer`,
    jsonRequest('x', [1, 4], 'FP16', [65519, 2 ** -24, 2 ** -26, -0]),
  );
  // 65504 · 2 overflows FP16 in the model's Cast: an infinity, which JSON writes as null (as for FP32).
  expect(top.body.outputs[0].data).toEqual([null, 2 ** -23, 0, 0]);
});

test('an FP16 number past the datatype is a 400, as an FP32 overflow is; so is a non-number', async () => {
  const { url } = await start();
  const over = await postJson(`${url}/v2/models/half/infer`, jsonRequest('x', [1, 4], 'FP16', [1, 2, 65520, 4]));
  expect(over.status).toBe(400);
  expect(over.body.error).toBe('Input `x`: element 2 (65520) overflows FP16');
  const huge = await postJson(
    `${url}/v2/models/half/infer`,
    `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP16","data":[1,2,3,1e400]}]}`,
  );
  expect(huge.body.error).toBe('Input `x`: element 3 (Infinity) overflows FP16');
  const text = await postJson(`${url}/v2/models/half/infer`, jsonRequest('x', [1, 4], 'FP16', [1, 2, 3, '4']));
  expect(text.body.error).toBe('Input `x`: element 3 is "4", not a number');
});

test('FP16 over the binary extension and gRPC raw: bit patterns in and out, NaN and infinities included', async () => {
  const { url, grpcUrl } = await start();
  const x = Uint16Array.of(toFloat16Bits(1.5), 0x7c00 /* +Inf */, 0x7e00 /* NaN */, toFloat16Bits(-0.25));
  const binary = await postBinary(`${url}/v2/models/half/infer`, [
    { name: 'x', datatype: 'FP16', shape: [1, 4], bits: x },
  ]);
  expect(binary.status).toBe(200);
  expect(binary.json.outputs[0]).toMatchObject({ name: 'y', datatype: 'FP16', shape: [1, 4] });
  const y = bitsOf(binary.outputs.y as Buffer);
  expect([
    fromFloat16Bits(y[0] as number),
    y[1],
    Number.isNaN(fromFloat16Bits(y[2] as number)),
    fromFloat16Bits(y[3] as number),
  ]).toEqual([3, 0x7c00, true, -0.5]);
  // One element short: counted in bytes against the shape, 2 bytes an element.
  const short = await postBinary(`${url}/v2/models/half/infer`, [
    { name: 'x', datatype: 'FP16', shape: [1, 4], bits: x.subarray(0, 3) },
  ]);
  expect(short.json.error).toBe('Input `x` has 6 bytes of binary data, but 4 FP16 elements need 8');

  const client = grpcClient(grpcUrl as string);
  try {
    const answer = await client.call('ModelInfer', {
      model_name: 'half',
      inputs: [{ name: 'x', datatype: 'FP16', shape: [2, 4] }],
      raw_input_contents: [rawOf(half([1, 2, 3, 4, 0.5, 0.25, 100, 1000]))],
    });
    expect(answer.outputs[0]).toMatchObject({ name: 'y', datatype: 'FP16' });
    expect(bitsOf(answer.raw_output_contents[0]).map(fromFloat16Bits)).toEqual([2, 4, 6, 8, 1, 0.5, 200, 2000]);
    // InferTensorContents has no FP16 field: typed contents are refused, as Triton refuses them.
    const typed = await client.fails('ModelInfer', {
      model_name: 'half',
      inputs: [{ name: 'x', datatype: 'FP16', shape: [1, 4], contents: { fp32_contents: [1, 2, 3, 4] } }],
    });
    expect(typed).toEqual({
      code: 3,
      details:
        'Input `x` is FP16: InferTensorContents has no field for FP16; send its elements in raw_input_contents (little-endian 16-bit patterns)',
    });
  } finally {
    client.close();
  }
});

test('a JS model gets FP16 and BF16 as Uint16Array bit patterns and answers them as bit patterns or numbers, over JSON, binary and gRPC', async () => {
  const { url, grpcUrl } = await start();
  const meta = (await (await fetch(`${url}/v2/models/jshalf`)).json()) as any;
  expect(meta.inputs.map((i: any) => i.datatype)).toEqual(['FP16', 'BF16']);
  const json = await postJson(
    `${url}/v2/models/jshalf/infer`,
    JSON.stringify({
      inputs: [
        { name: 'h', shape: [1, 3], datatype: 'FP16', data: [1, 0.1, -3] },
        { name: 'b', shape: [1, 3], datatype: 'BF16', data: [1, 0.1, 1e38] },
      ],
    }),
  );
  expect(json.status).toBe(200);
  const out = Object.fromEntries(json.body.outputs.map((o: any) => [o.name, o]));
  expect(out.h2).toEqual({
    name: 'h2',
    datatype: 'FP16',
    shape: [1, 3],
    data: [2, fromFloat16Bits(toFloat16Bits(0.1)) * 2, -6],
  });
  // bfloat16 keeps float32's range with 8 bits of precision: 0.1 is 0.10009765625, 1e38 is 9.9991...e37.
  expect(out.b2.data).toEqual([2, 0.2001953125, fromBFloat16Bits(toBFloat16Bits(1e38)) * 2]);
  expect(out.n.data).toEqual([0.0999755859375, 0.333251953125, 65504]);
  expect(out.kinds.data).toEqual(['Uint16Array', 'Uint16Array']);
  const bfOver = await postJson(
    `${url}/v2/models/jshalf/infer`,
    JSON.stringify({
      inputs: [
        { name: 'h', shape: [1, 3], datatype: 'FP16', data: [1, 1, 1] },
        { name: 'b', shape: [1, 3], datatype: 'BF16', data: [1, 1, 3.4e38] },
      ],
    }),
  );
  expect(bfOver.body.error).toBe('Input `b`: element 2 (3.4e+38) overflows BF16');

  const binary = await postBinary(`${url}/v2/models/jshalf/infer`, [
    { name: 'h', datatype: 'FP16', shape: [2, 3], bits: half([1, 2, 3, 4, 5, 6]) },
    { name: 'b', datatype: 'BF16', shape: [2, 3], bits: bf([0.5, 1.5, -2, 1e10, 1e-10, 7]) },
  ]);
  expect(binary.status).toBe(200);
  expect(bitsOf(binary.outputs.h2 as Buffer).map(fromFloat16Bits)).toEqual([2, 4, 6, 8, 10, 12]);
  expect(bitsOf(binary.outputs.b2 as Buffer)).toEqual(
    Array.from(bf([0.5, 1.5, -2, 1e10, 1e-10, 7]), (bits) => bits + (1 << 7)),
  );

  const client = grpcClient(grpcUrl as string);
  try {
    const answer = await client.call('ModelInfer', {
      model_name: 'jshalf',
      inputs: [
        { name: 'h', datatype: 'FP16', shape: [1, 3] },
        { name: 'b', datatype: 'BF16', shape: [1, 3] },
      ],
      raw_input_contents: [rawOf(half([0.5, 8, 16])), rawOf(bf([1, 2, 4]))],
    });
    const byName = Object.fromEntries(
      answer.outputs.map((o: any, i: number) => [o.name, answer.raw_output_contents[i] as Buffer]),
    );
    expect(answer.outputs.map((o: any) => o.datatype)).toEqual(['FP16', 'BF16', 'FP16', 'BYTES']);
    expect(bitsOf(byName.h2 as Buffer).map(fromFloat16Bits)).toEqual([1, 16, 32]);
    expect(bitsOf(byName.b2 as Buffer).map(fromBFloat16Bits)).toEqual([2, 4, 8]);
  } finally {
    client.close();
  }
});

test('an ONNX model with BF16 inputs or outputs is UNAVAILABLE with the reason: onnxruntime-node cannot pass bfloat16 tensors', async () => {
  const { url } = await start();
  const entry = ((await (await fetch(`${url}/v2/repository/index`, { method: 'POST' })).json()) as any[]).find(
    (m) => m.name === 'bfonnx',
  );
  expect(entry.state).toBe('UNAVAILABLE');
  expect(entry.reason).toBe(
    `${join(repo, 'bfonnx', 'model.onnx')}: tensor \`x\` is BF16, which onnxruntime-node cannot pass into or out of a session; serve it as FP16 or FP32 (a Cast in the graph), or from a JS model`,
  );
});

test('FP16 and BF16 conversions round to nearest, ties to even, straight from the double', () => {
  expect(toFloat16Bits(65504)).toBe(0x7bff);
  expect(toFloat16Bits(65519.99)).toBe(0x7bff);
  expect(toFloat16Bits(65520)).toBe(0x7c00);
  expect(toFloat16Bits(2 ** -24)).toBe(1); // the smallest subnormal
  expect(toFloat16Bits(2 ** -25)).toBe(0); // a tie between 0 and it: to even
  expect(toFloat16Bits(3 * 2 ** -25)).toBe(2); // a tie between 1 and 2 ulps: to even
  expect(toFloat16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie: to even (1)
  expect(toFloat16Bits(1 + 2 ** -11 + 2 ** -40)).toBe(0x3c01); // a hair above the tie: up (float32 would have rounded it onto the tie)
  expect(toFloat16Bits(-0)).toBe(0x8000);
  expect(toBFloat16Bits(1 + 2 ** -8)).toBe(0x3f80); // tie: to even
  expect(toBFloat16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82); // tie: to even (up)
  expect(toBFloat16Bits(3.3895313892515355e38)).toBe(0x7f7f); // the largest finite bfloat16
  for (let bits = 0; bits < 0x10000; bits += 7) {
    const h = fromFloat16Bits(bits);
    if (!Number.isNaN(h)) expect(toFloat16Bits(h)).toBe(bits);
    const b = fromBFloat16Bits(bits);
    if (!Number.isNaN(b)) expect(toBFloat16Bits(b)).toBe(bits);
  }
});
