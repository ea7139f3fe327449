import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect, test } from 'vitest';
import { encodeModel, type RunningServer, startServer } from '@batched-fn/server';
import { floatsOf, grpcClient, rawOf } from './grpc-client.js';
import { jsonRequest, postJson } from './helpers.js';

// Models without a batch dimension (Triton's max_batch_size 0): one request per run, shapes exactly
// as declared, each request one inference and one execution of batch size 1.
let repo = '';
let server: RunningServer | undefined;

/** y = x · 2, with the shape given (numbers are fixed dimensions, strings symbolic ones). */
function doubler(shape: (number | string)[]): Uint8Array {
  return encodeModel({
    name: 'double',
    opset: 17,
    nodes: [{ opType: 'Mul', inputs: ['x', 'two'], outputs: ['y'], name: 'mul' }],
    initializers: [{ name: 'two', dims: [], data: Float32Array.of(2) }],
    inputs: [{ name: 'x', shape }],
    outputs: [{ name: 'y', shape }],
  });
}

function folder(name: string, files: Record<string, string | Uint8Array>): void {
  mkdirSync(join(repo, name), { recursive: true });
  for (const [file, content] of Object.entries(files)) writeFileSync(join(repo, name, file), content);
}

/** A JS model that answers, per request, how many requests its run held and the first dimension it was given. */
const countingJs = (shape: number[], config: object): Record<string, string> => {
  // A model that batches has a leading -1 on every tensor; one that does not, its own shapes.
  const run = shape[0] === -1 && (config as { maxBatchSize?: number }).maxBatchSize !== 0 ? [-1, 2] : [2];
  return {
    'model.mjs': `
export const inputs = [{ name: 'x', datatype: 'FP32', shape: ${JSON.stringify(shape)} }];
export const outputs = [{ name: 'y', datatype: 'FP32', shape: ${JSON.stringify(shape)} }, { name: 'run', datatype: 'INT32', shape: ${JSON.stringify(run)} }];
export async function handler(requests) {
  await new Promise((resolve) => setTimeout(resolve, 5));
  return requests.map((r) => ({
    y: { shape: r.inputs.x.shape, data: Array.from(r.inputs.x.data, (v) => v * 2) },
    run: { shape: ${JSON.stringify(run.length === 2 ? [1, 2] : [2])}, data: [requests.length, r.inputs.x.shape[0]] },
  }));
}
`,
    'config.json': JSON.stringify(config),
  };
};

beforeAll(() => {
  repo = mkdtempSync(join(tmpdir(), 'bfn-kinds-'));
  // Exported for batch 2 (a fixed first dimension), no config: served without batching.
  folder('fixed', { 'model.onnx': doubler([2, 3]) });
  // Open dimensions, but its config says 0: any [n, 3] is one request, run alone.
  folder('nobatch', {
    'model.onnx': doubler(['n', 3]),
    'config.json': JSON.stringify({ maxBatchSize: 0, threads: 1 }),
  });
  // Asked to batch a model that cannot: refused with the reason.
  folder('fixedbatch', { 'model.onnx': doubler([2, 3]), 'config.json': JSON.stringify({ maxBatchSize: 8 }) });
  folder('padzero', { 'model.onnx': doubler(['n', 3]), 'config.json': JSON.stringify({ maxBatchSize: 0, pad: true }) });
  folder('preferredzero', {
    'model.onnx': doubler(['n', 3]),
    'config.json': JSON.stringify({ maxBatchSize: 0, preferredBatchSizes: [2] }),
  });
  // JS: a leading -1 with maxBatchSize 0, and a shape with no batch dimension and no config.
  folder('jsnobatch', countingJs([-1, 2], { maxBatchSize: 0, maxDelay: 20 }));
  folder('jsfixed', countingJs([2, 2], { maxDelay: 20 }));
  folder('jsbatch', countingJs([-1, 2], { maxBatchSize: 8, maxDelay: 20 }));
});
afterAll(() => rmSync(repo, { recursive: true, force: true }));
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function start(): Promise<RunningServer> {
  server = await startServer({ modelRepository: repo, port: 0, grpcPort: 0, threads: 1, maxDelay: 20, workers: 1 });
  return server;
}

const stats = async (url: string, name: string) =>
  ((await (await fetch(`${url}/v2/models/${name}/stats`)).json()) as { model_stats: any[] }).model_stats[0];
const config = async (url: string, name: string) =>
  (await (await fetch(`${url}/v2/models/${name}/config`)).json()) as any;

test('an ONNX model without a batch dimension runs one request per execution: statistics count each as one inference of batch size 1', async () => {
  const { url, registry } = await start();
  expect(registry.get('fixed')?.model?.maxBatchSize).toBe(0);
  // Eight at once, inside one 20 ms window: a batching model would have run them in one or two executions.
  const answers = await Promise.all(
    Array.from({ length: 8 }, (_, i) =>
      postJson(`${url}/v2/models/fixed/infer`, jsonRequest('x', [2, 3], 'FP32', [i, i, i, i, i, i + 1])),
    ),
  );
  answers.forEach((answer, i) => {
    expect(answer.status).toBe(200);
    expect(answer.body.outputs[0]).toMatchObject({
      name: 'y',
      shape: [2, 3],
      data: [2 * i, 2 * i, 2 * i, 2 * i, 2 * i, 2 * i + 2],
    });
  });
  const s = await stats(url, 'fixed');
  expect(s.inference_count).toBe(8);
  expect(s.execution_count).toBe(8);
  expect(s.batch_stats.map((b: any) => [b.batch_size, b.compute_infer.count])).toEqual([[1, 8]]);
});

test('its shapes are exactly the declared ones: another shape is a 400, and metadata and config show the whole dims with max_batch_size 0', async () => {
  const { url } = await start();
  for (const shape of [[1, 3], [4, 3], [2, 3, 1], [6]]) {
    const response = await postJson(
      `${url}/v2/models/fixed/infer`,
      jsonRequest('x', shape, 'FP32', Array(shape.reduce((a, b) => a * b, 1)).fill(1)),
    );
    expect(response.status, JSON.stringify(shape)).toBe(400);
  }
  const wrong = await postJson(`${url}/v2/models/fixed/infer`, jsonRequest('x', [1, 3], 'FP32', [1, 2, 3]));
  expect(wrong.body.error).toBe('Input `x`: dimension 0 is 1, the model expects 2 (shape [2,3])');
  const meta = (await (await fetch(`${url}/v2/models/fixed`)).json()) as any;
  expect(meta.inputs).toEqual([{ name: 'x', datatype: 'FP32', shape: [2, 3] }]);
  const fixed = await config(url, 'fixed');
  expect(fixed.max_batch_size).toBe(0);
  expect(fixed.input[0].dims).toEqual([2, 3]);
  expect(fixed.output[0].dims).toEqual([2, 3]);
  const nobatch = await config(url, 'nobatch');
  expect(nobatch.max_batch_size).toBe(0);
  expect(nobatch.input[0].dims).toEqual([-1, 3]);
  expect(nobatch.dynamic_batching.preferred_batch_size).toEqual([]);
});

test('maxBatchSize 0 with open dimensions: any size is one request, counted as one inference (not its first dimension)', async () => {
  const { url } = await start();
  const five = await postJson(`${url}/v2/models/nobatch/infer`, jsonRequest('x', [5, 3], 'FP32', Array(15).fill(1)));
  expect(five.status).toBe(200);
  expect(five.body.outputs[0].shape).toEqual([5, 3]);
  // Triton lets a model without a batch dimension take a 0-sized dimension; ONNX Runtime runs it.
  const empty = await postJson(`${url}/v2/models/nobatch/infer`, jsonRequest('x', [0, 3], 'FP32', []));
  expect(empty.status).toBe(200);
  expect(empty.body.outputs[0]).toMatchObject({ shape: [0, 3], data: [] });
  const s = await stats(url, 'nobatch');
  expect([s.inference_count, s.execution_count]).toEqual([2, 2]);
  // The raw binary request: the declared shape, its one open dimension deduced from the byte count.
  const raw = await fetch(`${url}/v2/models/nobatch/infer`, {
    method: 'POST',
    headers: { 'inference-header-content-length': '0' },
    body: rawOf(Float32Array.of(1, 2, 3, 4, 5, 6)),
  });
  expect(raw.status).toBe(200);
  const header = Number(raw.headers.get('inference-header-content-length'));
  const body = Buffer.from(await raw.arrayBuffer());
  expect(JSON.parse(body.subarray(0, header).toString()).outputs[0].shape).toEqual([2, 3]);
  expect(Array.from(floatsOf(body.subarray(header)))).toEqual([2, 4, 6, 8, 10, 12]);
});

test('over gRPC too: exact shapes, one execution per request, and ModelConfig says max_batch_size 0', async () => {
  const { url, grpcUrl } = await start();
  const client = grpcClient(grpcUrl as string);
  try {
    const answers = await Promise.all(
      [1, 2, 3].map((k) =>
        client.call('ModelInfer', {
          model_name: 'fixed',
          inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 3] }],
          raw_input_contents: [rawOf(new Float32Array(6).fill(k))],
        }),
      ),
    );
    answers.forEach((answer, i) => {
      expect(answer.outputs[0].shape.map(Number)).toEqual([2, 3]);
      expect(Array.from(floatsOf(answer.raw_output_contents[0]))).toEqual(Array(6).fill(2 * (i + 1)));
    });
    const wrong = await client.fails('ModelInfer', {
      model_name: 'fixed',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3] }],
      raw_input_contents: [rawOf(new Float32Array(3))],
    });
    expect(wrong).toEqual({ code: 3, details: 'Input `x`: dimension 0 is 1, the model expects 2 (shape [2,3])' });
    const grpcConfig = await client.call('ModelConfig', { name: 'fixed' });
    expect(Number(grpcConfig.config.max_batch_size)).toBe(0);
    expect(grpcConfig.config.input[0].dims.map(Number)).toEqual([2, 3]);
  } finally {
    client.close();
  }
  expect((await stats(url, 'fixed')).execution_count).toBe(3);
});

test('a JS model without a batch dimension gets one request per handler call, with its shape as sent', async () => {
  const { url } = await start();
  const send = (name: string, shape: [number, number]) =>
    postJson(`${url}/v2/models/${name}/infer`, jsonRequest('x', shape, 'FP32', Array(shape[0] * shape[1]).fill(1)));
  // maxBatchSize 0 with a leading -1: any first dimension, one request per run.
  const answers = await Promise.all([
    send('jsnobatch', [3, 2]),
    send('jsnobatch', [1, 2]),
    send('jsnobatch', [2, 2]),
    send('jsnobatch', [5, 2]),
  ]);
  expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200]);
  expect(answers.map((a) => a.body.outputs.find((o: any) => o.name === 'run').data)).toEqual([
    [1, 3],
    [1, 1],
    [1, 2],
    [1, 5],
  ]);
  expect(answers[0]?.body.outputs.find((o: any) => o.name === 'y').shape).toEqual([3, 2]);
  const s = await stats(url, 'jsnobatch');
  expect([s.inference_count, s.execution_count]).toEqual([4, 4]);
  expect((await config(url, 'jsnobatch')).max_batch_size).toBe(0);
  expect((await send('jsnobatch', [3, 3])).status).toBe(400);

  // Declared without a batch dimension and no config: the same, with the exact shape [2, 2] only.
  const fixed = await Promise.all([send('jsfixed', [2, 2]), send('jsfixed', [2, 2]), send('jsfixed', [2, 2])]);
  expect(fixed.map((a) => a.body.outputs.find((o: any) => o.name === 'run').data[0])).toEqual([1, 1, 1]);
  expect((await send('jsfixed', [1, 2])).status).toBe(400);
  expect((await config(url, 'jsfixed')).input[0].dims).toEqual([2, 2]);

  // The same module with a batch dimension still batches (its handler sees several requests in one run).
  const batched = await Promise.all(Array.from({ length: 6 }, () => send('jsbatch', [1, 2])));
  expect(Math.max(...batched.map((a) => a.body.outputs.find((o: any) => o.name === 'run').data[0]))).toBeGreaterThan(1);
});

test('asked to batch a model that cannot, or to pad or prefer sizes without a batch dimension: UNAVAILABLE with the reason', async () => {
  const { url } = await start();
  const states = Object.fromEntries(
    ((await (await fetch(`${url}/v2/repository/index`, { method: 'POST' })).json()) as any[]).map((m) => [
      m.name,
      [m.state, m.reason],
    ]),
  );
  expect(states.fixed).toEqual(['READY', '']);
  expect(states.nobatch).toEqual(['READY', '']);
  expect(states.fixedbatch).toEqual([
    'UNAVAILABLE',
    "`maxBatchSize` is 8, but model 'fixedbatch', tensor 'x': for the model to support batching the shape should have at least 1 dimension and the first dimension must be -1; but shape expected by the model is [2,3]; set `maxBatchSize` to 0 to serve it without batching",
  ]);
  const contradiction = (name: string, key: string) =>
    `${join(repo, name, 'config.json')}: \`${key}\` is for batches of rows, and \`maxBatchSize\` 0 is a model without a batch dimension (one request per run): leave one out`;
  expect(states.padzero).toEqual(['UNAVAILABLE', contradiction('padzero', 'pad')]);
  expect(states.preferredzero).toEqual(['UNAVAILABLE', contradiction('preferredzero', 'preferredBatchSizes')]);
});

test('the server-wide --pad and --preferred-batch-sizes are for models that batch: one without a batch dimension serves on, unpadded', async () => {
  server = await startServer({
    modelRepository: repo,
    port: 0,
    threads: 1,
    maxDelay: 5,
    workers: 1,
    pad: true,
    preferredBatchSizes: [4, 8],
  });
  const states = Object.fromEntries(
    ((await (await fetch(`${server.url}/v2/repository/index`, { method: 'POST' })).json()) as any[]).map((m) => [
      m.name,
      m.state,
    ]),
  );
  expect([states.fixed, states.nobatch, states.jsfixed]).toEqual(['READY', 'READY', 'READY']);
  const answer = await postJson(
    `${server.url}/v2/models/nobatch/infer`,
    jsonRequest('x', [3, 3], 'FP32', Array(9).fill(1)),
  );
  expect(answer.body.outputs[0].shape).toEqual([3, 3]);
  const s = await stats(server.url, 'nobatch');
  expect(s.batch_stats.map((b: any) => b.batch_size)).toEqual([1]);
  const shown = await config(server.url, 'nobatch');
  expect([shown.dynamic_batching.preferred_batch_size, shown.parameters.pad]).toEqual([[], undefined]);
});

test('classification of a model without a batch dimension ranks the whole output, answered as [k], as Triton does', async () => {
  const { url } = await start();
  const body = JSON.stringify({
    inputs: [{ name: 'x', shape: [2, 3], datatype: 'FP32', data: [1, 9, 3, 4, 5, 6] }],
    outputs: [{ name: 'y', parameters: { classification: 2 } }],
  });
  const answer = await postJson(`${url}/v2/models/fixed/infer`, body);
  expect(answer.body.outputs[0]).toMatchObject({ datatype: 'BYTES', shape: [2], data: ['18.000000:1', '12.000000:5'] });
});

test('--model with a file that has no batch dimension serves it with max_batch_size 0 (the server default is for models that batch)', async () => {
  server = await startServer({ model: join(repo, 'fixed', 'model.onnx'), port: 0, threads: 1, maxBatchSize: 16 });
  expect(server.model.maxBatchSize).toBe(0);
  expect((await config(server.url, 'model')).max_batch_size).toBe(0);
  expect(
    (await postJson(`${server.url}/v2/models/model/infer`, jsonRequest('x', [2, 3], 'FP32', [1, 2, 3, 4, 5, 6]))).body
      .outputs[0].data,
  ).toEqual([2, 4, 6, 8, 10, 12]);
});
