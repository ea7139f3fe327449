import { Metadata } from '@grpc/grpc-js';
import { afterEach, expect, test } from 'vitest';
import { killRunning, run } from './cli-run.js';
import { grpcClient } from './grpc-client.js';
import { jsonRequest, postJson, TEST_CACHE } from './helpers.js';
import { type ReceivedSpan, startOtlpReceiver } from './otlp-receiver.js';

// `serve --otel` against a real OTLP/HTTP receiver: server spans per request, one span per batch
// linked to the requests it served, their attributes, and GenAI attributes on generation.
afterEach(killRunning);

// OTLP numbers span kinds from 1 (INTERNAL); the API from 0.
const SERVER = 2;
const CONSUMER = 5;
const data = Array.from({ length: 256 }, (_, i) => (i % 9) / 9);

async function tracedServer(protocol: 'http/json' | 'http/protobuf') {
  const receiver = await startOtlpReceiver();
  const server = run(
    [
      'serve',
      '--port',
      '0',
      '--grpc-port',
      '0',
      '--otel',
      '--max-delay',
      '100',
      '--threads',
      '1',
      '--cache-dir',
      TEST_CACHE,
    ],
    {
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: protocol,
      OTEL_BSP_SCHEDULE_DELAY: '100',
    },
  );
  return { receiver, server, url: await server.url, grpc: await server.grpc };
}

async function until(spans: ReceivedSpan[], done: (spans: ReceivedSpan[]) => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!done(spans)) {
    if (Date.now() > deadline)
      throw new Error(
        `spans never arrived: ${JSON.stringify(spans.map((s) => [s.name, s.links.length, s.attributes['batched_fn.batch.items']]))}`,
      );
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

test('http/json: every request is a server span, every batch one span linked to each request it served, with the attributes', async () => {
  const { receiver, server, url, grpc } = await tracedServer('http/json');
  const client = grpcClient(grpc);
  const rest = Array.from({ length: 6 }, () =>
    postJson(`${url}/v2/models/mlp/infer`, jsonRequest('input', [1, 256], 'FP32', data)),
  );
  const viaGrpc = Array.from({ length: 2 }, () =>
    client.call('ModelInfer', {
      model_name: 'mlp',
      inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 256], contents: { fp32_contents: data } }],
    }),
  );
  expect((await Promise.all(rest)).map((r) => r.status)).toEqual(Array(6).fill(200));
  await Promise.all(viaGrpc);
  const bad = await postJson(`${url}/v2/models/mlp/infer`, jsonRequest('input', [1, 3], 'FP32', [1, 2, 3]));
  expect(bad.status).toBe(400);
  // A client's trace continues in ours: over an HTTP header, and over gRPC metadata.
  const clientTrace = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7' };
  const traced = await fetch(`${url}/v2/health/live`, {
    headers: { traceparent: `00-${clientTrace.traceId}-${clientTrace.spanId}-01` },
  });
  expect(traced.status).toBe(200);
  const metadata = new Metadata();
  metadata.set('traceparent', `00-${clientTrace.traceId}-00f067aa0ba902b8-01`);
  const viaMetadata = client.start(
    'ModelInfer',
    {
      model_name: 'mlp',
      inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 256], contents: { fp32_contents: data } }],
    },
    undefined,
    metadata,
  );
  await viaMetadata.done;
  const forged = await fetch(`${url}/v2/health/live`, { headers: { traceparent: '00-not-a-trace-01' } });
  expect(forged.status).toBe(200);
  const answered = performance.now();
  await until(
    receiver.spans,
    (spans) =>
      spans.filter((s) => s.name === 'batch mlp').reduce((n, s) => n + s.links.length, 0) >= 9 &&
      spans.filter((s) => s.kind === SERVER).length >= 12,
  );

  // OTEL_BSP_SCHEDULE_DELAY=100 is honoured: the SDK's default would hold spans for 5 s.
  expect(performance.now() - answered).toBeLessThan(3_000);
  const requests = receiver.spans.filter(
    (s) =>
      s.kind === SERVER &&
      s.attributes['http.response.status_code'] === 200 &&
      s.name === 'POST /v2/models/:name/infer',
  );
  const calls = receiver.spans.filter((s) => s.name === 'inference.GRPCInferenceService/ModelInfer');
  expect(requests).toHaveLength(6);
  expect(calls).toHaveLength(3);
  const live = receiver.spans.filter((s) => s.name === 'GET /v2/health/live');
  expect(live.map((s) => [s.traceId === clientTrace.traceId, s.parentSpanId === clientTrace.spanId]).sort()).toEqual([
    [false, false],
    [true, true],
  ]);
  expect(calls.filter((s) => s.traceId === clientTrace.traceId).map((s) => s.parentSpanId)).toEqual([
    '00f067aa0ba902b8',
  ]);
  expect(calls[0]?.attributes).toMatchObject({
    'rpc.system': 'grpc',
    'rpc.method': 'ModelInfer',
    'rpc.grpc.status_code': 0,
  });
  const batches = receiver.spans.filter((s) => s.name === 'batch mlp');
  // The links connect: every request and call span is linked from exactly one batch span.
  const linked = batches.flatMap((b) => b.links.map((l) => `${l.traceId}/${l.spanId}`)).sort();
  expect(linked).toEqual([...requests, ...calls].map((s) => `${s.traceId}/${s.spanId}`).sort());
  for (const batch of batches) {
    expect(batch.kind).toBe(CONSUMER);
    expect(batch.parentSpanId).toBe('');
    expect(batch.attributes).toMatchObject({
      'messaging.batch.message_count': batch.links.length,
      'batched_fn.batch.items': batch.links.length,
      'batched_fn.batch.rows': batch.links.length,
      'batched_fn.worker.id': 0,
      'messaging.operation.type': 'process',
    });
    expect(batch.attributes['batched_fn.batch.reason']).toEqual(expect.any(String));
    expect(batch.attributes['batched_fn.batch.exec_ms']).toBeGreaterThan(0);
    expect(batch.attributes['batched_fn.batch.oldest_wait_ms']).toBeGreaterThanOrEqual(0);
  }
  for (const span of [...requests, ...calls]) {
    expect(span.attributes['batched_fn.queue_wait_ms']).toBeGreaterThanOrEqual(0);
    expect(span.attributes['batched_fn.batch.rows']).toBeGreaterThanOrEqual(1);
    expect(span.attributes['batched_fn.model']).toBe('mlp');
    expect(span.status.code).toBe(0);
  }
  // A client's mistake is not the server's error: a 400 keeps an unset status.
  const refused = receiver.spans.find((s) => s.attributes['http.response.status_code'] === 400);
  expect(refused?.status.code).toBe(0);
  expect(receiver.spans[0]?.serviceName).toBe('batched-fn');
  client.close();
  server.child.kill('SIGTERM');
  expect(await server.exit).toBe(0);
  await receiver.close();
});

test('http/protobuf: spans arrive and link the same way; generation carries the GenAI attributes and its first-token event', async () => {
  const { receiver, server, url } = await tracedServer('http/protobuf');
  await Promise.all(
    Array.from({ length: 3 }, () =>
      postJson(`${url}/v2/models/mlp/infer`, jsonRequest('input', [1, 256], 'FP32', data)),
    ),
  );
  const generated = await postJson(
    `${url}/v2/models/charlm/generate`,
    JSON.stringify({ text_input: 'Hi', parameters: { max_tokens: 12 } }),
  );
  expect(generated.status).toBe(200);
  await until(
    receiver.spans,
    (spans) =>
      spans.some((s) => s.name === 'POST /v2/models/:name/generate') &&
      spans.filter((s) => s.name === 'batch mlp').reduce((n, s) => n + s.links.length, 0) >= 3,
  );
  expect([...receiver.contentTypes]).toEqual(['application/x-protobuf']);
  const requests = receiver.spans.filter((s) => s.name === 'POST /v2/models/:name/infer');
  const linked = receiver.spans
    .filter((s) => s.name === 'batch mlp')
    .flatMap((b) => b.links.map((l) => l.spanId))
    .sort();
  expect(linked).toEqual(requests.map((s) => s.spanId).sort());
  const generate = receiver.spans.find((s) => s.name === 'POST /v2/models/:name/generate') as ReceivedSpan;
  expect(generate.attributes).toMatchObject({
    'gen_ai.operation.name': 'text_completion',
    'gen_ai.request.model': 'charlm',
    'gen_ai.request.max_tokens': 12,
    'gen_ai.usage.input_tokens': 2,
    'gen_ai.usage.output_tokens': 12,
  });
  expect(generate.attributes['gen_ai.server.time_to_first_token']).toBeGreaterThan(0);
  expect(generate.events).toEqual(['gen_ai.first_token']);
  server.child.kill('SIGTERM');
  expect(await server.exit).toBe(0);
  await receiver.close();
});

test('an OTLP protocol the exporter does not speak is a usage error, exit 2', async () => {
  const server = run(['serve', '--port', '0', '--otel', '--cache-dir', TEST_CACHE], {
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'grpc',
  });
  expect(await server.exit).toBe(2);
  expect(server.output()).toContain(
    '--otel exports over http/protobuf or http/json, got OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="grpc"',
  );
});
