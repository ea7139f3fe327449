import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { encodeModel, type RunningServer, startServer } from '@batched-fn/server';
import { jsonRequest, postJson } from './helpers.js';
import { scratchDir } from './scratch.js';

// configure() changes the one live maxBatchSize: the batcher's. The decoders (which refuse a request
// with more rows before allocating its tensors), the model configuration and the engine all read it,
// however the repository built the model: as it is, with a timeout of its config.json, or as a
// version of a Triton-layout folder. Each used to keep a copy taken at load, which configure() missed.

let server: RunningServer | undefined;

const scale = encodeModel({
  name: 'scale',
  opset: 17,
  nodes: [{ opType: 'Mul', inputs: ['x', 'k'], outputs: ['y'], name: 'mul' }],
  initializers: [{ name: 'k', dims: [1], data: Float32Array.of(2) }],
  inputs: [{ name: 'x', shape: ['batch', 2] }],
  outputs: [{ name: 'y', shape: ['batch', 2] }],
});

beforeAll(async () => {
  const repo = scratchDir('bfn-configure-');
  const folder = (name: string, files: Record<string, string | Uint8Array>): void => {
    for (const [file, content] of Object.entries(files)) {
      mkdirSync(join(repo, name, file, '..'), { recursive: true });
      writeFileSync(join(repo, name, file), content);
    }
  };
  const config = { maxBatchSize: 4, maxDelay: 0, threads: 1 };
  folder('plain', { 'model.onnx': scale, 'config.json': JSON.stringify(config) });
  folder('timed', { 'model.onnx': scale, 'config.json': JSON.stringify({ ...config, timeout: 60_000 }) });
  // Triton's layout, completed from the file: max_batch_size 4 (Triton's default), one version.
  folder('triton', { '1/model.onnx': scale });
  server = await startServer({ port: 0, modelRepository: repo, threads: 1 });
});

afterAll(async () => {
  await server?.close();
});

const rows = (n: number): string => jsonRequest('x', [n, 2], 'FP32', Array(n * 2).fill(1));
const maxBatchSizeOf = async (name: string): Promise<number> =>
  ((await (await fetch(`${server?.url}/v2/models/${name}/config`)).json()) as { max_batch_size: number })
    .max_batch_size;

test.each(['plain', 'timed', 'triton'])(
  '%s: batcher.configure({ maxBatchSize }) is what requests are held to, and what the model says',
  async (name) => {
    const model = server?.registry.get(name)?.model;
    if (model === undefined) throw new Error(`${name} did not load`);
    expect([model.maxBatchSize, await maxBatchSizeOf(name)]).toEqual([4, 4]);
    expect((await postJson(`${server?.url}/v2/models/${name}/infer`, rows(6))).status).toBe(413);

    model.batcher.configure({ maxBatchSize: 8 });
    expect([model.maxBatchSize, await maxBatchSizeOf(name)]).toEqual([8, 8]);
    const six = await postJson(`${server?.url}/v2/models/${name}/infer`, rows(6));
    expect([six.status, six.body.outputs?.[0]?.shape]).toEqual([200, [6, 2]]);

    model.batcher.configure({ maxBatchSize: 2 });
    expect([model.maxBatchSize, await maxBatchSizeOf(name)]).toEqual([2, 2]);
    const three = await postJson(`${server?.url}/v2/models/${name}/infer`, rows(3));
    expect([three.status, three.body.error]).toEqual([
      413,
      "ERR_ITEM_TOO_LARGE: Input has size 3, larger than the model's max batch size (--max-batch-size 2)",
    ]);
  },
);
