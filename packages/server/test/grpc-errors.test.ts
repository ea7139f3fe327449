import { connect } from 'node:http2';
import { status } from '@grpc/grpc-js';
import { afterEach, expect, test } from 'vitest';
import { batchedFn } from 'batched-fn';
import {
  type InferItem,
  type InferResult,
  type RunningServer,
  serveModel,
  ServerMetrics,
  startServer,
} from '@batched-fn/server';
import { floatsOf, grpcClient } from './grpc-client.js';
import { gatedModel, jsonRequest, postJson } from './helpers.js';

// Every gRPC status the server answers, deadlines and cancellation, drain, and rows of both protocols in one batch.
let server: RunningServer | undefined;
let client: ReturnType<typeof grpcClient> | undefined;
afterEach(async () => {
  client?.close();
  await server?.close();
  server = client = undefined;
});

const row = (extra: object = {}) => ({
  model_name: 'gated',
  inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], contents: { fp32_contents: [1, 1] } }],
  ...extra,
});
const until = async (condition: () => boolean) => {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 2));
};

async function start(options: Parameters<typeof gatedModel>[0] = {}, serve: Parameters<typeof serveModel>[2] = {}) {
  const gated = gatedModel(options);
  server = await serveModel(gated.model, gated.metrics, { port: 0, grpcPort: 0, ...serve });
  client = grpcClient(server.grpcUrl as string);
  return { ...gated, client };
}

test('RESOURCE_EXHAUSTED once the queue is full (REST: 503); the accepted calls are still answered', async () => {
  const gated = await start({ channelCap: 2, maxBatchSize: 1 });
  const running = gated.client.call('ModelInfer', row());
  await until(() => gated.running() === 1);
  const queued = [gated.client.call('ModelInfer', row()), gated.client.call('ModelInfer', row())];
  await until(() => gated.model.batcher.stats.queued === 2);
  const rest = await postJson(`${server?.url}/v2/models/gated/infer`, jsonRequest('x', [1, 2], 'FP32', [1, 1]));
  expect(rest.status).toBe(503);
  expect(await gated.client.fails('ModelInfer', row())).toEqual({
    code: status.RESOURCE_EXHAUSTED,
    details: rest.body.error,
  });
  for (let i = 0; i < 3; i++) {
    await until(() => gated.running() === 1);
    gated.release();
  }
  expect((await Promise.all([running, ...queued])).map((r) => r.outputs[0].name)).toEqual(['y', 'y', 'y']);
});

test('INVALID_ARGUMENT for more rows than a batch holds (REST: 413)', async () => {
  const gated = await start({ maxBatchSize: 2 });
  const rows = {
    model_name: 'gated',
    inputs: [{ name: 'x', datatype: 'FP32', shape: [3, 2], contents: { fp32_contents: [1, 1, 1, 1, 1, 1] } }],
  };
  expect(await gated.client.fails('ModelInfer', rows)).toEqual({
    code: status.INVALID_ARGUMENT,
    details: "ERR_ITEM_TOO_LARGE: Input has size 3, larger than the model's max batch size (--max-batch-size 2)",
  });
});

test('INTERNAL when the model fails, with the text REST sends; the server keeps serving', async () => {
  let fail = true;
  const gated = await start({ fail: () => fail });
  const failed = gated.client.fails('ModelInfer', row());
  await until(() => gated.running() === 1);
  gated.release();
  expect(await failed).toEqual({ code: status.INTERNAL, details: 'Model failed: CUDA out of memory (simulated)' });
  fail = false;
  const next = gated.client.call('ModelInfer', row());
  await until(() => gated.running() === 1);
  gated.release();
  expect(Array.from(floatsOf((await next).raw_output_contents[0]))).toEqual([0]);
});

test('DEADLINE_EXCEEDED from parameters.timeout, as REST answers 504', async () => {
  const gated = await start();
  const blocker = gated.client.call('ModelInfer', row());
  await until(() => gated.running() === 1);
  expect(await gated.client.fails('ModelInfer', row({ parameters: { timeout: { int64_param: 30_000 } } }))).toEqual({
    code: status.DEADLINE_EXCEEDED,
    details: 'ERR_TIMEOUT: Call timed out after 30 ms',
  });
  gated.release();
  await blocker;
});

test("the client's deadline becomes the call's timeout: it leaves the queue when the deadline passes, before any dispatch", async () => {
  const gated = await start({ maxBatchSize: 1 });
  const blocker = gated.client.call('ModelInfer', row());
  await until(() => gated.running() === 1);
  const late = gated.client.fails('ModelInfer', row(), 100);
  await until(() => gated.model.batcher.stats.queued === 1);
  expect((await late).code).toBe(status.DEADLINE_EXCEEDED);
  await until(() => gated.model.batcher.stats.queued === 0);
  gated.release();
  await blocker;
  // The timed-out call never reached the model: one batch ran, and it was the blocker's.
  expect(gated.model.batcher.stats.batches).toBe(1);
  expect(gated.model.batcher.stats.failed).toBe(1);
});

test('a call whose deadline the learned cost curve says it cannot meet is shed at once', async () => {
  // A model whose batches take 150 ms, one at a time: after 8 batches of 1 and 2 rows the cost curve is confident.
  const metrics = new ServerMetrics({ defaultMetrics: false });
  const batcher = batchedFn<InferItem, InferResult>({
    handler: async (batch) => {
      await new Promise((resolve) => setTimeout(resolve, 150));
      return batch.map((item) => ({
        y: { datatype: 'FP32', shape: [item.rows, 1], data: new Float32Array(item.rows) },
      }));
    },
    maxBatchSize: 2,
    maxDelay: 0,
    size: (item) => item.rows,
    name: 'slow',
  });
  const signature = {
    inputs: [{ name: 'x', datatype: 'FP32' as const, shape: [-1, 2] }],
    outputs: [{ name: 'y', datatype: 'FP32' as const, shape: [-1, 1] }],
  };
  server = await serveModel(
    {
      name: 'slow',
      version: '1',
      platform: 'test',
      signature,
      maxBatchSize: 2,
      batcher,
      infer: (item, o) => batcher(item, o),
    },
    metrics,
    { port: 0, grpcPort: 0 },
  );
  client = grpcClient(server.grpcUrl as string);
  const slow = (rows: number) => ({
    model_name: 'slow',
    inputs: [{ name: 'x', datatype: 'FP32', shape: [rows, 2], contents: { fp32_contents: Array(rows * 2).fill(1) } }],
  });
  for (let i = 0; i < 8; i++) await client.call('ModelInfer', slow(1 + (i % 2)));
  const running = client.call('ModelInfer', slow(1));
  await until(() => batcher.stats.inFlight === 1);
  const started = performance.now();
  const shed = await client.fails('ModelInfer', slow(1), 200);
  const elapsed = performance.now() - started;
  expect(shed.code).toBe(status.DEADLINE_EXCEEDED);
  expect(shed.details).toMatch(
    /^ERR_TIMEOUT: Call rejected early: its predicted completion is past its \d+ ms deadline$/,
  );
  // Shed at the call: well before the 200 ms deadline (a queued call would have waited it out).
  expect(elapsed).toBeLessThan(150);
  await running;
});

test('a cancelled call leaves the queue before dispatch: its row never reaches the model', async () => {
  const gated = await start({ maxBatchSize: 1 });
  const blocker = gated.client.call('ModelInfer', row());
  await until(() => gated.running() === 1);
  const cancelled = gated.client.start('ModelInfer', row());
  await until(() => gated.model.batcher.stats.queued === 1);
  cancelled.call.cancel();
  await expect(cancelled.done).rejects.toMatchObject({ code: status.CANCELLED });
  await until(() => gated.model.batcher.stats.queued === 0);
  gated.release();
  await blocker;
  expect(gated.model.batcher.stats).toMatchObject({ batches: 1, completed: 1, failed: 1, queued: 0 });
  const metrics = await (await fetch(`${server?.url}/metrics`)).text();
  expect(metrics).toContain('batched_fn_requests_total{model="gated",protocol="grpc",status="499"} 1');
});

test('rows from REST and gRPC share batches: 8 + 8 concurrent calls, one batch of 16', async () => {
  server = await startServer({
    port: 0,
    grpcPort: 0,
    maxDelay: 300,
    maxBatchSize: 16,
    threads: 1,
    cacheDir: (await import('./helpers.js')).TEST_CACHE,
  });
  client = grpcClient(server.grpcUrl as string);
  const data = Array.from({ length: 256 }, () => 0.5);
  const calls = [
    ...Array.from({ length: 8 }, () =>
      (client as ReturnType<typeof grpcClient>).call('ModelInfer', {
        model_name: 'mlp',
        inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 256], contents: { fp32_contents: data } }],
      }),
    ),
    ...Array.from({ length: 8 }, () =>
      postJson(`${server?.url}/v2/models/mlp/infer`, jsonRequest('input', [1, 256], 'FP32', data)),
    ),
  ];
  await Promise.all(calls);
  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  expect(metrics).toContain('batched_fn_batch_size_count{model="mlp"} 1');
  expect(metrics).toContain('batched_fn_batch_size_sum{model="mlp"} 16');
  expect(metrics).toContain('batched_fn_requests_total{model="mlp",protocol="grpc",status="200"} 8');
  expect(metrics).toContain('batched_fn_requests_total{model="mlp",protocol="rest",status="200"} 8');
});

test('draining: calls already accepted are answered; new calls are UNAVAILABLE', async () => {
  const gated = await start({ maxBatchSize: 1 });
  const accepted = [gated.client.call('ModelInfer', row()), gated.client.call('ModelInfer', row())];
  await until(() => gated.running() === 1 && gated.model.batcher.stats.queued === 1);
  const closing = server?.close();
  // The listener is gone (as REST's is): a new call cannot connect, and the client says UNAVAILABLE.
  expect((await gated.client.fails('ModelInfer', row())).code).toBe(status.UNAVAILABLE);
  gated.release();
  await until(() => gated.running() === 1);
  gated.release();
  expect((await Promise.all(accepted)).map((r) => r.outputs[0].name)).toEqual(['y', 'y']);
  await closing;
  server = undefined;
});

test('a client that announces a call and never sends it cannot hold shutdown: accepted calls are answered, the stalled stream is cut', async () => {
  const gated = await start({ maxBatchSize: 1 });
  const session = connect(`http://${((server as RunningServer).grpcUrl as string).replace('grpc://', '')}`);
  session.on('error', () => {});
  const stalled = session.request({
    ':method': 'POST',
    ':path': '/inference.GRPCInferenceService/ModelInfer',
    'content-type': 'application/grpc',
    te: 'trailers',
  });
  stalled.on('error', () => {});
  stalled.write(Buffer.from([0, 0, 0, 0, 10])); // a 10-byte message announced, never sent
  const accepted = gated.client.call('ModelInfer', row());
  await until(() => gated.running() === 1);
  const started = performance.now();
  const closing = server?.close();
  server = undefined;
  gated.release();
  expect((await accepted).outputs[0].name).toBe('y');
  await closing;
  expect(performance.now() - started).toBeLessThan(5_000);
  session.destroy();
});

test("UNAVAILABLE for load and unload without --model-control explicit (Triton's code), with the text REST sends", async () => {
  const gated = await start();
  const rest = await fetch(`${server?.url}/v2/repository/models/gated/unload`, { method: 'POST' });
  expect(rest.status).toBe(503);
  const { error } = (await rest.json()) as { error: string };
  expect(await gated.client.fails('RepositoryModelUnload', { model_name: 'gated' })).toEqual({
    code: status.UNAVAILABLE,
    details: error,
  });
  expect(await gated.client.fails('RepositoryModelLoad', { model_name: 'gated' })).toEqual({
    code: status.UNAVAILABLE,
    details: error,
  });
});
