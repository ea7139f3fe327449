import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterEach, expect, test } from 'vitest';
import { batchedFn } from 'batched-fn';
import {
  type InferItem,
  type InferResult,
  type RunningServer,
  type ServedModel,
  type ServedModelConfig,
  serveModel,
  ServerMetrics,
  startServer,
} from '@batched-fn/server';
import { grpcClient } from './grpc-client.js';
import { jsonRequest, postJson } from './helpers.js';
import { row16, tritonRepository } from './triton-helpers.js';

// Triton's schedule-policy extension: `priority` is a level (1 highest, 0 the model's default) and
// `timeout` is in microseconds, on REST and gRPC alike.
let server: RunningServer | undefined;
let client: ReturnType<typeof grpcClient> | undefined;
afterEach(async () => {
  client?.close();
  await server?.close();
  server = client = undefined;
});

const until = async (condition: () => boolean) => {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 2));
};

/** A model that records each batch's input values and runs a batch only when the test releases it. */
async function start(config: ServedModelConfig | undefined, maxBatchSize = 1) {
  const gates: (() => void)[] = [];
  const batches: number[][] = [];
  const metrics = new ServerMetrics({ defaultMetrics: false });
  const batcher = batchedFn<InferItem, InferResult>({
    handler: async (batch) => {
      batches.push(batch.map((item) => item.inputs.x?.data[0] as number));
      await new Promise<void>((resolve) => gates.push(resolve));
      return batch.map((item) => ({
        y: { datatype: 'FP32', shape: [item.rows, 1], data: new Float32Array(item.rows) },
      }));
    },
    maxBatchSize,
    maxDelay: 0,
    channelCap: 16,
    size: (item) => item.rows,
    name: 'held',
    onBatch: metrics.onBatch,
  });
  const model: ServedModel = {
    name: 'held',
    version: '1',
    platform: 'test',
    signature: {
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 1] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 1] }],
    },
    maxBatchSize,
    batcher,
    infer: (item, callOptions) => batcher(item, callOptions),
    ...(config === undefined ? {} : { config }),
  };
  metrics.track(model);
  server = await serveModel(model, metrics, { port: 0, grpcPort: 0 });
  client = grpcClient(server.grpcUrl as string);
  const url = `${server.url}/v2/models/held/infer`;
  /** Releases batches until every call has settled. */
  const drain = async (calls: Promise<unknown>[]) => {
    let settled = false;
    const all = Promise.allSettled(calls).then((results) => {
      settled = true;
      return results;
    });
    while (!settled) {
      gates.shift()?.();
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    return all;
  };
  return { model, batches, running: () => gates.length, url, client, drain };
}

const rest = (value: number, parameters: Record<string, unknown> = {}) =>
  jsonRequest('x', [1, 1], 'FP32', [value], { parameters });
const grpc = (value: number, parameters: Record<string, unknown> = {}) => ({
  model_name: 'held',
  inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1], contents: { fp32_contents: [value] } }],
  parameters,
});

test('REST: behind a held batch, level 2 then level 1 are sent, and level 1 runs first', async () => {
  const held = await start({ priorityLevels: 2 });
  const first = postJson(held.url, rest(0));
  await until(() => held.running() === 1);
  const low = postJson(held.url, rest(2, { priority: 2 }));
  await until(() => held.model.batcher.stats.queued === 1);
  const high = postJson(held.url, rest(1, { priority: 1 }));
  await until(() => held.model.batcher.stats.queued === 2);
  const results = await held.drain([first, low, high]);
  expect(results.map((r) => (r as PromiseFulfilledResult<{ status: number }>).value.status)).toEqual([200, 200, 200]);
  expect(held.batches).toEqual([[0], [1], [2]]);
});

test('gRPC: behind a held batch, level 2 then level 1 are sent, and level 1 runs first (int64 and uint64 parameters)', async () => {
  const held = await start({ priorityLevels: 2 });
  const first = held.client.call('ModelInfer', grpc(0));
  await until(() => held.running() === 1);
  const low = held.client.call('ModelInfer', grpc(2, { priority: { int64_param: 2 } }));
  await until(() => held.model.batcher.stats.queued === 1);
  const high = held.client.call('ModelInfer', grpc(1, { priority: { uint64_param: 1 } }));
  await until(() => held.model.batcher.stats.queued === 2);
  const results = await held.drain([first, low, high]);
  expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled']);
  expect(held.batches).toEqual([[0], [1], [2]]);
});

test("0 or no priority runs at the model's default level: between the levels above and below it", async () => {
  const held = await start({ priorityLevels: 3, defaultPriorityLevel: 2 });
  const first = postJson(held.url, rest(0));
  await until(() => held.running() === 1);
  const calls = [
    postJson(held.url, rest(3, { priority: 3 })),
    postJson(held.url, rest(20, { priority: 0 })),
    postJson(held.url, rest(21)),
    postJson(held.url, rest(1, { priority: 1 })),
  ];
  for (let queued = 1; queued <= calls.length; queued++) await until(() => held.model.batcher.stats.queued >= queued);
  await held.drain([first, ...calls]);
  expect(held.batches).toEqual([[0], [1], [20], [21], [3]]);
});

test('without priority levels, any level runs ahead of requests that set none (levels are unbounded)', async () => {
  const held = await start(undefined);
  const first = postJson(held.url, rest(0));
  await until(() => held.running() === 1);
  const calls = [
    postJson(held.url, rest(10)),
    postJson(held.url, rest(1000, { priority: 1000 })),
    postJson(held.url, rest(7, { priority: 7 })),
  ];
  for (let queued = 1; queued <= calls.length; queued++) await until(() => held.model.batcher.stats.queued >= queued);
  await held.drain([first, ...calls]);
  expect(held.batches).toEqual([[0], [7], [1000], [10]]);
});

test('a level the model does not have is a 400 (gRPC INVALID_ARGUMENT), before anything is queued', async () => {
  const held = await start({ priorityLevels: 3 });
  const message =
    'parameters.priority is 4, but model `held` has priority levels 1 to 3 (1 is the highest; 0 means its default level, 3)';
  expect(await postJson(held.url, rest(1, { priority: 4 }))).toMatchObject({ status: 400, body: { error: message } });
  expect(await held.client.fails('ModelInfer', grpc(1, { priority: { int64_param: 4 } }))).toEqual({
    code: status.INVALID_ARGUMENT,
    details: message,
  });
  expect(held.model.batcher.stats.calls).toBe(0);
});

test("a repository model's config.json sets its levels: a level above them is a 400, naming the model's", async () => {
  const repo = tritonRepository();
  writeFileSync(join(repo, 'simple', 'config.json'), JSON.stringify({ priorityLevels: 2, defaultPriorityLevel: 1 }));
  server = await startServer({ modelRepository: repo, port: 0 });
  const body = (priority: number) =>
    JSON.stringify({
      inputs: [
        { name: 'INPUT0', shape: [1, 16], datatype: 'INT32', data: row16(0) },
        { name: 'INPUT1', shape: [1, 16], datatype: 'INT32', data: row16(0) },
      ],
      parameters: { priority },
    });
  expect((await postJson(`${server.url}/v2/models/simple/infer`, body(2))).status).toBe(200);
  expect(await postJson(`${server.url}/v2/models/simple/infer`, body(3))).toMatchObject({
    status: 400,
    body: {
      error:
        'parameters.priority is 3, but model `simple` has priority levels 1 to 2 (1 is the highest; 0 means its default level, 1)',
    },
  });
});

test.each([
  ['a string', 'high'],
  ['a negative level', -1],
  ['a fraction', 1.5],
])('priority as %s is a 400 that says what a level is', async (_label, priority) => {
  const held = await start({ priorityLevels: 3 });
  const response = await postJson(held.url, rest(1, { priority }));
  expect(response).toMatchObject({
    status: 400,
    body: {
      error: `parameters.priority must be an integer priority level from 0 (the model's default) to 9007199254740991, 1 being the highest, got ${JSON.stringify(priority)}`,
    },
  });
});

test('timeout is in microseconds: 30000 sheds a queued REST request after 30 ms, and gRPC reads the same', async () => {
  const held = await start(undefined);
  const blocker = postJson(held.url, rest(0));
  await until(() => held.running() === 1);
  const started = performance.now();
  const shed = await postJson(held.url, rest(1, { timeout: 30_000 }));
  const elapsed = performance.now() - started;
  expect(shed).toMatchObject({ status: 504, body: { error: 'ERR_TIMEOUT: Call timed out after 30 ms' } });
  // Read as milliseconds, 30000 would have waited 30 s; as microseconds it is 30 ms (wide margins).
  expect(elapsed).toBeGreaterThanOrEqual(25);
  expect(elapsed).toBeLessThan(3_000);
  expect(await held.client.fails('ModelInfer', grpc(1, { timeout: { int64_param: 30_000 } }))).toEqual({
    code: status.DEADLINE_EXCEEDED,
    details: 'ERR_TIMEOUT: Call timed out after 30 ms',
  });
  // 50 µs, which the server used to read as 50 ms.
  expect(await postJson(held.url, rest(1, { timeout: 50 }))).toMatchObject({
    status: 504,
    body: { error: 'ERR_TIMEOUT: Call timed out after 0.05 ms' },
  });
  await held.drain([blocker]);
});

test("timeout 0 is the model's default (here none): the request waits and is served", async () => {
  const held = await start(undefined);
  const blocker = postJson(held.url, rest(0));
  await until(() => held.running() === 1);
  const waiting = postJson(held.url, rest(1, { timeout: 0 }));
  await until(() => held.model.batcher.stats.queued === 1);
  await new Promise((resolve) => setTimeout(resolve, 50));
  const results = await held.drain([blocker, waiting]);
  expect(results.map((r) => (r as PromiseFulfilledResult<{ status: number }>).value.status)).toEqual([200, 200]);
});

test('a timeout past one timer (2^31 - 1 ms) is refused, on REST and gRPC', async () => {
  const held = await start(undefined);
  const message =
    'parameters.timeout must be an integer number of microseconds from 0 to 2147483647000, got 2147483648000';
  expect(await postJson(held.url, rest(1, { timeout: 2_147_483_648_000 }))).toMatchObject({
    status: 400,
    body: { error: message },
  });
  expect(await held.client.fails('ModelInfer', grpc(1, { timeout: { int64_param: 2_147_483_648_000 } }))).toEqual({
    code: status.INVALID_ARGUMENT,
    details: message,
  });
  expect(await postJson(held.url, rest(1, { timeout: 'soon' }))).toMatchObject({
    status: 400,
    body: { error: 'parameters.timeout must be an integer number of microseconds from 0 to 2147483647000, got "soon"' },
  });
});

test('/v2 lists schedule_policy', async () => {
  const held = await start(undefined);
  expect(((await (await fetch(`${server?.url}/v2`)).json()) as any).extensions).toContain('schedule_policy');
  expect((await held.client.call('ServerMetadata')).extensions).toContain('schedule_policy');
});
