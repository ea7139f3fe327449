import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect, test } from 'vitest';
import { encodeModel, ensureMlpModel, type RunningServer, startServer } from '@batched-fn/server';
import { jsonRequest, ocrClassifierPath, postJson, TEST_CACHE, writeIntModel } from './helpers.js';

// A model repository: several models per server, each with its own batcher and config.json,
// a broken one UNAVAILABLE with its reason, and load/unload while serving.
let repo = '';
let server: RunningServer | undefined;

/** out = x · k: a one-initializer model whose answers say which weights served them. */
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

function folder(name: string, files: Record<string, string | Uint8Array | { link: string }>): void {
  const dir = join(repo, name);
  mkdirSync(dir, { recursive: true });
  for (const [file, content] of Object.entries(files)) {
    if (typeof content === 'object' && 'link' in content) symlinkSync(content.link, join(dir, file));
    else writeFileSync(join(dir, file), content);
  }
}

beforeAll(() => {
  repo = mkdtempSync(join(tmpdir(), 'bfn-repo-'));
  folder('mlp', {
    'model.onnx': { link: ensureMlpModel(undefined, TEST_CACHE) },
    'config.json': JSON.stringify({ maxBatchSize: 16, maxDelay: 2, threads: 1 }),
  });
  folder('ocr', {
    'model.onnx': { link: ocrClassifierPath() },
    'config.json': JSON.stringify({ maxBatchSize: 4, threads: 1 }),
  });
  folder('scale', { 'model.onnx': scaleModel(1) });
  folder('ints', { 'model.onnx': { link: writeIntModel() } });
  // maxBatchSize 0 is now a model without a batch dimension (model-kinds.test.ts); -1 is still broken.
  folder('broken', { 'model.onnx': scaleModel(1), 'config.json': JSON.stringify({ maxBatchSize: -1 }) });
  folder('typo', { 'model.onnx': scaleModel(1), 'config.json': JSON.stringify({ maxBatchSise: 8 }) });
  folder('corrupt', { 'model.onnx': 'not a model' });
  folder('upper', {
    'model.mjs': `
export const inputs = [{ name: 'text', datatype: 'BYTES', shape: [-1] }];
export const outputs = [{ name: 'upper', datatype: 'BYTES', shape: [-1] }, { name: 'length', datatype: 'INT32', shape: [-1] }];
export function context(config) { return { suffix: config.parameters?.suffix ?? '' }; }
export function handler(requests, ctx) {
  return requests.map((r) => {
    const texts = r.inputs.text.data;
    if (texts.includes('exit')) process.exit(3);
    if (texts.includes('bad')) return Object.assign(new Error('bad is not a word here'), { status: 400 });
    const suffix = r.parameters.suffix ?? ctx.suffix;
    return { upper: { data: texts.map((t) => t.toUpperCase() + suffix) }, length: { data: texts.map((t) => t.length) } };
  });
}
`,
    'config.json': JSON.stringify({ maxBatchSize: 8, parameters: { suffix: '!' } }),
  });
  folder('nohandler', { 'model.js': 'export const inputs = [];' });
});
afterAll(() => rmSync(repo, { recursive: true, force: true }));
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function start(control: 'none' | 'explicit' = 'none'): Promise<RunningServer> {
  server = await startServer({ modelRepository: repo, modelControl: control, port: 0, threads: 1, maxDelay: 2 });
  return server;
}

const index = async (url: string) =>
  (await (await fetch(`${url}/v2/repository/index`, { method: 'POST' })).json()) as {
    name: string;
    state: string;
    reason: string;
  }[];

test('every folder is a model: the good ones serve with their own config, the broken ones are UNAVAILABLE with a reason', async () => {
  const { url } = await start();
  const states = Object.fromEntries((await index(url)).map((m) => [m.name, [m.state, m.reason]]));
  expect(states.mlp).toEqual(['READY', '']);
  expect(states.ocr).toEqual(['READY', '']);
  expect(states.scale).toEqual(['READY', '']);
  expect(states.ints).toEqual(['READY', '']);
  expect(states.broken).toEqual([
    'UNAVAILABLE',
    `${join(repo, 'broken', 'config.json')}: Expected \`maxBatchSize\` to be an integer from 0 and up, got \`-1\` (number)`,
  ]);
  expect(states.typo?.[1]).toMatch(
    /config\.json: unknown key `maxBatchSise`; known keys are `maxBatchSize`, `maxDelay`/,
  );
  expect(states.corrupt?.[0]).toBe('UNAVAILABLE');
  expect(states.corrupt?.[1]).toMatch(/is not an ONNX model we can serve/);
  expect(states.upper).toEqual(['READY', '']);
  expect(states.nohandler?.[1]).toMatch(/model\.js must export a `handler\(requests, context\)` function$/);

  const scaled = await postJson(`${url}/v2/models/scale/infer`, jsonRequest('x', [1, 2], 'FP32', [1, 2]));
  expect(scaled.body.outputs[0].data).toEqual([1, 2]);
  const ints = await postJson(
    `${url}/v2/models/ints/infer`,
    JSON.stringify({
      inputs: [
        { name: 'ids', shape: [1, 4], datatype: 'INT64', data: [1, 2, 3, 4] },
        { name: 'mask', shape: [1, 4], datatype: 'INT32', data: [1, 0, 1, 0] },
      ],
    }),
  );
  expect(ints.body.outputs[0].data).toEqual([1, 0, 3, 0]);
  const mlp = await postJson(
    `${url}/v2/models/mlp/infer`,
    jsonRequest('input', [17, 256], 'FP32', Array(17 * 256).fill(0.1)),
  );
  expect(mlp.status).toBe(413); // its own maxBatchSize (16), not the server's
  expect(
    (await postJson(`${url}/v2/models/mlp/infer`, jsonRequest('input', [2, 256], 'FP32', Array(512).fill(0.1)))).status,
  ).toBe(200);

  const broken = await postJson(`${url}/v2/models/broken/infer`, jsonRequest('x', [1, 2], 'FP32', [1, 2]));
  expect(broken.status).toBe(503);
  expect(broken.body.error).toMatch(
    /^Request for unknown model: 'broken' has no available versions \(it is UNAVAILABLE: .*config\.json: Expected `maxBatchSize`/,
  );
  expect((await fetch(`${url}/v2/models/broken/ready`)).status).toBe(503);
  expect((await fetch(`${url}/v2/models/scale/ready`)).status).toBe(200);
  expect((await fetch(`${url}/v2/models/nope/ready`)).status).toBe(400);

  // Batched independently: each model's statistics count its own rows only (mlp's 2-row request; the 17-row one was refused).
  const stats = (await (await fetch(`${url}/v2/models/stats`)).json()) as {
    model_stats: { name: string; inference_count: number }[];
  };
  expect(Object.fromEntries(stats.model_stats.map((m) => [m.name, m.inference_count]))).toMatchObject({
    scale: 1,
    ints: 1,
    mlp: 2,
    ocr: 0,
  });
});

test("without --model-control explicit, load and unload are refused with Triton's 503 (UNAVAILABLE)", async () => {
  const { url } = await start('none');
  for (const action of ['load', 'unload']) {
    const response = await fetch(`${url}/v2/repository/models/scale/${action}`, { method: 'POST' });
    expect(response.status).toBe(503);
  }
});

test('reloading a changed model under load drops nothing, and answers switch to the new weights', async () => {
  const { url } = await start('explicit');
  let sending = true;
  const answers: number[] = [];
  const failures: number[] = [];
  const clients = Array.from({ length: 8 }, async () => {
    while (sending) {
      const response = await postJson(`${url}/v2/models/scale/infer`, jsonRequest('x', [1, 2], 'FP32', [1, 1]));
      if (response.status === 200) answers.push(response.body.outputs[0].data[0]);
      else failures.push(response.status);
    }
  });
  await new Promise((resolve) => setTimeout(resolve, 100));
  writeFileSync(join(repo, 'scale', 'model.onnx'), scaleModel(3));
  const load = await fetch(`${url}/v2/repository/models/scale/load`, { method: 'POST' });
  expect(load.status).toBe(200);
  await new Promise((resolve) => setTimeout(resolve, 100));
  sending = false;
  await Promise.all(clients);
  expect(failures).toEqual([]);
  expect(answers[0]).toBe(1);
  expect(answers.at(-1)).toBe(3);
  expect(answers.filter((a) => a !== 1 && a !== 3)).toEqual([]);
  writeFileSync(join(repo, 'scale', 'model.onnx'), scaleModel(1));
});

test('a failed reload leaves the old instance serving; load of a broken or missing model is a 400 with the reason', async () => {
  const { url } = await start('explicit');
  writeFileSync(join(repo, 'scale', 'config.json'), JSON.stringify({ maxDelay: -1 }));
  const failed = await fetch(`${url}/v2/repository/models/scale/load`, { method: 'POST' });
  expect(failed.status).toBe(400);
  expect(((await failed.json()) as { error: string }).error).toMatch(
    /^Model `scale` failed to load: .*Expected `maxDelay` to be a number of milliseconds/,
  );
  rmSync(join(repo, 'scale', 'config.json'));
  expect((await postJson(`${url}/v2/models/scale/infer`, jsonRequest('x', [1, 2], 'FP32', [1, 1]))).status).toBe(200);
  expect((await fetch(`${url}/v2/repository/models/nothing-here/load`, { method: 'POST' })).status).toBe(400);
  // A made-up name never becomes an entry: no index row, no metrics label.
  expect((await index(url)).map((m) => m.name)).not.toContain('nothing-here');
  await postJson(`${url}/v2/models/nothing-here/infer`, jsonRequest('x', [1, 2], 'FP32', [1, 1]));
  expect(await (await fetch(`${url}/metrics`)).text()).not.toContain('nothing-here');
  expect((await fetch(`${url}/v2/repository/models/..%2Fetc/load`, { method: 'POST' })).status).toBe(400);
});

test('unloading under load answers every accepted request, then the model answers 503', async () => {
  const { url } = await start('explicit');
  const inflight = Array.from({ length: 32 }, () =>
    postJson(`${url}/v2/models/mlp/infer`, jsonRequest('input', [1, 256], 'FP32', Array(256).fill(0.2))),
  );
  await new Promise((resolve) => setTimeout(resolve, 5));
  const unload = await fetch(`${url}/v2/repository/models/mlp/unload`, { method: 'POST' });
  expect(unload.status).toBe(200);
  const statuses = (await Promise.all(inflight)).map((r) => r.status);
  // Accepted before the unload: answered (200); arrived after it: refused (503). Never lost.
  expect(statuses.every((s) => s === 200 || s === 503)).toBe(true);
  expect(statuses.filter((s) => s === 200).length).toBeGreaterThan(0);
  const after = await postJson(
    `${url}/v2/models/mlp/infer`,
    jsonRequest('input', [1, 256], 'FP32', Array(256).fill(0.2)),
  );
  expect(after.status).toBe(503);
  expect(after.body.error).toBe(
    "Request for unknown model: 'mlp' has no available versions (it is UNAVAILABLE: unloaded)",
  );
  expect((await index(url)).find((m) => m.name === 'mlp')).toMatchObject({ state: 'UNAVAILABLE', reason: 'unloaded' });
  // And it comes back.
  expect((await fetch(`${url}/v2/repository/models/mlp/load`, { method: 'POST' })).status).toBe(200);
  expect(
    (await postJson(`${url}/v2/models/mlp/infer`, jsonRequest('input', [1, 256], 'FP32', Array(256).fill(0.2)))).status,
  ).toBe(200);
});

test('--model may be repeated: each file is served under its own name', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bfn-models-'));
  writeFileSync(join(dir, 'double.onnx'), scaleModel(2));
  writeFileSync(join(dir, 'triple.onnx'), scaleModel(3));
  server = await startServer({ model: [join(dir, 'double.onnx'), join(dir, 'triple.onnx')], port: 0, threads: 1 });
  for (const [name, k] of [
    ['double', 2],
    ['triple', 3],
  ] as const) {
    const response = await postJson(`${server.url}/v2/models/${name}/infer`, jsonRequest('x', [1, 2], 'FP32', [1, 2]));
    expect(response.body.outputs[0].data).toEqual([k, 2 * k]);
  }
  await expect(startServer({ model: [join(dir, 'double.onnx'), join(dir, 'double.onnx')], port: 0 })).rejects.toThrow(
    'Two --model files have the same name',
  );
  rmSync(dir, { recursive: true, force: true });
});

const text = (values: string[]) =>
  JSON.stringify({ inputs: [{ name: 'text', shape: [values.length], datatype: 'BYTES', data: values }] });

test('a JS model: BYTES in and out over JSON, its config as context, an Error in one slot fails only that request', async () => {
  const { url } = await start();
  const meta = (await (await fetch(`${url}/v2/models/upper`)).json()) as { inputs: unknown; platform: string };
  expect(meta.inputs).toEqual([{ name: 'text', datatype: 'BYTES', shape: [-1] }]);
  const [good, bad, other] = await Promise.all([
    postJson(`${url}/v2/models/upper/infer`, text(['héllo', 'wörld'])),
    postJson(`${url}/v2/models/upper/infer`, text(['bad'])),
    postJson(`${url}/v2/models/upper/infer`, text(['x'])),
  ]);
  expect(good.status).toBe(200);
  expect(good.body.outputs).toEqual([
    { name: 'upper', datatype: 'BYTES', shape: [2], data: ['HÉLLO!', 'WÖRLD!'] },
    { name: 'length', datatype: 'INT32', shape: [2], data: [5, 5] },
  ]);
  expect(bad).toMatchObject({ status: 400, body: { error: 'bad is not a word here' } });
  expect(other.body.outputs[0].data).toEqual(['X!']);
  // The request's own parameters reach the model.
  const asked = await postJson(
    `${url}/v2/models/upper/infer`,
    JSON.stringify({
      inputs: [{ name: 'text', shape: [1], datatype: 'BYTES', data: ['y'] }],
      parameters: { suffix: '?' },
    }),
  );
  expect(asked.body.outputs[0].data).toEqual(['Y?']);
  const wrong = await postJson(
    `${url}/v2/models/upper/infer`,
    JSON.stringify({ inputs: [{ name: 'text', shape: [1], datatype: 'BYTES', data: [7] }] }),
  );
  expect(wrong).toMatchObject({
    status: 400,
    body: { error: 'Input `text` is BYTES: element 0 must be a string, got 7' },
  });
});

test('BYTES over the binary extension: 4-byte little-endian lengths, both ways', async () => {
  const { url } = await start();
  const elements = ['a', 'héllo', ''].map((s) => Buffer.from(s, 'utf8'));
  const raw = Buffer.concat(elements.flatMap((e) => [Buffer.from(Uint32Array.of(e.length).buffer), e]));
  const header = Buffer.from(
    JSON.stringify({
      inputs: [{ name: 'text', shape: [3], datatype: 'BYTES', parameters: { binary_data_size: raw.length } }],
      outputs: [{ name: 'upper', parameters: { binary_data: true } }],
    }),
  );
  const response = await fetch(`${url}/v2/models/upper/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) },
    body: Buffer.concat([header, raw]),
  });
  expect(response.status).toBe(200);
  const body = Buffer.from(await response.arrayBuffer());
  const jsonLength = Number(response.headers.get('inference-header-content-length'));
  const out = body.subarray(jsonLength);
  const decoded: string[] = [];
  for (let offset = 0; offset < out.length; ) {
    const length = out.readUInt32LE(offset);
    decoded.push(out.subarray(offset + 4, offset + 4 + length).toString('utf8'));
    offset += 4 + length;
  }
  expect(decoded).toEqual(['A!', 'HÉLLO!', '!']);
  const lying = Buffer.concat([Buffer.from(Uint32Array.of(1000).buffer), Buffer.from('x')]);
  const lyingHeader = Buffer.from(
    JSON.stringify({
      inputs: [{ name: 'text', shape: [1], datatype: 'BYTES', parameters: { binary_data_size: lying.length } }],
    }),
  );
  const refused = await fetch(`${url}/v2/models/upper/infer`, {
    method: 'POST',
    headers: {
      'content-type': 'application/octet-stream',
      'inference-header-content-length': String(lyingHeader.length),
    },
    body: Buffer.concat([lyingHeader, lying]),
  });
  expect(refused.status).toBe(400);
  expect(((await refused.json()) as { error: string }).error).toBe(
    'Input `text`: BYTES element 0 says 1000 bytes, but only 1 remain',
  );
});

test('a JS model that crashes mid-batch answers 500, and its restarted worker serves the next request', async () => {
  const { url } = await start();
  const crashed = await postJson(`${url}/v2/models/upper/infer`, text(['exit']));
  expect(crashed.status).toBe(500);
  expect(crashed.body.error).toMatch(/^ERR_WORKER_EXITED/);
  const next = await postJson(`${url}/v2/models/upper/infer`, text(['again']));
  expect(next.body.outputs[0].data).toEqual(['AGAIN!']);
});
