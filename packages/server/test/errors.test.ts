import { connect } from 'node:net';
import { afterEach, expect, test } from 'vitest';
import { type RunningServer, serveModel } from '@batched-fn/server';
import { gatedModel, jsonRequest, postJson } from './helpers.js';

let server: RunningServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

const ok = (rows = 1) =>
  jsonRequest(
    'x',
    [rows, 2],
    'FP32',
    Array.from({ length: rows * 2 }, () => 1),
  );

async function start(options: Parameters<typeof gatedModel>[0] = {}, serve: Parameters<typeof serveModel>[2] = {}) {
  const gated = gatedModel(options);
  server = await serveModel(gated.model, gated.metrics, { port: 0, ...serve });
  return { ...gated, infer: `${server.url}/v2/models/gated/infer` };
}

test.each([
  ['malformed JSON', '{"inputs": [', /^Malformed JSON/],
  ['not an object', '[1,2]', /^Request body must be a JSON object/],
  ['no inputs', '{}', /^Request must have a non-empty `inputs` array$/],
  ['unknown input', jsonRequest('z', [1, 2], 'FP32', [1, 1]), /^Unknown input `z`; the model's inputs are `x`$/],
  ['wrong datatype', jsonRequest('x', [1, 2], 'INT64', [1, 1]), /^Input `x` must have datatype FP32, got "INT64"$/],
  [
    'wrong rank',
    jsonRequest('x', [2], 'FP32', [1, 1]),
    /^Input `x`: shape \[2\] has 1 dimensions, the model expects 2/,
  ],
  [
    'wrong fixed dimension',
    jsonRequest('x', [1, 3], 'FP32', [1, 1, 1]),
    /^Input `x`: dimension 1 is 3, the model expects 2/,
  ],
  [
    'too few elements',
    jsonRequest('x', [2, 2], 'FP32', [1, 1, 1]),
    /^Input `x` has 3 elements, but its shape needs 4$/,
  ],
  [
    'too many elements',
    jsonRequest('x', [1, 2], 'FP32', [1, 1, 1]),
    /^Input `x` has 3 elements, but its shape needs 2$/,
  ],
  ['a string element', jsonRequest('x', [1, 2], 'FP32', [1, 'a']), /^Input `x`: element 1 is "a", not a number$/],
  ['zero rows', jsonRequest('x', [0, 2], 'FP32', []), /^Input `x` has no rows/],
  [
    'negative shape',
    jsonRequest('x', [-1, 2], 'FP32', [1, 1]),
    /^Input `x`: shape must be an array of non-negative integers/,
  ],
  [
    'missing data',
    JSON.stringify({ inputs: [{ name: 'x', shape: [1, 2], datatype: 'FP32' }] }),
    /^Input `x` has no `data`$/,
  ],
  [
    'unknown output',
    JSON.stringify({
      inputs: [{ name: 'x', shape: [1, 2], datatype: 'FP32', data: [1, 1] }],
      outputs: [{ name: 'q' }],
    }),
    /^Unknown output `q`/,
  ],
  [
    'bad timeout',
    jsonRequest('x', [1, 2], 'FP32', [1, 1], { parameters: { timeout: 'soon' } }),
    /^parameters.timeout must be an integer number of microseconds/,
  ],
  [
    'bad priority',
    jsonRequest('x', [1, 2], 'FP32', [1, 1], { parameters: { priority: 'high' } }),
    /^parameters.priority must be an integer priority level from 0 \(the model's default\) to 9007199254740991, 1 being the highest, got "high"$/,
  ],
])('400 for %s, with a message saying what was wrong', async (_label, body, message) => {
  const { infer } = await start();
  const response = await postJson(infer, body);
  expect(response.status).toBe(400);
  expect(Object.keys(response.body)).toEqual(['error']);
  expect(response.body.error).toMatch(message);
});

test("400 for an unknown model (Triton's status and words), 404 for an unknown route", async () => {
  await start();
  const model = await postJson(`${server?.url}/v2/models/nope/infer`, ok());
  expect(model).toMatchObject({
    status: 400,
    body: { error: "Request for unknown model: 'nope' is not found (models here: gated)" },
  });
  expect((await fetch(`${server?.url}/v2/models/nope`)).status).toBe(400);
  const route = await fetch(`${server?.url}/v3/whatever`);
  expect(route.status).toBe(404);
  expect(await route.json()).toEqual({ error: 'No route for GET /v3/whatever' });
});

test('413 for a body over the limit', async () => {
  const { infer } = await start({ maxBatchSize: 1000 }, { bodyLimit: 1024 });
  const response = await postJson(infer, ok(400));
  expect(response.status).toBe(413);
  expect(response.body).toEqual({ error: "Request body is larger than the server's limit (--body-limit 1 KiB)" });
});

test('413 for a request with more rows than a batch can hold', async () => {
  const { infer } = await start({ maxBatchSize: 4 });
  const response = await postJson(infer, ok(5));
  expect(response.status).toBe(413);
  expect(response.body.error).toMatch(/^ERR_ITEM_TOO_LARGE/);
});

test('503 with Retry-After once the queue is full; the accepted requests are still answered', async () => {
  const gated = await start({ channelCap: 2, maxBatchSize: 1 });
  const running = postJson(gated.infer, ok());
  while (gated.running() < 1) await new Promise((resolve) => setTimeout(resolve, 2));
  const queued = [postJson(gated.infer, ok()), postJson(gated.infer, ok())];
  while (gated.model.batcher.stats.queued < 2) await new Promise((resolve) => setTimeout(resolve, 2));
  const shed = await postJson(gated.infer, ok());
  expect(shed.status).toBe(503);
  expect(shed.headers.get('retry-after')).toBe('1');
  expect(shed.body.error).toMatch(/^ERR_QUEUE_FULL/);
  for (let i = 0; i < 3; i++) {
    while (gated.running() < 1) await new Promise((resolve) => setTimeout(resolve, 2));
    gated.release();
  }
  const answered = await Promise.all([running, ...queued]);
  expect(answered.map((r) => r.status)).toEqual([200, 200, 200]);
});

test('504 when the deadline passes, from the server default or the request, whichever is sooner', async () => {
  const gated = await start({}, { timeout: 10_000 });
  const response = await postJson(
    gated.infer,
    jsonRequest('x', [1, 2], 'FP32', [1, 1], { parameters: { timeout: 30_000 } }),
  );
  expect(response.status).toBe(504);
  expect(response.body.error).toMatch(/^ERR_TIMEOUT: Call timed out after 30 ms$/);
  gated.release();
});

test('500 when the model itself fails, and the server keeps serving', async () => {
  let fail = true;
  const gated = await start({ fail: () => fail });
  const failed = postJson(gated.infer, ok());
  while (gated.running() < 1) await new Promise((resolve) => setTimeout(resolve, 2));
  gated.release();
  const response = await failed;
  expect(response.status).toBe(500);
  expect(response.body).toEqual({ error: 'Model failed: CUDA out of memory (simulated)' });
  fail = false;
  const next = postJson(gated.infer, ok());
  while (gated.running() < 1) await new Promise((resolve) => setTimeout(resolve, 2));
  gated.release();
  expect((await next).status).toBe(200);
  const metrics = await (await fetch(`${server?.url}/metrics`)).text();
  expect(metrics).toContain('batched_fn_requests_total{model="gated",protocol="rest",status="500"} 1');
  expect(metrics).toContain('batched_fn_requests_total{model="gated",protocol="rest",status="200"} 1');
});

test('parameters.priority orders waiting requests: the urgent one runs first', async () => {
  const gated = await start({ channelCap: 5, maxBatchSize: 1 });
  const body = (value: number, priority: number) =>
    jsonRequest('x', [1, 2], 'FP32', [value, value], { parameters: { priority } });
  const first = postJson(gated.infer, body(0, 0));
  while (gated.running() < 1) await new Promise((resolve) => setTimeout(resolve, 2));
  const order: number[] = [];
  const low = postJson(gated.infer, body(1, 0)).then((r) => {
    order.push(1);
    return r;
  });
  while (gated.model.batcher.stats.queued < 1) await new Promise((resolve) => setTimeout(resolve, 2));
  const high = postJson(gated.infer, body(2, 5)).then((r) => {
    order.push(2);
    return r;
  });
  while (gated.model.batcher.stats.queued < 2) await new Promise((resolve) => setTimeout(resolve, 2));
  for (let i = 0; i < 3; i++) {
    while (gated.running() < 1) await new Promise((resolve) => setTimeout(resolve, 2));
    gated.release();
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  expect((await Promise.all([first, low, high])).map((r) => r.status)).toEqual([200, 200, 200]);
  expect(order).toEqual([2, 1]);
});

test('a client that disconnects releases its queued request', async () => {
  const gated = await start({ channelCap: 5, maxBatchSize: 1 });
  const first = postJson(gated.infer, ok());
  while (gated.running() < 1) await new Promise((resolve) => setTimeout(resolve, 2));
  const controller = new AbortController();
  const abandoned = fetch(gated.infer, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: ok(),
    signal: controller.signal,
  }).catch(() => 'aborted');
  while (gated.model.batcher.stats.queued < 1) await new Promise((resolve) => setTimeout(resolve, 2));
  controller.abort();
  expect(await abandoned).toBe('aborted');
  while (gated.model.batcher.stats.queued > 0) await new Promise((resolve) => setTimeout(resolve, 2));
  expect(gated.model.batcher.stats.failures.aborted).toBe(1);
  gated.release();
  expect((await first).status).toBe(200);
});

test('a client that sends headers and never its body cannot hold shutdown: accepted requests are answered, the stalled connection is cut', async () => {
  const gated = await start({ maxBatchSize: 1 });
  const { hostname, port } = new URL(server?.url as string);
  const stalled = connect(Number(port), hostname, () =>
    stalled.write(
      'POST /v2/models/gated/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"in',
    ),
  );
  stalled.on('error', () => {});
  const accepted = postJson(gated.infer, ok());
  while (gated.running() < 1) await new Promise((resolve) => setTimeout(resolve, 2));
  const started = performance.now();
  const closing = server?.close();
  server = undefined;
  gated.release();
  expect((await accepted).status).toBe(200);
  await closing;
  expect(performance.now() - started).toBeLessThan(5_000);
  stalled.destroy();
});
