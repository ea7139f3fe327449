import { cpSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { type RunningServer, startServer } from '@batched-fn/server';
import { jsonRequest, postJson } from './helpers.js';
import { scratchDir } from './scratch.js';

// Models that call models (Triton's BLS): a JS model's `context(config, { models })` gets the server's
// other models, and each call is a request to the target's own batcher, in process.
let repo = '';
let server: RunningServer | undefined;

function folder(name: string, files: Record<string, string>): void {
  mkdirSync(join(repo, name), { recursive: true });
  for (const [file, content] of Object.entries(files)) writeFileSync(join(repo, name, file), content);
}

const FOUR = "[{ name: 'x', datatype: 'FP32', shape: [-1, 4] }]";

/** y = 2x, waiting `ms` per run: the target every caller here calls. */
const double = (ms: number, config: object = {}) => ({
  'model.mjs': `
export const inputs = ${FOUR};
export const outputs = [{ name: 'y', datatype: 'FP32', shape: [-1, 4] }];
export async function handler(requests) {
  if (${ms} > 0) await new Promise((resolve) => setTimeout(resolve, ${ms}));
  return requests.map((r) => ({ y: { data: Float32Array.from(r.inputs.x.data, (v) => v * 2) } }));
}`,
  'config.json': JSON.stringify({ maxBatchSize: 16, maxDelay: 30, ...config }),
});

/** The issue's contract: each request of the batch calls `target`; it also tells whether its buffers moved. */
const caller = (target: string, options: { declared?: string[]; callOptions?: string; config?: object } = {}) => ({
  'model.mjs': `
${options.declared === undefined ? '' : `export const calls = ${JSON.stringify(options.declared)};`}
export const inputs = ${FOUR};
export const outputs = [
  { name: 'y', datatype: 'FP32', shape: [-1, 4] },
  { name: 'moved', datatype: 'INT32', shape: [-1, 2] },
];
export async function context(config, { models }) { return { models }; }
export async function handler(requests, ctx) {
  return Promise.all(requests.map(async (r) => {
    const x = r.inputs.x;
    const out = await ctx.models.infer('${target}', { x }, ${options.callOptions ?? '{}'});
    const y = out.y.data;
    // Inputs are transferred (the caller's buffer is detached), and the answer's buffer holds this answer only.
    const moved = [x.data.buffer.byteLength === 0 ? 1 : 0, y.buffer.byteLength === y.byteLength ? 1 : 0];
    return { y: { data: y }, moved: { shape: [x.shape[0], 2], data: Array.from({ length: x.shape[0] }, () => moved).flat() } };
  }));
}`,
  'config.json': JSON.stringify({ maxBatchSize: 16, maxDelay: 50, ...(options.config ?? {}) }),
});

/** Asks generator `target` for text (models.generate, with `callOptions`) and answers it whole, with its chunk count. */
const writer = (target: string, callOptions = '{}') => ({
  'model.mjs': `
export const calls = ['${target}'];
export const inputs = [{ name: 'prompt', datatype: 'BYTES', shape: [1] }];
export const outputs = [{ name: 'text', datatype: 'BYTES', shape: [1] }, { name: 'chunks', datatype: 'INT32', shape: [1] }];
export async function context(config, { models }) { return { models }; }
export async function handler(requests, { models }) {
  return Promise.all(requests.map(async (r) => {
    let text = '';
    let chunks = 0;
    const request = { text_input: r.inputs.prompt.data[0], parameters: { max_tokens: 5, upper: true } };
    for await (const chunk of models.generate('${target}', request, ${callOptions})) {
      text += chunk.text_output;
      chunks++;
    }
    return { text: { data: [text] }, chunks: { data: [chunks] } };
  }));
}`,
  'config.json': JSON.stringify({ maxBatchSize: 0 }),
});

beforeAll(async () => {
  repo = scratchDir('bfn-bls-');
  folder('double', double(0));
  folder('slow', double(600, { maxBatchSize: 1, maxDelay: 0 }));
  folder('caller', caller('double', { declared: ['double'] }));
  folder('free-caller', caller('slow'));
  folder('deadline-caller', caller('slow'));
  folder('abandoned-caller', caller('slow'));
  folder('misuser', caller('echo'));
  // A declared dependency that cannot load (yet).
  folder('later', { 'model.mjs': 'throw new Error("not written yet");' });
  folder('needs-later', caller('later', { declared: ['later'] }));
  folder('undeclared', caller('mlp-nowhere', { declared: ['double'] }));
  folder('abort-caller', caller('slow', { callOptions: '{ signal: AbortSignal.timeout(50) }' }));
  // A target that reads its request's parameters (y = x * scale), and callers that pass them.
  folder('scaled', {
    'model.mjs': `
export const inputs = ${FOUR};
export const outputs = [{ name: 'y', datatype: 'FP32', shape: [-1, 4] }];
export function handler(requests) {
  return requests.map((r) => ({ y: { data: Float32Array.from(r.inputs.x.data, (v) => v * (r.parameters.scale ?? 1)) } }));
}`,
    'config.json': JSON.stringify({ maxBatchSize: 16, maxDelay: 0 }),
  });
  folder('scale-caller', caller('scaled', { callOptions: '{ parameters: { scale: 3 } }' }));
  folder('bad-parameters-caller', caller('scaled', { callOptions: '{ parameters: { scale: [3] } }' }));
  // A cycle declared: refused at load.
  folder('ping', caller('pong', { declared: ['pong'] }));
  folder('pong', caller('ping', { declared: ['ping'] }));
  // A cycle not declared: found when a call makes it.
  folder('tick', caller('tock'));
  folder('tock', caller('tick'));
  // A generator, and a model that asks it for text (models.generate) and answers it whole.
  cpSync(new URL('./fixtures/generators/echo/', import.meta.url), join(repo, 'echo'), { recursive: true });
  folder('writer', writer('echo'));
  // The same generator with two priority levels, and a writer that asks it for a level it lacks.
  cpSync(new URL('./fixtures/generators/echo/', import.meta.url), join(repo, 'ranked-echo'), { recursive: true });
  writeFileSync(
    join(repo, 'ranked-echo', 'config.json'),
    JSON.stringify({ maxActive: 4, maxTokens: 100, defaultMaxTokens: 50, priorityLevels: 2 }),
  );
  folder('ranked-writer', writer('ranked-echo', '{ priority: 3 }'));
  server = await startServer({
    modelRepository: repo,
    port: 0,
    host: '127.0.0.1',
    workers: 1,
    modelControl: 'explicit',
  });
}, 60_000);

afterAll(async () => {
  await server?.close();
});

const url = () => (server as RunningServer).url;
const infer = (model: string, rows: number, extra: Record<string, unknown> = {}) =>
  postJson(
    `${url()}/v2/models/${model}/infer`,
    jsonRequest(
      'x',
      [rows, 4],
      'FP32',
      Array.from({ length: rows * 4 }, (_, i) => i),
      extra,
    ),
  );
const stats = async (name: string) =>
  ((await (await fetch(`${url()}/v2/models/${name}/stats`)).json()) as { model_stats: any[] }).model_stats[0];

test('the calls of one batch are batched in the target: fewer runs there than calls, and every answer right', async () => {
  const before = await stats('double');
  const answers = await Promise.all(Array.from({ length: 8 }, () => infer('caller', 1)));
  for (const answer of answers) {
    expect(answer.status).toBe(200);
    expect(answer.body.outputs[0].data).toEqual([0, 2, 4, 6]);
    // Transferred both ways, never copied twice.
    expect(answer.body.outputs[1].data).toEqual([1, 1]);
  }
  const after = await stats('double');
  const calls = after.inference_count - before.inference_count;
  const runs = after.execution_count - before.execution_count;
  expect(calls).toBe(8);
  expect(runs).toBeLessThan(calls);
  // Counted as requests of the target, under protocol `internal`.
  const metrics = await (await fetch(`${url()}/metrics`)).text();
  expect(metrics).toMatch(/batched_fn_requests_total\{model="double",protocol="internal",status="200"\} 8/);
});

test('a declared cycle is refused at load, naming it; the model on the other side waits for it', async () => {
  const index = (await (await fetch(`${url()}/v2/repository/index`, { method: 'POST' })).json()) as any[];
  const ping = index.find((m) => m.name === 'ping');
  const pong = index.find((m) => m.name === 'pong');
  expect(ping.state).toBe('UNAVAILABLE');
  expect(ping.reason).toBe('Model call cycle: `ping` → `pong` → `ping`');
  expect(pong.state).toBe('UNAVAILABLE');
  expect(pong.reason).toMatch(/^`ping`, which it calls, is UNAVAILABLE \(Model call cycle/);
});

test('a cycle found at run time is a clear error, not a deadlock', async () => {
  const answer = await infer('tick', 1);
  expect(answer.status).toBe(500);
  expect(answer.body.error).toContain('Model call cycle: `tick` → `tock` → `tick`');
});

test('a model may call only what its `calls` export declares', async () => {
  const answer = await infer('undeclared', 1);
  expect(answer.status).toBe(400);
  expect(answer.body.error).toContain('`undeclared` may call only the models its `calls` export names (`double`)');
});

test("the caller's deadline travels with its calls: a queued call leaves the target's queue when it passes", async () => {
  // `slow` runs one request at a time for 600 ms: the first call holds it, the second queues behind it.
  const blocker = infer('free-caller', 1);
  await new Promise((resolve) => setTimeout(resolve, 100));
  const before = await stats('slow');
  // 200 ms (the protocol counts µs): its call to `slow` must give up in the queue, not run after the blocker.
  const late = await infer('deadline-caller', 1, { parameters: { timeout: 200_000 } });
  expect(late.status).toBe(504);
  expect((await blocker).status).toBe(200);
  await new Promise((resolve) => setTimeout(resolve, 700));
  const after = await stats('slow');
  expect(after.execution_count - before.execution_count).toBe(1);
  expect(after.inference_stats.fail.count - before.inference_stats.fail.count).toBe(1);
});

test("a client that goes away takes the calls made for it along: they leave the target's queue", async () => {
  const blocker = infer('free-caller', 1);
  await new Promise((resolve) => setTimeout(resolve, 100));
  const before = await stats('slow');
  const hangUp = new AbortController();
  const abandoned = fetch(`${url()}/v2/models/abandoned-caller/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: jsonRequest('x', [1, 4], 'FP32', [0, 1, 2, 3]),
    signal: hangUp.signal,
  });
  setTimeout(() => hangUp.abort(), 150);
  await expect(abandoned).rejects.toThrow();
  expect((await blocker).status).toBe(200);
  await new Promise((resolve) => setTimeout(resolve, 700));
  const after = await stats('slow');
  // Only the blocker ran: the abandoned request's call left the queue instead of running for nobody.
  expect(after.execution_count - before.execution_count).toBe(1);
});

test("a call's own signal gives it up in the target's queue", async () => {
  const blocker = infer('free-caller', 1);
  await new Promise((resolve) => setTimeout(resolve, 100));
  const answer = await infer('abort-caller', 1);
  expect(answer.status).toBe(500);
  expect(answer.body.error).toMatch(/abort|timeout/i);
  expect((await blocker).status).toBe(200);
});

test('the target unloaded: a call in flight finishes (unloads drain); the next is a clear 503 naming it', async () => {
  const inFlight = infer('free-caller', 1);
  await new Promise((resolve) => setTimeout(resolve, 100));
  const unloading = fetch(`${url()}/v2/repository/models/slow/unload`, { method: 'POST' });
  expect((await inFlight).status).toBe(200);
  expect((await unloading).status).toBe(200);
  const after = await infer('free-caller', 1);
  expect(after.status).toBe(503);
  expect(after.body.error).toBe(
    "Request for unknown model: 'slow' has no available versions (it is UNAVAILABLE: unloaded)",
  );
});

test("models.generate: text from a generator, chunk by chunk, under the server's max_tokens", async () => {
  const answer = await postJson(
    `${url()}/v2/models/writer/infer`,
    jsonRequest('prompt', [1], 'BYTES', ['hello world']),
  );
  expect(answer.status).toBe(200);
  expect(answer.body.outputs).toEqual([
    { name: 'text', datatype: 'BYTES', shape: [1], data: ['HELLO'] },
    { name: 'chunks', datatype: 'INT32', shape: [1], data: [5] },
  ]);
});

test("models.generate takes a priority level as a client's request does: one the generator lacks is a 400 naming its levels", async () => {
  const answer = await postJson(
    `${url()}/v2/models/ranked-writer/infer`,
    jsonRequest('prompt', [1], 'BYTES', ['hello world']),
  );
  expect(answer.status).toBe(400);
  expect(answer.body.error).toContain(
    'parameters.priority is 3, but model `ranked-echo` has priority levels 1 to 2 (1 is the highest; 0 means its default level, 2)',
  );
});

test("models.infer passes `parameters` as the target request's own; a value that is not a parameter type is a 400", async () => {
  const answer = await infer('scale-caller', 1);
  expect(answer.status).toBe(200);
  expect(answer.body.outputs[0].data).toEqual([0, 3, 6, 9]);
  const refused = await infer('bad-parameters-caller', 1);
  expect(refused.status).toBe(400);
  expect(refused.body.error).toContain(
    "parameters.scale must be a string, a finite number or a boolean (Triton's parameter types), got 3",
  );
});

test('models.infer on a generator says to use models.generate', async () => {
  const answer = await infer('misuser', 1);
  expect(answer.status).toBe(400);
  expect(answer.body.error).toContain('`echo` is a generator: call it with models.generate, not models.infer');
});

test('a model whose declared call cannot load fails its load with the reason, and serves once that model loads', async () => {
  const load = (name: string) => fetch(`${url()}/v2/repository/models/${name}/load`, { method: 'POST' });
  const refused = await load('needs-later');
  expect(refused.status).toBe(400);
  expect(((await refused.json()) as { error: string }).error).toMatch(
    /`needs-later` cannot serve until the models it calls can: `later`, which it calls, is UNAVAILABLE \(.*not written yet/,
  );
  expect((await fetch(`${url()}/v2/models/needs-later/ready`)).status).toBe(503);
  folder('later', double(0));
  expect((await load('later')).status).toBe(200);
  expect((await fetch(`${url()}/v2/models/needs-later/ready`)).status).toBe(200);
  const answer = await infer('needs-later', 1);
  expect(answer.status).toBe(200);
  expect(answer.body.outputs[0].data).toEqual([0, 2, 4, 6]);
});
