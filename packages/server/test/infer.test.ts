import { afterAll, beforeAll, expect, test } from 'vitest';
import * as ort from 'onnxruntime-node';
import { ensureMlpModel, type RunningServer, startServer } from '@batched-fn/server';
import { jsonRequest, postJson, PROMETHEUS_LINE, TEST_CACHE } from './helpers.js';

let server: RunningServer;
let session: ort.InferenceSession;
const rowsOf = (n: number, seed: number): number[] =>
  Array.from({ length: n * 256 }, (_, i) => Math.sin(i * 0.37 + seed));

beforeAll(async () => {
  server = await startServer({ port: 0, cacheDir: TEST_CACHE, maxBatchSize: 32, maxDelay: 5 });
  session = await ort.InferenceSession.create(ensureMlpModel(undefined, TEST_CACHE), { intraOpNumThreads: 1 });
});
afterAll(async () => {
  await server?.close();
  await session?.release();
});

async function direct(data: number[], rows: number): Promise<number[]> {
  const out = await session.run({ input: new ort.Tensor('float32', Float32Array.from(data), [rows, 256]) });
  return Array.from((out.probabilities as ort.Tensor).data as Float32Array);
}

test('metadata and health follow the Open Inference Protocol', async () => {
  expect(await (await fetch(`${server.url}/v2/health/live`)).json()).toEqual({ live: true });
  const ready = await fetch(`${server.url}/v2/health/ready`);
  expect(ready.status).toBe(200);
  expect(await (await fetch(`${server.url}/v2/models/mlp`)).json()).toEqual({
    name: 'mlp',
    versions: ['1'],
    platform: 'onnxruntime_onnx',
    inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 256] }],
    outputs: [{ name: 'probabilities', datatype: 'FP32', shape: [-1, 16] }],
  });
  expect((await fetch(`${server.url}/v2/models/mlp/ready`)).status).toBe(200);
});

test('an infer on the default model equals a direct session.run', async () => {
  const data = rowsOf(3, 1);
  const response = await postJson(
    `${server.url}/v2/models/mlp/infer`,
    jsonRequest('input', [3, 256], 'FP32', data, { id: 'req-1' }),
  );
  expect(response.status).toBe(200);
  expect(response.body.model_name).toBe('mlp');
  expect(response.body.id).toBe('req-1');
  const [output] = response.body.outputs;
  expect(output.name).toBe('probabilities');
  expect(output.datatype).toBe('FP32');
  expect(output.shape).toEqual([3, 16]);
  const expected = await direct(data, 3);
  output.data.forEach((v: number, i: number) => {
    expect(v).toBeCloseTo(expected[i] as number, 5);
  });
});

test('nested data is accepted like flat data', async () => {
  const flat = rowsOf(2, 2);
  const nested = [flat.slice(0, 256), flat.slice(256)];
  const a = await postJson(`${server.url}/v2/models/mlp/infer`, jsonRequest('input', [2, 256], 'FP32', flat));
  const b = await postJson(`${server.url}/v2/models/mlp/infer`, jsonRequest('input', [2, 256], 'FP32', nested));
  expect(b.status).toBe(200);
  expect(b.body.outputs[0].data).toEqual(a.body.outputs[0].data);
});

test('concurrent requests are batched together and each gets its own rows back', async () => {
  const before = server.model.batcher.stats.batches;
  const requests = Array.from({ length: 48 }, (_, i) => ({ rows: 1 + (i % 3), seed: 100 + i }));
  const responses = await Promise.all(
    requests.map((r) =>
      postJson(
        `${server.url}/v2/models/mlp/infer`,
        jsonRequest('input', [r.rows, 256], 'FP32', rowsOf(r.rows, r.seed)),
      ),
    ),
  );
  for (const [i, response] of responses.entries()) {
    const r = requests[i] as { rows: number; seed: number };
    expect(response.status).toBe(200);
    expect(response.body.outputs[0].shape).toEqual([r.rows, 16]);
    const expected = await direct(rowsOf(r.rows, r.seed), r.rows);
    response.body.outputs[0].data.forEach((v: number, j: number) => {
      expect(v).toBeCloseTo(expected[j] as number, 4);
    });
  }
  const batches = server.model.batcher.stats.batches - before;
  expect(batches).toBeLessThan(48);
  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  const read = (series: string) =>
    Number(
      metrics
        .split('\n')
        .find((l) => l.startsWith(`${series}{model="mlp"}`))
        ?.split(' ')[1],
    );
  const meanBatch = read('batched_fn_batch_size_sum') / read('batched_fn_batch_size_count');
  expect(meanBatch).toBeGreaterThan(1);
  expect(server.model.batcher.stats.batchSize.max).toBeLessThanOrEqual(32);
});

test('the binary tensor extension: binary input, binary output, same numbers as JSON', async () => {
  const data = rowsOf(2, 3);
  const header = Buffer.from(
    JSON.stringify({
      inputs: [{ name: 'input', shape: [2, 256], datatype: 'FP32', parameters: { binary_data_size: 2 * 256 * 4 } }],
      parameters: { binary_data_output: true },
    }),
  );
  const body = Buffer.concat([header, Buffer.from(Float32Array.from(data).buffer)]);
  const response = await fetch(`${server.url}/v2/models/mlp/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) },
    body,
  });
  expect(response.status).toBe(200);
  const raw = Buffer.from(await response.arrayBuffer());
  const jsonLength = Number(response.headers.get('inference-header-content-length'));
  const json = JSON.parse(raw.subarray(0, jsonLength).toString());
  expect(json.outputs).toEqual([
    { name: 'probabilities', datatype: 'FP32', shape: [2, 16], parameters: { binary_data_size: 2 * 16 * 4 } },
  ]);
  const values = new Float32Array(raw.buffer.slice(raw.byteOffset + jsonLength, raw.byteOffset + raw.length));
  const expected = await direct(data, 2);
  Array.from(values).forEach((v, i) => {
    expect(v).toBeCloseTo(expected[i] as number, 5);
  });
});

test('a per-output binary_data flag mixes JSON and binary outputs as asked', async () => {
  const body = JSON.stringify({
    inputs: [{ name: 'input', shape: [1, 256], datatype: 'FP32', data: rowsOf(1, 4) }],
    outputs: [{ name: 'probabilities', parameters: { binary_data: false } }],
    parameters: { binary_data_output: true },
  });
  const response = await postJson(`${server.url}/v2/models/mlp/infer`, body);
  expect(response.status).toBe(200);
  expect(response.body.outputs[0].data).toHaveLength(16);
});

test('/metrics is Prometheus text with the batching series', async () => {
  const response = await fetch(`${server.url}/metrics`);
  expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
  const text = await response.text();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    expect(line).toMatch(PROMETHEUS_LINE);
  }
  for (const series of [
    'batched_fn_requests_total{model="mlp",protocol="rest",status="200"}',
    'batched_fn_batch_size_count{model="mlp"}',
    'batched_fn_queue_wait_seconds_count{model="mlp"}',
    'batched_fn_inference_duration_seconds_count{model="mlp"}',
    'batched_fn_queue_depth{model="mlp"}',
    'batched_fn_worker_restarts{model="mlp",worker="0"}',
  ]) {
    expect(text).toContain(series);
  }
});

test('--pad with preferred sizes: the model sees zero-padded batches, callers never see the filler', async () => {
  const padded = await startServer({
    port: 0,
    cacheDir: TEST_CACHE,
    maxBatchSize: 8,
    maxDelay: 20,
    preferredBatchSizes: [4, 8],
    pad: true,
  });
  try {
    const requests = [1, 2, 3].map((seed) => rowsOf(1, 200 + seed));
    const responses = await Promise.all(
      requests.map((data) =>
        postJson(`${padded.url}/v2/models/mlp/infer`, jsonRequest('input', [1, 256], 'FP32', data)),
      ),
    );
    for (const [i, response] of responses.entries()) {
      expect(response.status).toBe(200);
      expect(response.body.outputs[0].shape).toEqual([1, 16]);
      const expected = await direct(requests[i] as number[], 1);
      response.body.outputs[0].data.forEach((v: number, j: number) => {
        expect(v).toBeCloseTo(expected[j] as number, 4);
      });
    }
    expect(padded.model.batcher.stats).toMatchObject({ completed: 3, batches: 1, batchSize: { max: 3 } });
  } finally {
    await padded.close();
  }
});
