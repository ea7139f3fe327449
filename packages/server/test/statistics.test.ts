import { afterEach, expect, test } from 'vitest';
import { type RunningServer, serveModel } from '@batched-fn/server';
import { gatedModel, jsonRequest, postJson } from './helpers.js';

// Triton's statistics extension: inference_count (rows) / execution_count is the batching users actually get.
let server: RunningServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

const body = (rows: number) => jsonRequest('x', [rows, 2], 'FP32', Array(rows * 2).fill(1));

test('stats count inferences, executions, successes, failures, queue and compute time, and batch sizes', async () => {
  let fail = false;
  const gated = gatedModel({ maxBatchSize: 8, channelCap: 10, fail: () => fail });
  server = await serveModel(gated.model, gated.metrics, { port: 0 });
  const infer = `${server.url}/v2/models/gated/infer`;
  const first = postJson(infer, body(1));
  while (gated.running() < 1) await new Promise((resolve) => setTimeout(resolve, 2));
  const rest = [postJson(infer, body(2)), postJson(infer, body(3))];
  while (gated.model.batcher.stats.queued < 2) await new Promise((resolve) => setTimeout(resolve, 2));
  gated.release();
  while (gated.running() < 1) await new Promise((resolve) => setTimeout(resolve, 2));
  gated.release();
  expect((await Promise.all([first, ...rest])).map((r) => r.status)).toEqual([200, 200, 200]);
  fail = true;
  const failed = postJson(infer, body(1));
  while (gated.running() < 1) await new Promise((resolve) => setTimeout(resolve, 2));
  gated.release();
  expect((await failed).status).toBe(500);

  const stats = (await (await fetch(`${server.url}/v2/models/gated/stats`)).json()) as {
    model_stats: Record<string, any>[];
  };
  const [model] = stats.model_stats;
  expect(model).toMatchObject({
    name: 'gated',
    version: '1',
    // Rows of the successful executions (1, then 2 + 3), as Triton counts them; the failed one is not counted.
    inference_count: 6,
    execution_count: 2,
    inference_stats: { success: { count: 3 }, fail: { count: 1 }, queue: { count: 4 }, compute_infer: { count: 2 } },
    batch_stats: [
      { batch_size: 1, compute_infer: { count: 1 } },
      { batch_size: 5, compute_infer: { count: 1 } },
    ],
  });
  expect(model?.last_inference).toBeGreaterThan(Date.now() - 60_000);
  for (const key of ['success', 'fail', 'queue', 'compute_infer'])
    expect(model?.inference_stats[key].ns).toBeGreaterThan(0);
  // An inline handler stacks nothing and posts nothing to a thread: its compute_input and compute_output take no time, but count each execution.
  expect(model?.inference_stats).toMatchObject({
    compute_input: { count: 2, ns: 0 },
    compute_output: { count: 2, ns: 0 },
  });
  const all = (await (await fetch(`${server.url}/v2/models/stats`)).json()) as { model_stats: unknown[] };
  expect(all.model_stats).toEqual(stats.model_stats);
  expect(await (await fetch(`${server.url}/v2/models/gated/versions/1/stats`)).json()).toEqual(stats);
});

test('stats of an unknown model or version are a 404, and unknown names never get counters', async () => {
  const gated = gatedModel();
  server = await serveModel(gated.model, gated.metrics, { port: 0 });
  expect((await fetch(`${server.url}/v2/models/nope/stats`)).status).toBe(404);
  expect((await fetch(`${server.url}/v2/models/gated/versions/9/stats`)).status).toBe(404);
  await postJson(`${server.url}/v2/models/nope/infer`, body(1));
  const all = (await (await fetch(`${server.url}/v2/models/stats`)).json()) as { model_stats: { name: string }[] };
  expect(all.model_stats.map((m) => m.name)).toEqual(['gated']);
  expect(((await (await fetch(`${server.url}/v2`)).json()) as { extensions: string[] }).extensions).toContain(
    'statistics',
  );
});
