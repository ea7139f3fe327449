import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, credentials, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { ensureMlpModel, PROTO_PATH, type RunningServer, startServer } from '@batched-fn/server';
import { floatsOf, grpcClient, rawOf } from './grpc-client.js';
import { postJson, TEST_CACHE, writeIntModel } from './helpers.js';

// The gRPC face answers exactly what REST answers: every RPC, typed and raw tensors, and the same errors.
let repo = '';
let server: RunningServer;
let client: ReturnType<typeof grpcClient>;

const UPPER = `
export const inputs = [{ name: 'text', datatype: 'BYTES', shape: [-1] }];
export const outputs = [{ name: 'upper', datatype: 'BYTES', shape: [-1] }, { name: 'length', datatype: 'INT32', shape: [-1] }];
export function handler(requests) {
  return requests.map((r) => ({ upper: { data: r.inputs.text.data.map((t) => t.toUpperCase() + (r.parameters.suffix ?? '')) }, length: { data: r.inputs.text.data.map((t) => t.length) } }));
}
`;

beforeAll(async () => {
  repo = mkdtempSync(join(tmpdir(), 'bfn-grpc-'));
  const folder = (name: string, files: Record<string, string | { link: string }>) => {
    mkdirSync(join(repo, name));
    for (const [file, content] of Object.entries(files)) {
      if (typeof content === 'object') symlinkSync(content.link, join(repo, name, file));
      else writeFileSync(join(repo, name, file), content);
    }
  };
  folder('mlp', { 'model.onnx': { link: ensureMlpModel(undefined, TEST_CACHE) } });
  folder('ints', { 'model.onnx': { link: writeIntModel() } });
  folder('upper', { 'model.mjs': UPPER });
  folder('broken', { 'model.onnx': 'not a model' });
  server = await startServer({
    modelRepository: repo,
    modelControl: 'explicit',
    port: 0,
    grpcPort: 0,
    threads: 1,
    maxDelay: 2,
  });
  client = grpcClient(server.grpcUrl as string);
});
afterAll(async () => {
  client.close();
  await server.close();
  rmSync(repo, { recursive: true, force: true });
});

const rest = async (path: string, init?: RequestInit): Promise<any> =>
  (await fetch(`${server.url}${path}`, init)).json();
const data = Array.from({ length: 256 }, (_, i) => Math.fround(Math.sin(i)));

test('the server listens on the port it reports, on the same host as REST', () => {
  expect(server.grpcUrl).toMatch(/^grpc:\/\/127\.0\.0\.1:\d+$/);
});

test('health and metadata RPCs answer what the REST routes answer', async () => {
  expect(await client.call('ServerLive')).toEqual({ live: true });
  expect(await client.call('ServerReady')).toEqual({ ready: true });
  expect(await client.call('ServerMetadata')).toEqual(await rest('/v2'));
  expect(await client.call('ModelMetadata', { name: 'mlp' })).toEqual(await rest('/v2/models/mlp'));
  expect(await client.call('ModelMetadata', { name: 'upper', version: '1' })).toEqual(await rest('/v2/models/upper'));
  expect(await client.call('ModelReady', { name: 'mlp' })).toEqual({ ready: true });
  expect(await client.call('ModelReady', { name: 'broken' })).toEqual({ ready: false });
});

test("ModelInfer, typed and raw: the same numbers as REST JSON and REST binary; answers always raw, as Triton's", async () => {
  const json = await postJson(
    `${server.url}/v2/models/mlp/infer`,
    JSON.stringify({ id: 'r1', inputs: [{ name: 'input', shape: [1, 256], datatype: 'FP32', data }] }),
  );
  const typed = await client.call('ModelInfer', {
    model_name: 'mlp',
    id: 'r1',
    inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 256], contents: { fp32_contents: data } }],
  });
  expect(typed.model_name).toBe('mlp');
  expect(typed.model_version).toBe('1');
  expect(typed.id).toBe('r1');
  expect(
    typed.outputs.map((o: any) => ({ name: o.name, datatype: o.datatype, shape: o.shape, contents: o.contents })),
  ).toEqual(
    json.body.outputs.map((o: any) => ({ name: o.name, datatype: o.datatype, shape: o.shape, contents: null })),
  );
  expect(typed.raw_output_contents.map((b: Buffer) => Array.from(floatsOf(b)))).toEqual(
    json.body.outputs.map((o: any) => o.data),
  );

  const raw = await client.call('ModelInfer', {
    model_name: 'mlp',
    inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 256] }],
    raw_input_contents: [rawOf(Float32Array.from(data))],
  });
  expect(raw.outputs).toEqual([
    { name: 'probabilities', datatype: 'FP32', shape: [1, 16], parameters: {}, contents: null },
  ]);
  expect(Array.from(floatsOf(raw.raw_output_contents[0]))).toEqual(json.body.outputs[0].data);
});

test('integer inputs: int64_contents and int_contents, and their raw forms', async () => {
  const body = {
    inputs: [
      { name: 'ids', shape: [2, 4], datatype: 'INT64', data: [1, 2, 3, 4, 5, 6, 7, 8] },
      { name: 'mask', shape: [2, 4], datatype: 'INT32', data: [1, 0, 1, 0, 1, 1, 1, 1] },
    ],
  };
  const json = await postJson(`${server.url}/v2/models/ints/infer`, JSON.stringify(body));
  expect(json.body.outputs[0].data).toEqual([1, 0, 3, 0, 5, 6, 7, 8]);
  const typed = await client.call('ModelInfer', {
    model_name: 'ints',
    inputs: [
      { name: 'ids', datatype: 'INT64', shape: [2, 4], contents: { int64_contents: body.inputs[0]?.data } },
      { name: 'mask', datatype: 'INT32', shape: [2, 4], contents: { int_contents: body.inputs[1]?.data } },
    ],
  });
  expect(Array.from(floatsOf(typed.raw_output_contents[0]))).toEqual(json.body.outputs[0].data);
  const raw = await client.call('ModelInfer', {
    model_name: 'ints',
    inputs: [
      { name: 'ids', datatype: 'INT64', shape: [2, 4] },
      { name: 'mask', datatype: 'INT32', shape: [2, 4] },
    ],
    raw_input_contents: [
      rawOf(BigInt64Array.from([1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n])),
      rawOf(Int32Array.from([1, 0, 1, 0, 1, 1, 1, 1])),
    ],
  });
  expect(Array.from(floatsOf(raw.raw_output_contents[0]))).toEqual(json.body.outputs[0].data);
});

test('BYTES: bytes_contents in and out, raw length-prefixed elements, and request parameters reach the model', async () => {
  const json = await postJson(
    `${server.url}/v2/models/upper/infer`,
    JSON.stringify({
      inputs: [{ name: 'text', shape: [2], datatype: 'BYTES', data: ['héllo', 'x'] }],
      parameters: { suffix: '?' },
    }),
  );
  const typed = await client.call('ModelInfer', {
    model_name: 'upper',
    parameters: { suffix: { string_param: '?' } },
    inputs: [
      {
        name: 'text',
        datatype: 'BYTES',
        shape: [2],
        contents: { bytes_contents: [Buffer.from('héllo'), Buffer.from('x')] },
      },
    ],
  });
  const element = (text: string) => {
    const bytes = Buffer.from(text);
    const length = Buffer.alloc(4);
    length.writeUInt32LE(bytes.length);
    return Buffer.concat([length, bytes]);
  };
  expect(typed.raw_output_contents[0]).toEqual(Buffer.concat(json.body.outputs[0].data.map(element)));
  expect(Array.from(new Int32Array(Uint8Array.from(typed.raw_output_contents[1]).buffer))).toEqual(
    json.body.outputs[1].data,
  );
  const raw = await client.call('ModelInfer', {
    model_name: 'upper',
    parameters: { suffix: { string_param: '?' } },
    inputs: [{ name: 'text', datatype: 'BYTES', shape: [2] }],
    raw_input_contents: [Buffer.concat([element('héllo'), element('x')])],
  });
  expect(raw.raw_output_contents[0]).toEqual(Buffer.concat([element('HÉLLO?'), element('X?')]));
  expect(
    await client.fails('ModelInfer', {
      model_name: 'upper',
      inputs: [{ name: 'text', datatype: 'BYTES', shape: [2], contents: { bytes_contents: [Buffer.from('one')] } }],
    }),
  ).toEqual({
    code: status.INVALID_ARGUMENT,
    details: 'Input `text` has 1 elements, but its shape needs 2',
  });
});

test('bad requests are INVALID_ARGUMENT with the very text REST sends', async () => {
  const cases: [object, object][] = [
    [
      { inputs: [{ name: 'input', shape: [1, 256], datatype: 'FP64', data }] },
      {
        model_name: 'mlp',
        inputs: [{ name: 'input', datatype: 'FP64', shape: [1, 256], contents: { fp64_contents: data } }],
      },
    ],
    [
      { inputs: [{ name: 'input', shape: [1, 256], datatype: 'FP32', data: data.slice(1) }] },
      {
        model_name: 'mlp',
        inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 256], contents: { fp32_contents: data.slice(1) } }],
      },
    ],
    [
      { inputs: [{ name: 'input', shape: [1, 255], datatype: 'FP32', data }] },
      {
        model_name: 'mlp',
        inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 255], contents: { fp32_contents: data } }],
      },
    ],
    [
      { inputs: [{ name: 'nope', shape: [1, 256], datatype: 'FP32', data }] },
      {
        model_name: 'mlp',
        inputs: [{ name: 'nope', datatype: 'FP32', shape: [1, 256], contents: { fp32_contents: data } }],
      },
    ],
    [
      { inputs: [{ name: 'input', shape: [1, 256], datatype: 'FP32', data }], outputs: [{ name: 'x' }] },
      {
        model_name: 'mlp',
        inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 256], contents: { fp32_contents: data } }],
        outputs: [{ name: 'x' }],
      },
    ],
    [
      { inputs: [{ name: 'input', shape: [1, 256], datatype: 'FP32', data }], parameters: { priority: 'high' } },
      {
        model_name: 'mlp',
        parameters: { priority: { string_param: 'high' } },
        inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 256], contents: { fp32_contents: data } }],
      },
    ],
  ];
  for (const [body, request] of cases) {
    const answer = await postJson(`${server.url}/v2/models/mlp/infer`, JSON.stringify(body));
    expect(answer.status).toBe(400);
    expect(await client.fails('ModelInfer', request)).toEqual({
      code: status.INVALID_ARGUMENT,
      details: answer.body.error,
    });
  }
  // Only gRPC can say these wrong.
  const raw = rawOf(Float32Array.from(data));
  const typed = { fp32_contents: data };
  expect(
    await client.fails('ModelInfer', {
      model_name: 'mlp',
      inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 256], contents: { int_contents: [1] } }],
    }),
  ).toEqual({
    code: status.INVALID_ARGUMENT,
    details: 'Input `input` is FP32: its elements go in `contents.fp32_contents`, not `int_contents`',
  });
  expect(
    await client.fails('ModelInfer', {
      model_name: 'mlp',
      inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 256], contents: typed }],
      raw_input_contents: [raw],
    }),
  ).toMatchObject({
    code: status.INVALID_ARGUMENT,
    details: 'Input `input` has `contents` as well as raw_input_contents: use one or the other',
  });
  expect(
    await client.fails('ModelInfer', {
      model_name: 'mlp',
      inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 256] }],
      raw_input_contents: [raw, raw],
    }),
  ).toMatchObject({
    code: status.INVALID_ARGUMENT,
    details: 'raw_input_contents has 2 entries for 1 inputs: give one per input, in order',
  });
  expect(
    await client.fails('ModelInfer', {
      model_name: 'mlp',
      inputs: [{ name: 'input', datatype: 'FP32', shape: [16777215, 256] }],
      raw_input_contents: [raw],
    }),
  ).toMatchObject({
    code: status.INVALID_ARGUMENT,
    details: 'Input `input` has 1024 bytes of binary data, but 4294967040 FP32 elements need 17179868160',
  });
  expect(
    await client.fails('ModelInfer', {
      model_name: 'mlp',
      inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 256] }],
      raw_input_contents: [raw],
    }),
  ).toMatchObject({ code: status.INVALID_ARGUMENT });
});

test("unknown models are INVALID_ARGUMENT and versions NOT_FOUND (Triton's codes and words); a model that is not READY is UNAVAILABLE with its reason", async () => {
  const request = { inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 256], contents: { fp32_contents: data } }] };
  const restUnknown = await postJson(`${server.url}/v2/models/nope/infer`, '{}');
  // Triton's words, then the models this server has.
  const names = ((await (await fetch(`${server.url}/v2/models`)).json()) as { models: { name: string }[] }).models
    .map((m) => m.name)
    .join(', ');
  expect(restUnknown.body.error).toBe(`Request for unknown model: 'nope' is not found (models here: ${names})`);
  expect(await client.fails('ModelInfer', { ...request, model_name: 'nope' })).toEqual({
    code: status.INVALID_ARGUMENT,
    details: restUnknown.body.error,
  });
  expect(await client.fails('ModelMetadata', { name: 'nope' })).toEqual({
    code: status.INVALID_ARGUMENT,
    details: restUnknown.body.error,
  });
  expect(await client.fails('ModelInfer', { ...request, model_name: 'mlp', model_version: '7' })).toEqual({
    code: status.NOT_FOUND,
    details: "Request for unknown model: 'mlp' version 7 is not found (it has 1)",
  });
  const restBroken = await postJson(`${server.url}/v2/models/broken/infer`, '{}');
  expect(restBroken.status).toBe(503);
  expect(await client.fails('ModelInfer', { ...request, model_name: 'broken' })).toEqual({
    code: status.UNAVAILABLE,
    details: restBroken.body.error,
  });
});

test('statistics and the repository: ModelStatistics, RepositoryIndex, RepositoryModelUnload and Load', async () => {
  expect(await client.call('RepositoryIndex', {})).toEqual({
    models: await rest('/v2/repository/index', { method: 'POST' }),
  });
  expect((await client.call('RepositoryIndex', { ready: true })).models.map((m: any) => m.name).sort()).toEqual([
    'ints',
    'mlp',
    'upper',
  ]);
  const stats = (await client.call('ModelStatistics', { name: 'mlp' })).model_stats[0];
  const restStats = (await rest('/v2/models/mlp/stats')).model_stats[0];
  expect(stats.inference_count).toBe(restStats.inference_count);
  expect(stats.execution_count).toBe(restStats.execution_count);
  expect(stats.inference_stats.success.count).toBe(restStats.inference_stats.success.count);
  expect((await client.call('ModelStatistics', {})).model_stats.map((m: any) => m.name).sort()).toEqual([
    'ints',
    'mlp',
    'upper',
  ]);
  expect(await client.fails('ModelStatistics', { name: 'nope' })).toMatchObject({ code: status.NOT_FOUND });

  await client.call('RepositoryModelUnload', { model_name: 'ints' });
  expect(await client.call('ModelReady', { name: 'ints' })).toEqual({ ready: false });
  await client.call('RepositoryModelLoad', { model_name: 'ints' });
  expect(await client.call('ModelReady', { name: 'ints' })).toEqual({ ready: true });
  expect(await client.fails('RepositoryModelLoad', { model_name: 'broken' })).toMatchObject({
    code: status.INVALID_ARGUMENT,
  });
  expect(await client.fails('RepositoryModelLoad', { model_name: '../etc' })).toMatchObject({
    code: status.INVALID_ARGUMENT,
  });
});

test('methods the service does not have are UNIMPLEMENTED, and the requests appear in /metrics under protocol="grpc"', async () => {
  const bare = new Client((server.grpcUrl as string).replace('grpc://', ''), credentials.createInsecure());
  const unimplemented = await new Promise<{ code?: number }>((resolve) =>
    bare.makeUnaryRequest(
      '/inference.GRPCInferenceService/NoSuchMethod',
      (x: Buffer) => x,
      (x: Buffer) => x,
      Buffer.alloc(0),
      (error: { code?: number } | null) => resolve(error ?? {}),
    ),
  );
  bare.close();
  expect(unimplemented.code).toBe(status.UNIMPLEMENTED);
  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  expect(metrics).toMatch(/batched_fn_requests_total\{model="mlp",protocol="grpc",status="200"\} [1-9]/);
  expect(metrics).toMatch(/batched_fn_requests_total\{model="mlp",protocol="grpc",status="400"\} [1-9]/);
  expect(metrics).toMatch(/batched_fn_requests_total\{model="\(unknown\)",protocol="grpc",status="400"\} 1/);
  expect(metrics).toMatch(/batched_fn_requests_total\{model="mlp",protocol="rest",status="200"\} [1-9]/);
});

test("the shipped .proto keeps the protocol's names and field numbers (what generated stubs of KServe and Triton rely on)", async () => {
  const protobuf = (await import('protobufjs')).default;
  const root = new protobuf.Root().loadSync(PROTO_PATH, { keepCase: true });
  const fields = (type: string) =>
    Object.fromEntries(Object.entries(root.lookupType(`inference.${type}`).fields).map(([name, f]) => [name, f.id]));
  expect(fields('ModelInferRequest')).toEqual({
    model_name: 1,
    model_version: 2,
    id: 3,
    parameters: 4,
    inputs: 5,
    outputs: 6,
    raw_input_contents: 7,
  });
  expect(fields('ModelInferRequest.InferInputTensor')).toEqual({
    name: 1,
    datatype: 2,
    shape: 3,
    parameters: 4,
    contents: 5,
  });
  expect(fields('ModelInferRequest.InferRequestedOutputTensor')).toEqual({ name: 1, parameters: 2 });
  expect(fields('ModelInferResponse')).toEqual({
    model_name: 1,
    model_version: 2,
    id: 3,
    parameters: 4,
    outputs: 5,
    raw_output_contents: 6,
  });
  expect(fields('InferTensorContents')).toEqual({
    bool_contents: 1,
    int_contents: 2,
    int64_contents: 3,
    uint_contents: 4,
    uint64_contents: 5,
    fp32_contents: 6,
    fp64_contents: 7,
    bytes_contents: 8,
  });
  expect(fields('InferParameter')).toEqual({
    bool_param: 1,
    int64_param: 2,
    string_param: 3,
    double_param: 4,
    uint64_param: 5,
  });
  expect(fields('ModelMetadataResponse')).toEqual({ name: 1, versions: 2, platform: 3, inputs: 4, outputs: 5 });
  expect(fields('ModelStatistics')).toEqual({
    name: 1,
    version: 2,
    last_inference: 3,
    inference_count: 4,
    execution_count: 5,
    inference_stats: 6,
    batch_stats: 7,
    memory_usage: 8,
    response_stats: 9,
  });
  expect(fields('RepositoryModelLoadRequest')).toEqual({ repository_name: 1, model_name: 2, parameters: 3 });
  const service = root.lookupService('inference.GRPCInferenceService');
  // Triton's full service (triton-grpc.test.ts checks the messages of its extensions).
  expect(Object.keys(service.methods).sort()).toEqual([
    'CudaSharedMemoryRegister',
    'CudaSharedMemoryStatus',
    'CudaSharedMemoryUnregister',
    'LogSettings',
    'ModelConfig',
    'ModelInfer',
    'ModelMetadata',
    'ModelReady',
    'ModelStatistics',
    'ModelStreamInfer',
    'RepositoryIndex',
    'RepositoryModelLoad',
    'RepositoryModelUnload',
    'ServerLive',
    'ServerMetadata',
    'ServerReady',
    'SystemSharedMemoryRegister',
    'SystemSharedMemoryStatus',
    'SystemSharedMemoryUnregister',
    'TraceSetting',
  ]);
});
