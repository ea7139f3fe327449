import { getEventListeners } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { afterAll, afterEach, beforeAll, expect, test } from 'vitest';
import { type RunningServer, startServer } from '@batched-fn/server';
import { RequestSignals, serveModelCalls } from '../src/formats/model-calls-host.js';
import { ModelsClient } from '../src/formats/model-calls.worker.js';
import type { ModelCalls } from '../src/model/model-calls.js';
import type { InferResult, Tensor } from '../src/model/tensor.js';
import { InProcessCalls } from '../src/protocol/model-calls.js';
import { ModelRegistry } from '../src/repository/registry.js';
import { jsonRequest, postJson } from './helpers.js';
import { scratchDir } from './scratch.js';

// An attack pass on models calling models (issue #24): each test is a regression test for one finding,
// checked failing before its fix. The FINDING comments describe each fault as it was found.

const open: MessagePort[] = [];
afterEach(() => {
  for (const port of open.splice(0)) port.close();
});

/** serveModelCalls on one end of a channel, the "worker" on the other, with `calls` as the server. */
function host(calls: ModelCalls, name = 'caller') {
  const requests = new RequestSignals();
  const { port1, port2 } = new MessageChannel();
  open.push(port1, port2);
  serveModelCalls(port1, calls, { name, declared: undefined, requests });
  const answers: any[] = [];
  port2.on('message', (message) => answers.push(message));
  return { answers, worker: port2, requests };
}

const x = (): Tensor => ({ datatype: 'FP32', shape: [1, 4], data: new Float32Array(4) });

// FINDING 1 (high): two calls whose answers share one buffer. A batch's results may alias (a JS model
// that answers one typed array for every request of its batch: structured clone keeps the aliasing,
// and the core's transfer list is a Set). model-calls-host.ts:107 transfers the first call's answer
// whole (model-calls-wire.ts:170 sees a whole buffer), which detaches the other call's; its
// postMessage then throws DataCloneError, which model-calls-host.ts:66-69 swallows as "the worker is
// gone". The second call is never answered: its `timeout` does not help (the target call already
// succeeded), the worker's batch waits forever, the model's worker is stuck for good and
// server.close() hangs (see the end-to-end test below).
test('finding 1 (unit): two calls answered with one shared buffer are both answered', async () => {
  const shared = new Float32Array([7, 7, 7, 7]);
  const { answers, worker } = host({
    infer: async () => ({ y: { datatype: 'FP32', shape: [1, 4], data: shared } }) as InferResult,
    generate: async function* () {},
  });
  worker.postMessage({ type: 'infer', id: 1, model: 'const', inputs: { x: x() }, options: {} });
  worker.postMessage({ type: 'infer', id: 2, model: 'const', inputs: { x: x() }, options: {} });
  await new Promise((resolve) => setTimeout(resolve, 200));
  expect(answers.map((a) => [a.id, a.type, Array.from(a.outputs?.y?.data ?? [])])).toEqual([
    [1, 'result', [7, 7, 7, 7]],
    [2, 'result', [7, 7, 7, 7]],
  ]);
});

// FINDING 2 (medium): RequestSignals.all (model-calls-host.ts:45) adds an `abort` listener to every
// origin request's signal for each call, and nothing removes it when the call settles (nor the one
// AbortSignal.any adds, model-calls-host.ts:128). A request whose handler makes N calls holds N
// listeners and N controllers until it ends: 11 calls print MaxListenersExceededWarning on the
// server's stderr ("Possible EventTarget memory leak detected"), and a long-running request that calls
// in a loop grows without bound.
test('finding 2: a call that has settled leaves no listener on the signal of the request it served', async () => {
  const { answers, worker, requests } = host({
    infer: async () => ({ y: x() }),
    generate: async function* () {},
  });
  const client = new AbortController();
  const origin = requests.register(client.signal);
  for (let id = 1; id <= 20; id++) {
    worker.postMessage({
      type: 'infer',
      id,
      model: 'double',
      inputs: { x: x() },
      options: {},
      caller: { chain: ['caller'], origins: [origin.id] },
    });
    await expect.poll(() => answers.length).toBe(id);
  }
  expect(answers.every((a) => a.type === 'result')).toBe(true);
  expect(getEventListeners(client.signal, 'abort')).toHaveLength(0);
  origin.release();
});

// FINDING 3 (low): a chain longer than MAX_CHAIN (32) is cut to its first 32 names
// (model-calls-wire.ts:74), not refused, though MAX_CHAIN says "a longer chain is a runaway". The names
// cut are the innermost callers, so a call back to one of them is no longer seen as a cycle: it waits
// on itself until a deadline (if any) instead of ERR_MODEL_CYCLE. Suggested: refuse a chain longer
// than MAX_CHAIN (a problem answered with the id), or keep the last names rather than the first.
test('control for finding 3: a call back into a caller in a chain of 11 is a cycle', async () => {
  const { answers, worker } = host(new InProcessCalls(), 'm10');
  const chain = Array.from({ length: 10 }, (_, i) => `m${i}`);
  worker.postMessage({ type: 'infer', id: 1, model: 'm5', inputs: { x: x() }, options: {}, caller: { chain } });
  await expect.poll(() => answers.length).toBe(1);
  expect(answers[0].error.fields.code).toBe('ERR_MODEL_CYCLE');
});

test('finding 3: a chain longer than 32 models is refused, not cut (a cut chain would hide a cycle)', async () => {
  // InProcessCalls with no front: a cycle is refused before anything else; any other call says "starting".
  const { answers, worker } = host(new InProcessCalls(), 'm39');
  const chain = Array.from({ length: 39 }, (_, i) => `m${i}`);
  worker.postMessage({ type: 'infer', id: 1, model: 'm35', inputs: { x: x() }, options: {}, caller: { chain } });
  await expect.poll(() => answers.length).toBe(1);
  expect(answers[0].type).toBe('error');
  expect(answers[0].error.message).toBe(
    'models call: the call is made on behalf of 39 models, more than the 32 a chain may hold',
  );
});

// FINDING 4 (low): `models.infer(name, inputs, null)` rejects with "Cannot read properties of null
// (reading 'signal')": model-calls.worker.ts:106 reads options.signal before wireOptions checks it.
test('finding 4: options given as null are refused by name', async () => {
  const { port1, port2 } = new MessageChannel();
  open.push(port1, port2);
  const models = new ModelsClient(port1, false);
  await expect(models.infer('double', { x: x() }, null as never)).rejects.toThrow(/options must be an object/);
});

// FINDING 6 (low): an input with no elements (shape [0, 4], an empty Float32Array) is refused in the
// worker as "buffer was moved by an earlier call": model-calls.worker.ts:44 takes any size above 0 in
// the shape for "has elements", where it means the product of the sizes (elementCount). The call
// should reach the server (which answers whether 0 rows is allowed) with no word about moved buffers.
test('finding 6: an input with no elements is not called moved', async () => {
  const { port1, port2 } = new MessageChannel();
  open.push(port1, port2);
  const sent: any[] = [];
  port2.on('message', (message) => sent.push(message));
  const models = new ModelsClient(port1, false);
  const call = models.infer('double', { x: { datatype: 'FP32', shape: [0, 4], data: new Float32Array(0) } });
  call.catch(() => {});
  const refused = await Promise.race([
    call.then(
      () => '',
      (e: Error) => e.message,
    ),
    new Promise((r) => setTimeout(r, 100, '')),
  ]);
  expect(refused).not.toMatch(/moved/);
  expect(sent.map((m) => m.type)).toEqual(['infer']);
});

// FINDING 7 (medium): the cycle check at load walks every path, not every model. #refuseCycle
// (repository/registry.ts:262-281) is a DFS with a path but no set of models already cleared, so on
// dependencies with diamonds (a model calling two that both call the next two...) it is exponential:
// 16 layers of 2 models (31 loaded with the first) read `dependencies` 263,128 times; 24 layers
// (47 models) block the event loop for ~16 s in one load, and each layer more doubles it, the whole
// server frozen (health, every request). Suggested: a DFS that marks models done (white/grey/black,
// as ensemble-config.ts's step check does): O(models + calls). Counted, not timed: a walk that
// visits each model once reads a few V² times at most (the registry's #follow adds V per change).
test('finding 7: the load-time cycle check visits each model once, not each path', async () => {
  const layers = 16;
  const names = Array.from({ length: layers }, (_, i) => [`a_${i}`, `b_${i}`]).flat();
  let reads = 0;
  const model = (name: string) => {
    const i = Number(name.slice(2));
    const calls = i + 1 < layers ? [`a_${i + 1}`, `b_${i + 1}`] : [];
    const batcher = { ready: async () => {}, destroy() {}, close: async () => {}, configure() {} };
    return {
      name,
      version: '1',
      signature: { inputs: [], outputs: [] },
      batcher,
      get dependencies() {
        reads++;
        return calls;
      },
    };
  };
  const loader = Object.assign(async (name: string) => model(name) as never, {
    has: (name: string) => names.includes(name),
    list: () => names,
  });
  const registry = new ModelRegistry(loader);
  await registry.load('a_0');
  const loaded = registry.entries().length;
  expect(loaded).toBe(2 * layers - 1);
  expect(reads).toBeLessThan(20 * loaded * loaded);
});

// FINDING 8 (medium): a model two dependents share is loaded twice when both reach it at once. An
// auto-load starts when a dependency has no entry yet (repository/registry.ts:153-156), and the entry
// appears only when that load's turn comes (in #serially, a microtask later): two dependents built in
// the same tick (ensembles build synchronously) both start a load of it, and the second is a full
// reload, a second instance built and swapped in. Seen for real: ensemble `top` → ensembles `e1`, `e2`
// → JS model `base` loads `base` twice (its workers and `context()` run twice, two "successfully
// loaded" lines); an ONNX step would build two sessions. Suggested: join a load already under way
// (skip deps with a load queued in #busy, and await it) instead of queueing another.
test('finding 8: a dependency two dependents share is loaded once', async () => {
  const graph: Record<string, string[]> = { top: ['l', 'r'], l: ['base'], r: ['base'], base: [] };
  const built: string[] = [];
  const batcher = { ready: async () => {}, destroy() {}, close: async () => {}, configure() {} };
  const loader = Object.assign(
    async (name: string) => {
      built.push(name);
      return {
        name,
        version: '1',
        signature: { inputs: [], outputs: [] },
        batcher,
        dependencies: graph[name],
      } as never;
    },
    { has: (name: string) => name in graph, list: () => Object.keys(graph) },
  );
  const registry = new ModelRegistry(loader);
  await registry.load('top');
  expect(registry.entries().map((entry) => [entry.name, entry.state])).toEqual([
    ['base', 'READY'],
    ['l', 'READY'],
    ['r', 'READY'],
    ['top', 'READY'],
  ]);
  expect(built.sort()).toEqual(['base', 'l', 'r', 'top']);
});

// FINDING 1, end to end: a JS model whose two concurrent calls land in one batch of a model that
// answers one array for the whole batch. The call's own signal (3 s) is the only thing that frees
// the caller here; without it the caller's worker is stuck for good (its next request waits until
// its deadline, and server.close() never returns).
let repo = '';
let server: RunningServer | undefined;

function folder(name: string, files: Record<string, string>): void {
  mkdirSync(join(repo, name), { recursive: true });
  for (const [file, content] of Object.entries(files)) writeFileSync(join(repo, name, file), content);
}

beforeAll(async () => {
  repo = scratchDir('bfn-bls-attack-');
  folder('constant', {
    'model.mjs': `
export const inputs = [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }];
export const outputs = [{ name: 'y', datatype: 'FP32', shape: [-1, 4] }];
export async function handler(requests) {
  const y = new Float32Array([7, 7, 7, 7]);
  return requests.map(() => ({ y: { data: y } }));
}`,
    'config.json': JSON.stringify({ maxBatchSize: 8, maxDelay: 100 }),
  });
  folder('pair', {
    'model.mjs': `
export const calls = ['constant'];
export const inputs = [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }];
export const outputs = [{ name: 'y', datatype: 'FP32', shape: [-1, 4] }];
export async function context(config, { models }) { return { models }; }
export async function handler(requests, { models }) {
  return Promise.all(requests.map(async () => {
    const signal = AbortSignal.timeout(3000);
    const x = () => ({ x: { datatype: 'FP32', shape: [1, 4], data: new Float32Array(4) } });
    const call = () => models.infer('constant', x(), { signal });
    const [a, b] = await Promise.all([call(), call()]);
    return { y: { data: Float32Array.from(a.y.data, (v, i) => v + b.y.data[i]) } };
  }));
}`,
    'config.json': JSON.stringify({ maxBatchSize: 8, maxDelay: 0 }),
  });
  server = await startServer({ modelRepository: repo, port: 0, host: '127.0.0.1', workers: 1 });
}, 60_000);

afterAll(async () => {
  await server?.close();
});

test('finding 1 (end to end): two calls batched in a model that answers one array for its batch', async () => {
  const url = (server as RunningServer).url;
  const answer = await postJson(`${url}/v2/models/pair/infer`, jsonRequest('x', [1, 4], 'FP32', [0, 0, 0, 0]));
  expect(answer.body.error).toBeUndefined();
  expect(answer.status).toBe(200);
  expect(answer.body.outputs[0].data).toEqual([14, 14, 14, 14]);
});

// FINDING 5 (medium): a model whose `context()` calls a model its `calls` export declares cannot be
// loaded unless that model is loaded already. The registry loads declared dependencies only after the
// loader has built the model (repository/registry.ts:153-156), and building a JS model starts its
// workers, whose `context()` runs then (formats/js-model.ts servedBatcher, js-model.worker.ts context):
// the call finds no model, the load fails (400), and the dependency is never loaded either. At startup
// (every model loaded at once) the same model is UNAVAILABLE or READY by the order of the loads. The
// message contradicts itself: "'dep' is not found (models here: dep, warm)". docs/server.md says
// declared calls "are loaded with it". Suggested: read the exports (and `calls`) first, load the
// missing dependencies, then start the workers.
let explicit: RunningServer | undefined;
afterAll(async () => {
  await explicit?.close();
});

test('finding 5: a model that calls a declared dependency from context() loads it first', async () => {
  const dir = scratchDir('bfn-bls-attack-warm-');
  const put = (name: string, files: Record<string, string>): void => {
    mkdirSync(join(dir, name), { recursive: true });
    for (const [file, content] of Object.entries(files)) writeFileSync(join(dir, name, file), content);
  };
  put('dep', {
    'model.mjs': `
export const inputs = [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }];
export const outputs = [{ name: 'y', datatype: 'FP32', shape: [-1, 4] }];
export function handler(requests) { return requests.map((r) => ({ y: { data: r.inputs.x.data } })); }`,
    'config.json': JSON.stringify({ maxBatchSize: 8, maxDelay: 0 }),
  });
  put('warm', {
    'model.mjs': `
export const calls = ['dep'];
export const inputs = [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }];
export const outputs = [{ name: 'y', datatype: 'FP32', shape: [-1, 4] }];
export async function context(config, { models }) {
  // A warm-up call at load, to a model it declares.
  await models.infer('dep', { x: { datatype: 'FP32', shape: [1, 4], data: new Float32Array(4) } });
  return { models };
}
export function handler(requests) { return requests.map((r) => ({ y: { data: r.inputs.x.data } })); }`,
    'config.json': JSON.stringify({ maxBatchSize: 8, maxDelay: 0 }),
  });
  explicit = await startServer({
    modelRepository: dir,
    port: 0,
    host: '127.0.0.1',
    workers: 1,
    modelControl: 'explicit',
    loadModel: [],
  });
  const load = await fetch(`${explicit.url}/v2/repository/models/warm/load`, { method: 'POST' });
  expect(await load.text()).toBe('{}');
  expect(load.status).toBe(200);
  const index = (await (await fetch(`${explicit.url}/v2/repository/index`, { method: 'POST' })).json()) as any[];
  expect(index.filter((m) => m.name === 'dep' || m.name === 'warm').map((m) => [m.name, m.state])).toEqual([
    ['dep', 'READY'],
    ['warm', 'READY'],
  ]);
});
