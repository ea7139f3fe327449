import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect, test } from 'vitest';
import { encodeModel, type RunningServer, startServer } from '@batched-fn/server';
import { floatsOf, grpcClient, rawOf } from './grpc-client.js';
import { writeOverrideFolder } from '../dist/repository/load-override.js';
import { jsonRequest, postJson } from './helpers.js';

// Triton's load overrides (its model repository extension, tritonclient's load_model(config=..., files=...)):
// a `config` parameter loads with that config; `file:<version>/<name>` parameters are the model's files,
// written into a fresh folder the server owns (removed once the instance is gone), never the user's.
let repo = '';
let server: RunningServer | undefined;

/** y = x · k, [batch, 2]: its answers say which weights served them. */
function scaleModel(k: number): Uint8Array {
  return encodeModel({
    name: 'scale',
    opset: 17,
    nodes: [{ opType: 'Mul', inputs: ['x', 'k'], outputs: ['y'], name: 'mul' }],
    initializers: [{ name: 'k', dims: [1], data: Float32Array.of(k) }],
    inputs: [{ name: 'x', shape: ['batch', 2] }],
    outputs: [{ name: 'y', shape: ['batch', 2] }],
  });
}

function folder(path: string, files: Record<string, string | Uint8Array>): void {
  for (const [file, content] of Object.entries(files)) {
    mkdirSync(join(repo, path, file, '..'), { recursive: true });
    writeFileSync(join(repo, path, file), content);
  }
}

/** Every file under `dir`, with its bytes, to show a folder was left as it was. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile())
      out[join(entry.parentPath, entry.name)] = readFileSync(join(entry.parentPath, entry.name)).toString('base64');
  }
  return out;
}

/** The load override folders in the temporary directory now. */
const overrideFolders = (): string[] =>
  readdirSync(tmpdir())
    .filter((name) => name.startsWith('batched-fn-load-'))
    .map((name) => join(tmpdir(), name));

beforeAll(() => {
  repo = mkdtempSync(join(tmpdir(), 'bfn-overrides-'));
  // Ours: model.onnx at the top, config.json.
  folder('scale', { 'model.onnx': scaleModel(1), 'config.json': JSON.stringify({ maxBatchSize: 4 }) });
  // Triton's: config.pbtxt and a version folder.
  folder('tscale', { 'config.pbtxt': 'max_batch_size: 8\ndynamic_batching { }\n', '1/model.onnx': scaleModel(2) });
});
afterAll(() => rmSync(repo, { recursive: true, force: true }));
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function start(options: { bodyLimit?: number } = {}): Promise<RunningServer> {
  server = await startServer({
    modelRepository: repo,
    modelControl: 'explicit',
    loadModel: '*',
    port: 0,
    grpcPort: 0,
    threads: 1,
    maxDelay: 2,
    workers: 1,
    ...options,
  });
  return server;
}

const load = async (
  url: string,
  name: string,
  parameters?: Record<string, unknown>,
): Promise<{ status: number; error?: string }> => {
  const response = await fetch(`${url}/v2/repository/models/${name}/load`, {
    method: 'POST',
    ...(parameters === undefined
      ? {}
      : { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ parameters }) }),
  });
  return { status: response.status, ...((await response.json()) as { error?: string }) };
};
const infer = async (url: string, name: string, rows = 1) =>
  postJson(
    `${url}/v2/models/${name}/infer`,
    jsonRequest(
      'x',
      [rows, 2],
      'FP32',
      Array.from({ length: rows * 2 }, (_, i) => i + 1),
    ),
  );
const config = async (url: string, name: string) =>
  (await (await fetch(`${url}/v2/models/${name}/config`)).json()) as any;
const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64');

test('load with a config override: the model is served with that config (GET config and its behaviour), and its folder is left as it was', async () => {
  const { url } = await start();
  const before = snapshot(repo);
  expect((await config(url, 'tscale')).max_batch_size).toBe(8);
  expect((await infer(url, 'tscale', 3)).status).toBe(200);
  // A Triton folder, with Triton's JSON config instead of its config.pbtxt.
  expect(
    await load(url, 'tscale', {
      config: JSON.stringify({ backend: 'onnxruntime', maxBatchSize: 2, dynamic_batching: {} }),
    }),
  ).toEqual({ status: 200 });
  expect((await config(url, 'tscale')).max_batch_size).toBe(2);
  expect((await infer(url, 'tscale', 2)).body.outputs[0].data).toEqual([2, 4, 6, 8]);
  expect((await infer(url, 'tscale', 3)).status).toBe(413);
  // A folder of ours (model.onnx, config.json) seen as Triton's: its model file is version 1. With
  // its tensors declared, max_batch_size 0 is a model without a batch dimension (protobuf's JSON:
  // enums in any case, 64-bit dims as numbers or strings, camelCase or proto names).
  const declared = {
    max_batch_size: 0,
    input: [{ name: 'x', data_type: 'type_fp32', dims: ['-1', '2'] }],
    output: [{ name: 'y', dataType: 'TYPE_FP32', dims: [-1, 2] }],
    parameters: { note: { string_value: 'overridden' } },
  };
  expect(await load(url, 'scale', { config: JSON.stringify(declared) })).toEqual({ status: 200 });
  const scale = await config(url, 'scale');
  expect([scale.max_batch_size, scale.input[0].dims, scale.parameters.note]).toEqual([
    0,
    [-1, 2],
    { string_value: 'overridden' },
  ]);
  expect((await infer(url, 'scale', 6)).body.outputs[0].data).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  expect(snapshot(repo)).toEqual(before);
  // A plain load reads the folder again (its own config).
  expect(await load(url, 'scale')).toEqual({ status: 200 });
  expect((await config(url, 'scale')).max_batch_size).toBe(4);
});

test('load with file: contents: a fresh folder the server owns, never the repository; removed after unload', async () => {
  const { url } = await start();
  const before = snapshot(repo);
  const foldersBefore = overrideFolders();
  // A name the repository does not have: the files are the model (as Triton creates it).
  const loaded = await load(url, 'fresh', {
    config: JSON.stringify({ backend: 'onnxruntime', max_batch_size: 4 }),
    'file:1/model.onnx': b64(scaleModel(3)),
  });
  expect(loaded).toEqual({ status: 200 });
  expect((await infer(url, 'fresh')).body.outputs[0].data).toEqual([3, 6]);
  const owned = overrideFolders().filter((f) => !foldersBefore.includes(f));
  expect(owned).toHaveLength(1);
  expect(readFileSync(join(owned[0] as string, '1', 'model.onnx'))).toEqual(Buffer.from(scaleModel(3)));
  expect(existsSync(join(repo, 'fresh'))).toBe(false);

  // Over a model of the repository: its folder is not used (nor touched), the files are.
  expect(
    await load(url, 'tscale', {
      config: '{"backend":"onnxruntime","max_batch_size":8,"dynamic_batching":{}}',
      'file:3/model.onnx': b64(scaleModel(5)),
    }),
  ).toEqual({ status: 200 });
  expect((await infer(url, 'tscale')).body.outputs[0]).toMatchObject({ data: [5, 10] });
  expect(((await (await fetch(`${url}/v2/models/tscale`)).json()) as { versions: string[] }).versions).toEqual(['3']);
  expect(snapshot(repo)).toEqual(before);
  expect(overrideFolders().filter((f) => !foldersBefore.includes(f))).toHaveLength(2);

  // Unloaded: its folder is removed. Reloaded plainly: the repository's folder serves again, and the override's folder goes.
  expect((await fetch(`${url}/v2/repository/models/fresh/unload`, { method: 'POST' })).status).toBe(200);
  expect(existsSync(owned[0] as string)).toBe(false);
  expect(await load(url, 'tscale')).toEqual({ status: 200 });
  expect((await infer(url, 'tscale')).body.outputs[0].data).toEqual([2, 4]);
  expect(overrideFolders().filter((f) => !foldersBefore.includes(f))).toEqual([]);
});

test('over gRPC: config as string_param, files as bytes_param; shutdown removes the folder', async () => {
  const { grpcUrl, url } = await start();
  const foldersBefore = overrideFolders();
  const client = grpcClient(grpcUrl as string);
  try {
    await client.call('RepositoryModelLoad', {
      model_name: 'viagrpc',
      parameters: {
        config: { string_param: '{"backend":"onnxruntime","max_batch_size":2}' },
        'file:7/model.onnx': { bytes_param: Buffer.from(scaleModel(7)) },
      },
    });
    const answer = await client.call('ModelInfer', {
      model_name: 'viagrpc',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2] }],
      raw_input_contents: [rawOf(Float32Array.of(1, 2))],
    });
    expect([answer.model_version, Array.from(floatsOf(answer.raw_output_contents[0]))]).toEqual(['7', [7, 14]]);
    const grpcConfig = await client.call('ModelConfig', { name: 'viagrpc' });
    expect(Number(grpcConfig.config.max_batch_size)).toBe(2);
    expect(
      await client.fails('RepositoryModelLoad', {
        model_name: 'scale',
        parameters: { config: { bytes_param: Buffer.from('{}') } },
      }),
    ).toEqual({ code: 3, details: "invalid value type for load parameter 'config', expected string_param." });
    expect(
      await client.fails('RepositoryModelLoad', {
        model_name: 'scale',
        parameters: { 'file:1/model.onnx': { string_param: 'x' } },
      }),
    ).toEqual({ code: 3, details: "invalid value type for load parameter 'file:1/model.onnx', expected bytes_param." });
  } finally {
    client.close();
  }
  expect((await infer(url, 'scale')).body.outputs[0].data).toEqual([1, 2]);
  const owned = overrideFolders().filter((f) => !foldersBefore.includes(f));
  expect(owned).toHaveLength(1);
  await server?.close();
  server = undefined;
  expect(existsSync(owned[0] as string)).toBe(false);
});

test("a bad override is a 400 with the reason, in Triton's words, and the instance already loaded answers on", async () => {
  const { url } = await start();
  const foldersBefore = overrideFolders();
  const good = JSON.stringify({ backend: 'onnxruntime', max_batch_size: 4 });
  const cases: [Record<string, unknown>, string][] = [
    [
      { 'file:1/model.onnx': b64(scaleModel(9)) },
      "failed to load 'scale', Load parameter 'config' must be specified for model file override",
    ],
    [{ config: '{"max_batch_size": 2,' }, "failed to load 'scale', Invalid config override: not valid JSON: "],
    [
      { config: '{"max_batch": 2}' },
      "failed to load 'scale', Invalid config override: `max_batch` is not a field of ModelConfig",
    ],
    [
      { config: '{"max_batch_size": "two"}' },
      'failed to load \'scale\', Invalid config override: `max_batch_size` must be an integer, got "two"',
    ],
    [
      { config: '{"max_batch_size": 2, "maxBatchSize": 3}' },
      "failed to load 'scale', Invalid config override: `max_batch_size` is given twice (as `max_batch_size` and `maxBatchSize`)",
    ],
    [
      { config: '{"dynamic_batching": {}, "sequence_batching": {}}' },
      "failed to load 'scale', Invalid config override: `sequence_batching` and `dynamic_batching` are both given, but only one of scheduling_choice may be",
    ],
    [
      { config: '{"input": [{"name": "x", "data_type": "TYPE_FP33"}]}' },
      'failed to load \'scale\', Invalid config override: `input[0].data_type` cannot be "TYPE_FP33"; it is one of TYPE_INVALID',
    ],
    [
      { config: '{"max_batch_size": -1}' },
      "failed to load 'scale', the config of `scale`: 'max_batch_size' must be non-negative value for scale",
    ],
    [
      { config: '{"instance_group": [{"kind": "KIND_GPU", "count": 1}]}' },
      "failed to load 'scale', the config of `scale`: instance group 0 has kind KIND_GPU, but this server runs models on the CPU only",
    ],
    [{ config: good, 'file:1/model.onnx': b64(Buffer.from('not a model')) }, "failed to load 'scale', version 1: "],
    [
      { config: good, 'file:../../etc/x': 'eA==' },
      "failed to load 'scale', Invalid file parameter 'file:../../etc/x': a file is `file:<version>/<name>`",
    ],
    [
      { config: good, 'file:/etc/passwd': 'eA==' },
      "failed to load 'scale', Invalid file parameter 'file:/etc/passwd': a file is `file:<version>/<name>`",
    ],
    [
      { config: good, 'file:1/..': 'eA==' },
      "failed to load 'scale', Invalid file parameter 'file:1/..': the file name must be a plain name",
    ],
    [
      { config: good, 'file:01/model.onnx': 'eA==' },
      "failed to load 'scale', Invalid file parameter 'file:01/model.onnx': the version must be a positive decimal number",
    ],
    [
      { config: good, 'file:v1/model.onnx': 'eA==' },
      "failed to load 'scale', Invalid file parameter 'file:v1/model.onnx': the version must be a positive decimal number",
    ],
    [
      { config: good, 'file:1\\model.onnx': 'eA==' },
      "failed to load 'scale', Invalid file parameter 'file:1\\model.onnx': the file name must be a plain name",
    ],
    [
      { config: good, 'file:config.pbtxt': 'eA==' },
      "failed to load 'scale', Invalid file parameter 'file:config.pbtxt': the model's config is the `config` parameter, not a file",
    ],
    [{ config: good, 'file:1/model.onnx': 'not base64!' }, "'file:1/model.onnx' is not valid base64"],
    [
      { config: good, 'file:1/model.onnx': 42 },
      "invalid value type for load parameter 'file:1/model.onnx', expected a string (the file's contents in base64)",
    ],
    [{ config: good, repository: 'x' }, "unrecognized load parameter 'repository'."],
  ];
  for (const [parameters, error] of cases) {
    const answer = await load(url, 'scale', parameters);
    expect(answer.status, error).toBe(400);
    expect(answer.error?.startsWith(error), `${answer.error} / ${error}`).toBe(true);
    expect((await infer(url, 'scale')).body.outputs[0].data).toEqual([1, 2]);
  }
  // Nothing left behind by the loads that failed after their folder was written.
  expect(overrideFolders().filter((f) => !foldersBefore.includes(f))).toEqual([]);
  expect((await config(url, 'scale')).max_batch_size).toBe(4);
});

test('the body limit applies to a load with files (413 on REST, RESOURCE_EXHAUSTED on gRPC), before anything is written', async () => {
  const { url, grpcUrl } = await start({ bodyLimit: 64 * 1024 });
  const foldersBefore = overrideFolders();
  const big = new Uint8Array(64 * 1024);
  const rest = await load(url, 'big', { config: '{"backend":"onnxruntime"}', 'file:1/model.onnx': b64(big) });
  expect(rest.status).toBe(413);
  const client = grpcClient(grpcUrl as string);
  try {
    const failed = await client.fails('RepositoryModelLoad', {
      model_name: 'big',
      parameters: { config: { string_param: '{}' }, 'file:1/model.onnx': { bytes_param: Buffer.from(big) } },
    });
    expect(failed.code).toBe(8);
  } finally {
    client.close();
  }
  expect(overrideFolders().filter((f) => !foldersBefore.includes(f))).toEqual([]);
  expect(
    ((await (await fetch(`${url}/v2/repository/index`, { method: 'POST' })).json()) as { name: string }[]).map(
      (m) => m.name,
    ),
  ).not.toContain('big');
});

// Written on the main thread, the 60,000 one-byte files a 64 MiB body can carry (within
// --max-objects) stalled every other request for 3.4 s; written in batches that yield, 0.18 s.
// Here the longest the event loop goes without a turn while 10,000 are written: synchronously it is
// the whole write (0.6 s on a quiet 2-core machine, seconds on a busy one), here a few ms.
test("a load's files are written without holding the event loop", async () => {
  const files = Array.from({ length: 10_000 }, (_, i) => ({ path: `1/f${i}`, bytes: Uint8Array.of(120) }));
  let last = performance.now();
  let worst = 0;
  let running = true;
  const spin = (): void => {
    if (!running) return;
    const now = performance.now();
    worst = Math.max(worst, now - last);
    last = now;
    setImmediate(spin);
  };
  setImmediate(spin);
  const folder = await writeOverrideFolder(files);
  // The gap up to now counts too: a write that never yielded ends here, before the next turn.
  worst = Math.max(worst, performance.now() - last);
  running = false;
  try {
    expect(readdirSync(join(folder, '1'))).toHaveLength(10_000);
    expect(worst).toBeLessThan(250);
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
}, 60_000);
