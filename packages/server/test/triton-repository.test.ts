import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect, test } from 'vitest';
import { encodeModel, type RunningServer, startServer } from '@batched-fn/server';
import { grpcClient } from './grpc-client.js';
import { killRunning, run } from './cli-run.js';
import { postJson } from './helpers.js';
import { mappingRows } from '../dist/repository/triton-config.js';

// Triton's repository layout served as it is: config.pbtxt, version folders and version policies,
// every version on REST and gRPC, the config mapped onto our settings and checked against the
// model file, auto-complete without a config, and --model-control explicit with --load-model.

let repo = '';
const servers: RunningServer[] = [];

/** y = x · k, [batch, 2]; `batch` false gives the file a fixed first dimension of 1 (no batch dimension). */
function scaleModel(k: number, batch = true): Uint8Array {
  const first = batch ? 'batch' : 1;
  return encodeModel({
    name: 'scale',
    opset: 17,
    nodes: [{ opType: 'Mul', inputs: ['x', 'k'], outputs: ['y'], name: 'mul' }],
    initializers: [{ name: 'k', dims: [1], data: Float32Array.of(k) }],
    inputs: [{ name: 'x', shape: [first, 2] }],
    outputs: [{ name: 'y', shape: [first, 2] }],
  });
}

function write(path: string, content: string | Uint8Array): void {
  mkdirSync(join(repo, path, '..'), { recursive: true });
  writeFileSync(join(repo, path), content);
}

const SIMPLE = `# Two versions, both served.
name: "simple"
platform: "onnxruntime_onnx"
max_batch_size: 8
version_policy: { all { } }
input [
  {
    name: "x"
    data_type: TYPE_FP32
    dims: [ 2 ]
  }
]
output [ { name: "y", data_type: TYPE_FP32, dims: [ 2 ] } ]
dynamic_batching {
  max_queue_delay_microseconds: 2000
  preferred_batch_size: [ 4 ]
  default_queue_policy { max_queue_size: 7 default_timeout_microseconds: 5000000 }
}
instance_group [ { count: 1, kind: KIND_CPU } ]
parameters { key: "note" value: { string_value: "from \\"pbtxt\\"" } }
`;

const LATEST = `platform: "onnxruntime_onnx"
max_batch_size: 4
version_policy: { latest: { num_versions: 2 } }
input { name: "x" data_type: TYPE_FP32 dims: -1 }
output { name: "y" data_type: TYPE_FP32 dims: 2 }
instance_group { kind: KIND_AUTO count: 1 }
`;

const JS_MODEL = `
export const inputs = [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }];
export const outputs = [{ name: 'y', datatype: 'FP32', shape: [-1, 2] }];
export function context(config) { return { factor: Number(config.parameters?.factor ?? 1) }; }
export async function handler(requests, ctx) {
  // x[0] === 999: take 300 ms (a request's own timeout must not cut it: allow_timeout_override is off).
  if (requests.some((r) => r.inputs.x.data[0] === 999)) await new Promise((resolve) => setTimeout(resolve, 300));
  return requests.map((r) => ({ y: { data: Float32Array.from(r.inputs.x.data, (v) => v * ctx.factor) } }));
}
`;

const JS_CONFIG = `backend: "js"
max_batch_size: 4
input [ { name: "x" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 2 ] } ]
dynamic_batching { }
instance_group [ { kind: KIND_CPU, count: 1 } ]
parameters: { key: "factor", value: { string_value: "3" } }
`;

beforeAll(() => {
  repo = mkdtempSync(join(tmpdir(), 'bfn-triton-repo-'));
  write('simple/config.pbtxt', SIMPLE);
  write('simple/1/model.onnx', scaleModel(1));
  write('simple/2/model.onnx', scaleModel(2));
  // latest 2 of versions 1, 2, 3 (and folders Triton skips: a leading zero, a name).
  write('latest/config.pbtxt', LATEST);
  for (const v of [1, 2, 3]) write(`latest/${v}/model.onnx`, scaleModel(10 * v));
  write('latest/07/model.onnx', scaleModel(70));
  write('latest/notes/readme.txt', 'not a version');
  write('jsmodel/config.pbtxt', JS_CONFIG);
  write('jsmodel/1/model.mjs', JS_MODEL);
  // No config at all: completed from the file, as Triton's auto-complete does.
  write('auto/1/model.onnx', scaleModel(5));
  write('fixed/1/model.onnx', scaleModel(6, false));
  // Broken ones, each UNAVAILABLE with its reason.
  write('sequence/config.pbtxt', 'platform: "onnxruntime_onnx"\nmax_batch_size: 4\nsequence_batching { }\n');
  write('sequence/1/model.onnx', scaleModel(1));
  write('typo/config.pbtxt', 'platform: "onnxruntime_onnx"\nmax_batch_sise: 4\n');
  write('typo/1/model.onnx', scaleModel(1));
  write('unclosed/config.pbtxt', 'max_batch_size: 4\ninput [ { name: "x" data_type: TYPE_FP32 dims: [ 2 ] }\n');
  write('unclosed/1/model.onnx', scaleModel(1));
  write(
    'mismatch/config.pbtxt',
    'max_batch_size: 4\ninput { name: "x" data_type: TYPE_INT32 dims: [ 2 ] }\noutput { name: "y" data_type: TYPE_FP32 dims: [ 2 ] }\ninstance_group { kind: KIND_CPU count: 1 }\n',
  );
  write('mismatch/1/model.onnx', scaleModel(1));
  write('gpu/config.pbtxt', 'platform: "onnxruntime_onnx"\nmax_batch_size: 4\ninstance_group [ { kind: KIND_GPU } ]\n');
  write('gpu/1/model.onnx', scaleModel(1));
  write('plan/config.pbtxt', 'platform: "tensorrt_plan"\nmax_batch_size: 4\n');
  write('plan/1/model.plan', 'not here');
  // Ours, beside them: unchanged.
  write('ours/model.onnx', scaleModel(7));
  write('ours/config.json', JSON.stringify({ maxBatchSize: 16, threads: 1 }));
});
afterAll(() => rmSync(repo, { recursive: true, force: true }));
afterEach(async () => {
  killRunning();
  for (const server of servers.splice(0)) await server.close();
});

async function start(
  options: { modelControl?: 'none' | 'explicit'; loadModel?: string[]; grpcPort?: number } = {},
): Promise<RunningServer> {
  const server = await startServer({ modelRepository: repo, port: 0, threads: 1, dashboard: 'off', ...options });
  servers.push(server);
  return server;
}

type Row = { name: string; version?: string; state?: string; reason?: string };
const index = async (url: string): Promise<Row[]> =>
  (await (await fetch(`${url}/v2/repository/index`, { method: 'POST' })).json()) as Row[];
const get = async (url: string) => {
  const response = await fetch(url);
  return { status: response.status, body: (await response.json()) as any };
};
const infer = (url: string, data: number[], rows = 1, parameters?: object) =>
  postJson(
    url,
    JSON.stringify({
      inputs: [{ name: 'x', shape: [rows, 2], datatype: 'FP32', data }],
      ...(parameters === undefined ? {} : { parameters }),
    }),
  );
const reason = (name: string, rest: string): string => `${join(repo, name, 'config.pbtxt')}: ${rest}`;

test('a Triton repository serves as it is: each version the policy picks is READY in the index, the broken folders are UNAVAILABLE with the reason', async () => {
  const { url } = await start();
  const rows = await index(url);
  const of = (name: string) => rows.filter((row) => row.name === name);
  expect(of('simple')).toEqual([
    { name: 'simple', version: '1', state: 'READY', reason: '' },
    { name: 'simple', version: '2', state: 'READY', reason: '' },
  ]);
  expect(of('latest').map((row) => [row.version, row.state])).toEqual([
    ['2', 'READY'],
    ['3', 'READY'],
  ]);
  expect(of('jsmodel')).toEqual([{ name: 'jsmodel', version: '1', state: 'READY', reason: '' }]);
  expect(of('auto')).toEqual([{ name: 'auto', version: '1', state: 'READY', reason: '' }]);
  expect(of('ours')).toEqual([{ name: 'ours', version: '1', state: 'READY', reason: '' }]);
  // The reasons, exactly: the field not supported, the misspelt one, the syntax, the type against the file, GPU, the platform.
  expect(of('sequence')).toEqual([
    {
      name: 'sequence',
      version: '1',
      state: 'UNAVAILABLE',
      reason: reason('sequence', '`sequence_batching` is served for stateful JS models (model.mjs) only, for now'),
    },
  ]);
  expect(of('typo')[0]?.reason).toBe(
    reason('typo', 'line 2, column 1: unknown field `max_batch_sise` in ModelConfig (did you mean `max_batch_size`?)'),
  );
  expect(of('unclosed')[0]?.reason).toBe(
    reason('unclosed', 'line 3, column 1: expected `,` or `]` in a list, got the end of the file'),
  );
  expect(of('mismatch')[0]?.reason).toBe(
    `version 1: ${reason('mismatch', 'input `x` is TYPE_INT32 in config.pbtxt, but FP32 in the model')}`,
  );
  expect(of('gpu')[0]?.reason).toBe(
    reason(
      'gpu',
      'instance group 0 has kind KIND_GPU, but this server runs models on the CPU only: use KIND_CPU (or KIND_AUTO)',
    ),
  );
  expect(of('plan')[0]?.reason).toBe(
    reason(
      'plan',
      'platform "tensorrt_plan" is not served here: this server runs ONNX models (platform `onnxruntime_onnx`, backend `onnxruntime`) and JS models (backend `js`)',
    ),
  );
  // A model that is not READY answers 503 with its reason.
  const refused = await infer(`${url}/v2/models/sequence/infer`, [1, 2]);
  expect(refused.status).toBe(503);
  expect(refused.body.error).toContain(
    '`sequence_batching` is served for stateful JS models (model.mjs) only, for now',
  );
});

test('every version answers under /versions/{v} (infer, ready, metadata, config, stats); no version is the highest', async () => {
  const { url } = await start();
  expect((await infer(`${url}/v2/models/simple/infer`, [1, 2])).body.outputs[0].data).toEqual([2, 4]);
  expect((await infer(`${url}/v2/models/simple/versions/2/infer`, [1, 2])).body.outputs[0].data).toEqual([2, 4]);
  const v1 = await infer(`${url}/v2/models/simple/versions/1/infer`, [1, 2, 3, 4], 2);
  expect(v1.body).toMatchObject({ model_name: 'simple', model_version: '1', outputs: [{ data: [1, 2, 3, 4] }] });
  const missing = await infer(`${url}/v2/models/simple/versions/3/infer`, [1, 2]);
  expect(missing.status).toBe(404);
  expect(missing.body.error).toBe("Request for unknown model: 'simple' version 3 is not found (it has 1, 2)");
  // latest 2 of 1, 2, 3: version 1 is not served.
  expect((await infer(`${url}/v2/models/latest/infer`, [1, 2])).body.outputs[0].data).toEqual([30, 60]);
  expect((await infer(`${url}/v2/models/latest/versions/2/infer`, [1, 2])).body.outputs[0].data).toEqual([20, 40]);
  expect((await infer(`${url}/v2/models/latest/versions/1/infer`, [1, 2])).status).toBe(404);

  expect((await fetch(`${url}/v2/models/simple/versions/1/ready`)).status).toBe(200);
  expect((await fetch(`${url}/v2/models/simple/versions/3/ready`)).status).toBe(503);
  const metadata = await get(`${url}/v2/models/simple/versions/1`);
  expect(metadata.body).toEqual({
    name: 'simple',
    versions: ['1', '2'],
    platform: 'onnxruntime_onnx',
    inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }],
    outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 2] }],
  });
  expect((await get(`${url}/v2/models/simple`)).body.versions).toEqual(['1', '2']);

  // The config, per version: config.pbtxt's settings as the model is served with them.
  const config = (await get(`${url}/v2/models/simple/versions/1/config`)).body;
  expect(config).toMatchObject({
    name: 'simple',
    platform: 'onnxruntime_onnx',
    version_policy: { all: {} },
    max_batch_size: 8,
    input: [{ name: 'x', data_type: 'TYPE_FP32', dims: [2] }],
    output: [{ name: 'y', data_type: 'TYPE_FP32', dims: [2] }],
    dynamic_batching: {
      preferred_batch_size: [4],
      max_queue_delay_microseconds: 2000,
      default_queue_policy: {
        max_queue_size: 7,
        default_timeout_microseconds: 5_000_000,
        allow_timeout_override: false,
      },
    },
    instance_group: [{ kind: 'KIND_CPU', count: 1 }],
    parameters: { note: { string_value: 'from "pbtxt"' } },
  });
  // No dynamic_batching in latest's config: none shown, and no delay to form batches.
  const latest = (await get(`${url}/v2/models/latest/config`)).body;
  expect(latest).toMatchObject({
    version_policy: { latest: { num_versions: 2 } },
    max_batch_size: 4,
    parameters: { max_delay: { string_value: '0' } },
  });
  expect(latest.dynamic_batching).toBeUndefined();

  // Statistics per version: version 1 ran 2 rows, version 2 one row twice.
  const stats = (await get(`${url}/v2/models/simple/stats`)).body.model_stats;
  expect(stats.map((s: any) => [s.version, s.inference_count, s.execution_count])).toEqual([
    ['1', 2, 1],
    ['2', 2, 2],
  ]);
  const one = (await get(`${url}/v2/models/simple/versions/1/stats`)).body.model_stats;
  expect(one.map((s: any) => [s.version, s.inference_count, s.inference_stats.success.count])).toEqual([['1', 2, 1]]);
  expect((await get(`${url}/v2/models/simple/versions/3/stats`)).status).toBe(404);
});

test('versions over gRPC: ModelInfer, ModelReady, ModelMetadata, ModelConfig and ModelStatistics take model_version; the index lists each version', async () => {
  const server = await start({ grpcPort: 0 });
  const client = grpcClient(server.grpcUrl as string);
  try {
    const request = (version: string) => ({
      model_name: 'simple',
      model_version: version,
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], contents: { fp32_contents: [1, 2] } }],
    });
    const v1 = await client.call('ModelInfer', request('1'));
    expect(v1.model_version).toBe('1');
    expect([...new Float32Array(Uint8Array.from(v1.raw_output_contents[0]).buffer)]).toEqual([1, 2]);
    const latest = await client.call('ModelInfer', request(''));
    expect(latest.model_version).toBe('2');
    expect([...new Float32Array(Uint8Array.from(latest.raw_output_contents[0]).buffer)]).toEqual([2, 4]);
    expect(await client.fails('ModelInfer', request('5'))).toMatchObject({
      code: 5,
      details: "Request for unknown model: 'simple' version 5 is not found (it has 1, 2)",
    });
    expect(await client.call('ModelReady', { name: 'simple', version: '1' })).toEqual({ ready: true });
    expect(await client.call('ModelReady', { name: 'simple', version: '5' })).toEqual({ ready: false });
    expect((await client.call('ModelMetadata', { name: 'simple', version: '1' })).versions).toEqual(['1', '2']);
    expect((await client.call('ModelConfig', { name: 'simple', version: '1' })).config.version_policy).toMatchObject({
      all: {},
    });
    const stats = await client.call('ModelStatistics', { name: 'simple', version: '1' });
    expect(stats.model_stats.map((s: any) => [s.version, Number(s.inference_count)])).toEqual([['1', 1]]);
    const models = (await client.call('RepositoryIndex', {})).models.filter((m: any) => m.name === 'simple');
    expect(models).toEqual([
      { name: 'simple', version: '1', state: 'READY', reason: '' },
      { name: 'simple', version: '2', state: 'READY', reason: '' },
    ]);
  } finally {
    client.close();
  }
});

test('a JS model in a version folder: config.pbtxt parameters reach its context(), and without allow_timeout_override a request timeout is ignored', async () => {
  const { url } = await start();
  expect((await infer(`${url}/v2/models/jsmodel/infer`, [1, 2])).body.outputs[0].data).toEqual([3, 6]);
  // 300 ms of work under a 50 ms request timeout (in µs): Triton ignores it without allow_timeout_override.
  const started = performance.now();
  const slow = await infer(`${url}/v2/models/jsmodel/infer`, [999, 1], 1, { timeout: 50_000 });
  expect(slow.status).toBe(200);
  expect(performance.now() - started).toBeGreaterThanOrEqual(250);
  expect((await get(`${url}/v2/models/jsmodel/config`)).body).toMatchObject({
    backend: 'js',
    max_batch_size: 4,
    dynamic_batching: { max_queue_delay_microseconds: 0, default_queue_policy: { allow_timeout_override: false } },
    parameters: { factor: { string_value: '3' } },
  });
});

test('without config.pbtxt the config is completed from the ONNX file, as Triton does: max_batch_size 4 if it can batch, else 0', async () => {
  const { url } = await start();
  const config = (await get(`${url}/v2/models/auto/config`)).body;
  expect(config).toMatchObject({
    name: 'auto',
    platform: 'onnxruntime_onnx',
    backend: 'onnxruntime',
    version_policy: { latest: { num_versions: 1 } },
    max_batch_size: 4,
    input: [{ name: 'x', data_type: 'TYPE_FP32', dims: [2] }],
    output: [{ name: 'y', data_type: 'TYPE_FP32', dims: [2] }],
    dynamic_batching: { max_queue_delay_microseconds: 0 },
    instance_group: [{ kind: 'KIND_CPU', count: 2 }],
  });
  expect((await infer(`${url}/v2/models/auto/infer`, [1, 2, 3, 4], 2)).body.outputs[0].data).toEqual([5, 10, 15, 20]);
  const tooMany = await infer(`${url}/v2/models/auto/infer`, Array(10).fill(1), 5);
  expect(tooMany.status).toBe(413);
  expect(tooMany.body.error).toMatch(/\b4\b/);
  // A fixed first dimension cannot batch: max_batch_size 0, its dims whole.
  const fixed = (await get(`${url}/v2/models/fixed/config`)).body;
  expect(fixed).toMatchObject({ max_batch_size: 0, input: [{ name: 'x', dims: [1, 2] }] });
});

test('unload and load act on the model, all its versions', async () => {
  const { url } = await start({ modelControl: 'explicit' });
  expect((await fetch(`${url}/v2/repository/models/simple/unload`, { method: 'POST' })).status).toBe(200);
  expect((await index(url)).filter((row) => row.name === 'simple')).toEqual([
    { name: 'simple', version: '1', state: 'UNAVAILABLE', reason: 'unloaded' },
    { name: 'simple', version: '2', state: 'UNAVAILABLE', reason: 'unloaded' },
  ]);
  expect((await infer(`${url}/v2/models/simple/versions/1/infer`, [1, 2])).status).toBe(503);
  expect((await fetch(`${url}/v2/repository/models/simple/load`, { method: 'POST' })).status).toBe(200);
  expect((await infer(`${url}/v2/models/simple/versions/1/infer`, [1, 2])).body.outputs[0].data).toEqual([1, 2]);
  expect((await infer(`${url}/v2/models/simple/infer`, [1, 2])).body.outputs[0].data).toEqual([2, 4]);
});

test('--model-control explicit with --load-model loads only the models named; the others are listed by name, and load on demand', async () => {
  const { url } = await start({ modelControl: 'explicit', loadModel: ['simple'] });
  const rows = await index(url);
  expect(rows.filter((row) => row.state !== undefined).map((row) => `${row.name}:${row.version}:${row.state}`)).toEqual(
    ['simple:1:READY', 'simple:2:READY'],
  );
  expect(rows.find((row) => row.name === 'auto')).toEqual({ name: 'auto' });
  expect((await infer(`${url}/v2/models/auto/infer`, [1, 2])).status).toBe(400);
  expect((await fetch(`${url}/v2/repository/models/auto/load`, { method: 'POST' })).status).toBe(200);
  expect((await infer(`${url}/v2/models/auto/infer`, [1, 2])).body.outputs[0].data).toEqual([5, 10]);
  // A ready-only index lists loaded versions only.
  const ready = (await (
    await fetch(`${url}/v2/repository/index`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ready: true }),
    })
  ).json()) as Row[];
  expect(ready.map((row) => row.name)).toEqual(['auto', 'simple', 'simple']);
});

test('--load-model names a folder the repository has, and needs --model-control explicit', async () => {
  await expect(start({ modelControl: 'explicit', loadModel: ['nope'] })).rejects.toThrow(
    `--load-model names \`nope\`, which is not a model folder of ${repo}`,
  );
  await expect(start({ loadModel: ['simple'] })).rejects.toThrow('--load-model needs --model-control explicit');
});

test('the CLI: --model-control explicit starts with no model loaded, as Triton; --load-model loads the named one', async () => {
  const bare = run([
    'serve',
    '--model-repository',
    repo,
    '--model-control',
    'explicit',
    '--port',
    '0',
    '--no-grpc',
    '--threads',
    '1',
    '--dashboard',
    'off',
  ]);
  const url = await bare.url;
  expect((await index(url)).every((row) => row.state === undefined)).toBe(true);
  expect((await infer(`${url}/v2/models/simple/infer`, [1, 2])).status).toBe(400);
  killRunning();
  const named = run([
    'serve',
    '--model-repository',
    repo,
    '--model-control',
    'explicit',
    '--load-model',
    'auto',
    '--port',
    '0',
    '--no-grpc',
    '--threads',
    '1',
    '--dashboard',
    'off',
  ]);
  const second = await named.url;
  expect((await index(second)).filter((row) => row.state !== undefined)).toEqual([
    { name: 'auto', version: '1', state: 'READY', reason: '' },
  ]);
  expect((await infer(`${second}/v2/models/auto/infer`, [1, 2])).body.outputs[0].data).toEqual([5, 10]);
});

test("docs/server.md's table of config.pbtxt fields is the mapping's, row for row", () => {
  const lines = readFileSync(new URL('../../../docs/server.md', import.meta.url), 'utf8').split('\n');
  const start = lines.indexOf('| Field | Here |');
  expect(start).toBeGreaterThan(-1);
  const rows: string[] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(line);
  }
  expect(rows).toEqual(mappingRows());
});

test("config.pbtxt's `intra_op_thread_count` parameter (Triton's onnxruntime backend) sets an ONNX model's intra-op threads", async () => {
  const { loadTritonModel } = await import('../dist/repository/triton-repository.js');
  const folder = mkdtempSync(join(tmpdir(), 'bfn-intra-'));
  try {
    mkdirSync(join(folder, '1'));
    writeFileSync(join(folder, '1', 'model.onnx'), scaleModel(2));
    const load = (value: string) => {
      writeFileSync(
        join(folder, 'config.pbtxt'),
        `max_batch_size: 4\nparameters { key: "intra_op_thread_count" value: { string_value: "${value}" } }\n`,
      );
      return loadTritonModel({
        folder,
        name: 'scale',
        defaults: { threads: 2 },
        triton: { given: {} },
        onBatch: () => {},
      });
    };
    const one = await load('1');
    expect(one.config?.threads).toBe(1);
    await one.batcher.close();
    const zero = await load('0');
    expect(zero.config?.threads).toBe(2);
    await zero.batcher.close();
    await expect(load('two')).rejects.toThrow(
      /parameters `intra_op_thread_count` must be an integer from 0 \(the server's default\) to 256, got "two"/,
    );
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
});
