import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { encodeModel, type RunningServer, startServer } from '@batched-fn/server';
import { parseFlags } from '../dist/cli/flags.js';
import { killRunning, run } from './cli-run.js';
import { postJson } from './helpers.js';

// Attacks on the model repository from the hardening review: each one used to leave a model (or the
// whole server) stuck or failing every request; now it is refused or bounded, with the reason in the
// answer and in the model's index entry.

let server: RunningServer | undefined;
const repos: string[] = [];
afterEach(async () => {
  killRunning();
  await server?.close();
  server = undefined;
  for (const dir of repos.splice(0)) rmSync(dir, { recursive: true, force: true });
});

type Files = Record<string, string | Uint8Array>;

function newRepo(models: Record<string, Files> = {}): string {
  const repo = mkdtempSync(join(tmpdir(), 'bfn-repo-hard-'));
  repos.push(repo);
  for (const [name, files] of Object.entries(models)) folder(repo, name, files);
  return repo;
}

function folder(repo: string, name: string, files: Files): void {
  mkdirSync(join(repo, name), { recursive: true });
  for (const [file, content] of Object.entries(files)) writeFileSync(join(repo, name, file), content);
}

async function start(repo: string): Promise<string> {
  server = await startServer({
    modelRepository: repo,
    modelControl: 'explicit',
    port: 0,
    threads: 1,
    maxDelay: 0,
    dashboard: 'off',
  });
  return server.url;
}

const post = (url: string, body?: string, timeoutMs = 10_000) =>
  fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body }),
    signal: AbortSignal.timeout(timeoutMs),
  });

async function index(url: string): Promise<Record<string, { state: string; reason: string }>> {
  const rows = (await (await post(`${url}/v2/repository/index`)).json()) as {
    name: string;
    state: string;
    reason: string;
  }[];
  return Object.fromEntries(rows.map((row) => [row.name, { state: row.state, reason: row.reason }]));
}

async function load(
  url: string,
  name: string,
  timeoutMs?: number,
): Promise<{ status: number; error?: string; ms: number }> {
  const started = performance.now();
  const response = await post(`${url}/v2/repository/models/${name}/load`, undefined, timeoutMs);
  const body = (await response.json()) as { error?: string };
  return { status: response.status, ...body, ms: performance.now() - started };
}

const ints = (name: string, data: number[]) =>
  JSON.stringify({ inputs: [{ name, shape: [data.length], datatype: 'INT32', data }] });

/** A JS model: `input` INT32 → `y` = input × `k`; `top` is prepended to the module's top level. */
function jsModel(input: string, k: number, top = '', more = ''): string {
  return `${top}
globalThis.__bfnImports = (globalThis.__bfnImports ?? 0) + 1;
export const inputs = [{ name: '${input}', datatype: 'INT32', shape: [-1] }];
export const outputs = [{ name: 'y', datatype: 'INT32', shape: [-1] }];
export function handler(requests) {
  return requests.map((r) => {
    if (r.inputs.${input}.data[0] === -1) process.exit(3);
    return { y: { data: Array.from(r.inputs.${input}.data, (v) => v * ${k}) } };
  });
}
${more}`;
}

/** out = x · 1, [batch, 2] FP32. */
const scaleModel = encodeModel({
  name: 'scale',
  opset: 17,
  nodes: [{ opType: 'Mul', inputs: ['x', 'k'], outputs: ['y'], name: 'mul' }],
  initializers: [{ name: 'k', dims: [1], data: Float32Array.of(1) }],
  inputs: [{ name: 'x', shape: ['batch', 2] }],
  outputs: [{ name: 'y', shape: ['batch', 2] }],
});

/** This process's OS threads (each worker thread is one). */
const threadCount = (): number => readdirSync('/proc/self/task').length;

async function until(check: () => boolean | Promise<boolean>, ms = 5_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

// Finding 1: the signature used to stay on the first version (the main thread's module cache) while
// new workers ran the new code, so every request failed; an import error stayed cached forever.
test('editing model.js and loading it again serves the new version entirely: metadata, input checks and workers', async () => {
  const repo = newRepo({
    edit: { 'model.mjs': jsModel('a', 10) },
    throws: { 'model.mjs': jsModel('a', 10, "throw new Error('not yet');") },
  });
  const url = await start(repo);
  expect((await postJson(`${url}/v2/models/edit/infer`, ints('a', [1]))).body.outputs[0].data).toEqual([10]);
  expect((await index(url)).throws).toEqual({
    state: 'UNAVAILABLE',
    reason: `${join(repo, 'throws', 'model.mjs')} failed to load: not yet`,
  });

  folder(repo, 'edit', { 'model.mjs': jsModel('b', 100) });
  expect(await load(url, 'edit')).toMatchObject({ status: 200 });
  const meta = (await (await fetch(`${url}/v2/models/edit`)).json()) as { inputs: { name: string }[] };
  expect(meta.inputs.map((i) => i.name)).toEqual(['b']);
  expect(await postJson(`${url}/v2/models/edit/infer`, ints('b', [2]))).toMatchObject({
    status: 200,
    body: { outputs: [{ name: 'y', data: [200] }] },
  });
  expect(await postJson(`${url}/v2/models/edit/infer`, ints('a', [2]))).toMatchObject({
    status: 400,
    body: { error: "Unknown input `a`; the model's inputs are `b`" },
  });

  // An import that once threw is not remembered: fixed, the model loads.
  folder(repo, 'throws', { 'model.mjs': jsModel('a', 7) });
  expect(await load(url, 'throws')).toMatchObject({ status: 200 });
  expect((await postJson(`${url}/v2/models/throws/infer`, ints('a', [1]))).body.outputs[0].data).toEqual([7]);

  // The main thread never ran a model.js: nothing of any version sits in its module cache.
  expect((globalThis as { __bfnImports?: number }).__bfnImports).toBeUndefined();
});

test("a model.js that posts on its thread's port at import, or exits there, is answered as such, not mistaken for its exports", async () => {
  const chatty = `import { parentPort } from 'node:worker_threads';\nparentPort?.postMessage({ ok: false, message: 'not from us' });`;
  const repo = newRepo({
    chatty: { 'model.mjs': jsModel('a', 5, chatty) },
    quits: { 'model.mjs': jsModel('a', 5, 'process.exit(0);') },
  });
  const url = await start(repo);
  expect((await postJson(`${url}/v2/models/chatty/infer`, ints('a', [1]))).body.outputs[0].data).toEqual([5]);
  expect((await index(url)).quits).toEqual({
    state: 'UNAVAILABLE',
    reason: `${join(repo, 'quits', 'model.mjs')} failed to load: its thread exited (code 0) before its exports were read`,
  });
});

test('a worker restarted after model.js changed on disk refuses to run code its signature was not read from', async () => {
  const repo = newRepo({ edit: { 'model.mjs': jsModel('a', 10) } });
  const url = await start(repo);
  folder(repo, 'edit', { 'model.mjs': jsModel('b', 100) }); // edited, not loaded yet
  const crashed = await postJson(`${url}/v2/models/edit/infer`, ints('a', [-1]));
  expect(crashed.body.error).toMatch(/^ERR_WORKER_EXITED/);
  const next = await postJson(`${url}/v2/models/edit/infer`, ints('a', [1]));
  expect(next.status).toBe(500);
  expect(next.body.error).toContain(
    `${join(repo, 'edit', 'model.mjs')} changed since this model was loaded; load the model again to serve the new version`,
  );
  expect(await load(url, 'edit')).toMatchObject({ status: 200 });
  expect((await postJson(`${url}/v2/models/edit/infer`, ints('b', [1]))).body.outputs[0].data).toEqual([100]);
});

// Finding 2: a context() that never settles held the model LOADING, /load unanswered, and /unload
// queued behind it: the name was stuck until a restart.
test('a context() that never settles fails its load after loadTimeout, with its worker threads stopped', async () => {
  const repo = newRepo({ warm: { 'model.mjs': jsModel('a', 1) } });
  const url = await start(repo);
  const idle = threadCount();
  const never = 'export function context() { return new Promise(() => {}); }';
  folder(repo, 'hang', {
    'model.mjs': jsModel('a', 2, '', never),
    'config.json': JSON.stringify({ loadTimeout: 1_500, workers: 3 }),
  });
  const loading = load(url, 'hang');
  await until(() => threadCount() >= idle + 3); // its three workers are up, stuck in context()
  const failed = await loading;
  expect(failed).toMatchObject({
    status: 400,
    error:
      'Model `hang` failed to load: hang did not load within 1500 ms (`loadTimeout`) while its workers ran context(); its threads were stopped',
  });
  expect(failed.ms).toBeLessThan(1_500 + 2_000);
  expect((await index(url)).hang).toEqual({
    state: 'UNAVAILABLE',
    reason:
      'hang did not load within 1500 ms (`loadTimeout`) while its workers ran context(); its threads were stopped',
  });
  await until(() => threadCount() <= idle);

  // Fixed, the same name loads: nothing of the failed load is left holding it.
  folder(repo, 'hang', { 'model.mjs': jsModel('a', 2), 'config.json': JSON.stringify({ workers: 3 }) });
  expect(await load(url, 'hang')).toMatchObject({ status: 200 });
  expect((await postJson(`${url}/v2/models/hang/infer`, ints('a', [4]))).body.outputs[0].data).toEqual([8]);
});

test('an unload cancels a pending load at once instead of queueing behind it forever', async () => {
  const repo = newRepo();
  const url = await start(repo);
  folder(repo, 'pending', {
    'model.mjs': jsModel('a', 3, '', 'export function context() { return new Promise(() => {}); }'),
  });
  const loading = load(url, 'pending', 30_000); // the default loadTimeout (60 s) is far off
  await until(async () => (await index(url)).pending?.state === 'LOADING');
  const started = performance.now();
  const unload = await post(`${url}/v2/repository/models/pending/unload`, undefined, 5_000);
  expect(unload.status).toBe(200);
  expect(performance.now() - started).toBeLessThan(2_000);
  expect(await loading).toMatchObject({
    status: 409,
    error: 'Model `pending` failed to load: The load of `pending` was cancelled by an unload',
  });
  expect((await index(url)).pending).toEqual({ state: 'UNAVAILABLE', reason: 'unloaded' });
  folder(repo, 'pending', { 'model.mjs': jsModel('a', 3) });
  expect(await load(url, 'pending')).toMatchObject({ status: 200 });
});

test('threads: 100000 or workers: 100000 in config.json is refused at load with the bound, as the flags are', async () => {
  const repo = newRepo({
    threads: { 'model.onnx': scaleModel, 'config.json': JSON.stringify({ threads: 100_000 }) },
    workers: { 'model.mjs': jsModel('a', 1), 'config.json': JSON.stringify({ workers: 100_000 }) },
  });
  const url = await start(repo);
  const states = await index(url);
  expect(states.threads).toEqual({
    state: 'UNAVAILABLE',
    reason: `${join(repo, 'threads', 'config.json')}: Expected \`threads\` to be at most 256, got \`100000\` (number)`,
  });
  expect(states.workers).toEqual({
    state: 'UNAVAILABLE',
    reason: `${join(repo, 'workers', 'config.json')}: Expected \`workers\` to be at most 256, got \`100000\` (number)`,
  });
  expect(await load(url, 'threads')).toMatchObject({
    status: 400,
    error: `Model \`threads\` failed to load: ${states.threads?.reason}`,
  });
  expect(() => parseFlags('serve', ['--threads', '100000'])).toThrow('--threads must be at most 256, got "100000"');
  expect(() => parseFlags('serve', ['--workers', '257'])).toThrow('--workers must be at most 256, got "257"');
  expect(parseFlags('serve', ['--threads', '256', '--workers', '256'])).toMatchObject({ threads: 256, workers: 256 });
});

// Finding 3: READY, then every request a 500 "Invalid typed array length" from the padding.
test('maxBatchSize 1e15 with pad is refused at load and at flag parse; a padding that no buffer holds is refused with its size', async () => {
  const wide = `export const inputs = [{ name: 'x', datatype: 'FP32', shape: [-1, 4096] }];
export const outputs = [{ name: 'y', datatype: 'FP32', shape: [-1] }];
export function handler(requests) { return requests.map((r) => ({ y: { data: new Float32Array(r.inputs.x.shape[0]) } })); }`;
  const open = wide.replace('[-1, 4096]', '[-1, -1]');
  const repo = newRepo({
    padbomb: { 'model.onnx': scaleModel, 'config.json': JSON.stringify({ maxBatchSize: 1e15, pad: true }) },
    padwide: { 'model.mjs': wide, 'config.json': JSON.stringify({ maxBatchSize: 1_048_576, pad: true }) },
    padopen: { 'model.mjs': open, 'config.json': JSON.stringify({ maxBatchSize: 1_048_576, pad: true }) },
    padmax: { 'model.onnx': scaleModel, 'config.json': JSON.stringify({ maxBatchSize: 1_048_576, pad: true }) },
  });
  const url = await start(repo);
  const states = await index(url);
  expect(states.padbomb).toEqual({
    state: 'UNAVAILABLE',
    reason: `${join(repo, 'padbomb', 'config.json')}: Expected \`maxBatchSize\` to be at most 1048576, got \`1000000000000000\` (number)`,
  });
  expect(states.padwide).toEqual({
    state: 'UNAVAILABLE',
    reason:
      '`pad` with `maxBatchSize` 1048576: input `x` padded to 1048576 rows of [4096] would take 17179869184 bytes, more than one buffer holds (4294967296); lower maxBatchSize',
  });
  // At the cap, a small row pads fine: one 1-row request runs as 1048576 rows.
  expect(states.padmax?.state).toBe('READY');
  const padded = await postJson(
    `${url}/v2/models/padmax/infer`,
    JSON.stringify({ inputs: [{ name: 'x', shape: [1, 2], datatype: 'FP32', data: [1, 2] }] }),
  );
  expect(padded).toMatchObject({ status: 200, body: { outputs: [{ shape: [1, 2], data: [1, 2] }] } });
  // An open dimension is known only per request: the padding that cannot be built fails with its size.
  const row = 8192;
  const tooWide = await postJson(
    `${url}/v2/models/padopen/infer`,
    JSON.stringify({ inputs: [{ name: 'x', shape: [1, row], datatype: 'FP32', data: Array(row).fill(0) }] }),
  );
  expect(tooWide.status).toBe(500);
  expect(tooWide.body.error).toContain(
    `Cannot pad input \`x\` to 1048576 rows of shape [${row}]: ${1_048_575 * row * 4} bytes, more than one buffer holds (4294967296)`,
  );
  expect(() => parseFlags('serve', ['--max-batch-size', '1e15', '--pad'])).toThrow(
    '--max-batch-size must be at most 1048576, got "1e15"',
  );
});

// Finding 4: a symlinked folder was skipped at start, but loaded through /load.
test('a symlinked model folder is refused the same way at start and on load', async () => {
  const repo = newRepo({ real: { 'model.onnx': scaleModel } });
  symlinkSync(join(repo, 'real'), join(repo, 'alias'));
  const outside = newRepo({ elsewhere: { 'model.onnx': scaleModel } });
  const url = await start(repo);
  const reason = (name: string) =>
    `${join(repo, name)} is a symbolic link: a model folder must be a real directory of the repository (links are not followed)`;
  const states = await index(url);
  expect(states.real).toEqual({ state: 'READY', reason: '' });
  expect(states.alias).toEqual({ state: 'UNAVAILABLE', reason: reason('alias') });
  expect(await load(url, 'alias')).toMatchObject({
    status: 400,
    error: `Model \`alias\` failed to load: ${reason('alias')}`,
  });
  // Made after start, and pointing out of the repository: the same answer.
  symlinkSync(join(outside, 'elsewhere'), join(repo, 'escape'));
  expect(await load(url, 'escape')).toMatchObject({
    status: 400,
    error: `Model \`escape\` failed to load: ${reason('escape')}`,
  });
  expect(
    (
      await postJson(
        `${url}/v2/models/escape/infer`,
        JSON.stringify({ inputs: [{ name: 'x', shape: [1, 2], datatype: 'FP32', data: [1, 2] }] }),
      )
    ).status,
  ).toBe(503);
});

// Finding 5: a model.js spinning at its top level froze the whole server (its exports were read on
// the main thread). The server runs in a child process: frozen, it would freeze this test too.
test('a model.js that spins at import cannot freeze the server: /v2/health/live answers while its load is pending, and the load fails within loadTimeout', async () => {
  const repo = newRepo({ ok: { 'model.onnx': scaleModel } });
  // Explicit model control starts with no model loaded, as Triton's: `ok` is named to serve on.
  const cli = run([
    'serve',
    '--model-repository',
    repo,
    '--model-control',
    'explicit',
    '--load-model',
    'ok',
    '--port',
    '0',
    '--no-grpc',
    '--threads',
    '1',
    '--dashboard',
    'off',
  ]);
  const url = await cli.url;
  folder(repo, 'spin', {
    'model.mjs': 'while (true) {}\nexport const inputs = [];',
    'config.json': JSON.stringify({ loadTimeout: 1_500 }),
  });
  const loading = load(url, 'spin');
  await new Promise((resolve) => setTimeout(resolve, 300));
  const started = performance.now();
  const live = await fetch(`${url}/v2/health/live`, { signal: AbortSignal.timeout(1_000) });
  expect(live.status).toBe(200);
  expect(performance.now() - started).toBeLessThan(1_000);
  const failed = await loading;
  const reason = `spin did not load within 1500 ms (\`loadTimeout\`) while its exports were read from ${join(repo, 'spin', 'model.mjs')}; its threads were stopped`;
  expect(failed).toMatchObject({ status: 400, error: `Model \`spin\` failed to load: ${reason}` });
  expect(failed.ms).toBeLessThan(1_500 + 2_000);
  expect((await index(url)).spin).toEqual({ state: 'UNAVAILABLE', reason });
  // And the other model serves on.
  expect(
    (
      await postJson(
        `${url}/v2/models/ok/infer`,
        JSON.stringify({ inputs: [{ name: 'x', shape: [1, 2], datatype: 'FP32', data: [3, 4] }] }),
      )
    ).body.outputs[0].data,
  ).toEqual([3, 4]);
});
