import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { encodeModel, ensureMlpModel, type RunningServer, startServer } from '@batched-fn/server';
import { TRY_IT_WIDTH, tryIt } from '../dist/cli/banner.js';
import { killRunning, run } from './cli-run.js';
import { postJson, TEST_CACHE, writeIntModel } from './helpers.js';
import { scratchDir } from './scratch.js';

// The start banner: a "Try it" line that works for the model it names and fits one line, and each
// model's own batch settings.
let server: RunningServer | undefined;
afterEach(async () => {
  killRunning();
  await server?.close();
  server = undefined;
});

/** A repository of models of several kinds: FP32 (each with its own config), BYTES, INT64, no batch dimension. */
function repository(): string {
  const repo = scratchDir('bfn-banner-');
  const folder = (name: string, files: Record<string, string | Uint8Array | { link: string }>): void => {
    mkdirSync(join(repo, name));
    for (const [file, content] of Object.entries(files)) {
      if (typeof content === 'object' && 'link' in content) symlinkSync(content.link, join(repo, name, file));
      else writeFileSync(join(repo, name, file), content);
    }
  };
  folder('mlp', {
    'model.onnx': { link: ensureMlpModel(undefined, TEST_CACHE) },
    'config.json': JSON.stringify({ maxBatchSize: 16, maxDelay: 2, threads: 1 }),
  });
  folder('echo', {
    'model.mjs': `
export const inputs = [{ name: 'text', datatype: 'BYTES', shape: [-1, 2] }];
export const outputs = [{ name: 'text', datatype: 'BYTES', shape: [-1, 2] }];
export function handler(requests) { return requests.map((r) => ({ text: { data: r.inputs.text.data } })); }
`,
    'config.json': JSON.stringify({ maxBatchSize: 8, maxDelay: 'auto' }),
  });
  folder('ints', { 'model.onnx': { link: writeIntModel() } });
  folder('whole', {
    'model.onnx': encodeModel({
      name: 'whole',
      opset: 17,
      nodes: [{ opType: 'Identity', inputs: ['x'], outputs: ['y'], name: 'id' }],
      initializers: [],
      inputs: [{ name: 'x', shape: [3, 2] }],
      outputs: [{ name: 'y', shape: [3, 2] }],
    }),
    'config.json': JSON.stringify({ maxBatchSize: 0 }),
  });
  return repo;
}

test('the default model: its "Try it" line fits one line and answers 200 as printed', async () => {
  const serve = run(['serve', '--port', '0', '--no-grpc', '--cache-dir', TEST_CACHE]);
  const url = await serve.url;
  const lines = serve.output().split('\n');
  const at = lines.findIndex((line) => line.startsWith('Try it'));
  const command = lines[at + 1]?.trim() as string;
  expect(command.length).toBeLessThanOrEqual(TRY_IT_WIDTH);
  // Its body would be 256 values: too long for a line, so the model's metadata says what to send.
  expect(command).toBe(`curl -s ${url}/v2/models/mlp`);
  const answer = await fetch(command.slice('curl -s '.length));
  expect(answer.status).toBe(200);
  expect(((await answer.json()) as { inputs: unknown }).inputs).toEqual([
    { name: 'input', datatype: 'FP32', shape: [-1, 256] },
  ]);
});

test('every kind of model gets a request it accepts (BYTES gets strings, shapes are its own), answered 200', async () => {
  server = await startServer({ modelRepository: repository(), port: 0, cacheDir: TEST_CACHE });
  const models = server.registry.ready();
  expect(models.map((m) => m.name).sort()).toEqual(['echo', 'ints', 'mlp', 'whole']);
  for (const model of models) {
    // However long: the inference line, as it would be printed on a wide enough terminal.
    const line = tryIt(server.url, model, Number.POSITIVE_INFINITY);
    const parsed = /^curl -s (\S+) -H content-type:application\/json -d '(.+)'$/.exec(line);
    expect(parsed?.[1]).toBe(`${server.url}/v2/models/${model.name}/infer`);
    const response = await postJson(parsed?.[1] as string, parsed?.[2] as string);
    expect([model.name, response.status]).toEqual([model.name, 200]);
    // On a real terminal: one line, and still a command that works.
    const short = tryIt(server.url, model);
    expect(short.length).toBeLessThanOrEqual(TRY_IT_WIDTH);
    if (!short.includes('/infer')) expect((await fetch(short.slice('curl -s '.length))).status).toBe(200);
  }
  const echo = models.find((m) => m.name === 'echo');
  expect(JSON.parse(/-d '(.+)'$/.exec(tryIt(server.url, echo as never, Infinity))?.[1] as string)).toEqual({
    inputs: [{ name: 'text', shape: [1, 2], datatype: 'BYTES', data: ['a', 'a'] }],
  });
  const whole = models.find((m) => m.name === 'whole');
  expect(tryIt(server.url, whole as never, Infinity)).toContain('"shape":[3,2]');
});

test("a repository's banner shows each model's own batch settings", async () => {
  const serve = run(['serve', '--model-repository', repository(), '--port', '0', '--no-grpc', '--threads', '1']);
  const url = await serve.url;
  const text = serve.output();
  expect(text).toContain(`batched-fn serving 4 models on ${url}\n`);
  expect(text).toContain('  model "mlp": max batch 16, max delay 2 ms, 1 worker(s) x 1 thread(s)\n');
  expect(text).toMatch(/\n {2}model "echo": max batch 8, max delay auto, \d+ worker\(s\)\n/);
  expect(text).toContain('  model "whole": no batch dimension (one request per run), 1 worker(s)\n');
  for (const line of text.split('\n')) expect(line.length).toBeLessThanOrEqual(TRY_IT_WIDTH);
});
