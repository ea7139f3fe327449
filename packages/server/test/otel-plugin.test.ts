import { BatchSpanProcessor, InMemorySpanExporter, TracerProvider } from '@opentelemetry/sdk-trace';
import Fastify from 'fastify';
import { expect, test } from 'vitest';
import { otelTracing } from 'batched-fn/otel';
import { createOnnxModel, ensureMlpModel, kservePlugin, ServerMetrics } from '@batched-fn/server';
import { jsonRequest, TEST_CACHE } from './helpers.js';

// The plugin in a user's own fastify app, traced with the user's own tracer: `tracer` for the
// request spans, `tracing` on the model's batcher for the batch spans that link to them.
test('kservePlugin({ tracer }) makes a server span per request, linked from the batch span that served it', async () => {
  const exporter = new InMemorySpanExporter();
  const provider = new TracerProvider({
    spanProcessors: [new BatchSpanProcessor({ exporter, scheduledDelayMillis: 5 })],
  });
  const tracer = provider.getTracer('app');
  const model = createOnnxModel({
    path: ensureMlpModel({ inputs: 256, hidden: [], classes: 16, seed: 1 }, TEST_CACHE),
    name: 'tiny',
    threads: 1,
    maxDelay: 50,
    tracing: otelTracing(tracer),
  });
  const app = Fastify();
  await app.register(kservePlugin, { models: [model], metrics: new ServerMetrics({ defaultMetrics: false }), tracer });
  await model.batcher.ready();
  const body = jsonRequest('input', [1, 256], 'FP32', Array(256).fill(0.25));
  const answers = await Promise.all(
    Array.from({ length: 4 }, () =>
      app.inject({
        method: 'POST',
        url: '/v2/models/tiny/infer',
        headers: { 'content-type': 'application/json' },
        payload: body,
      }),
    ),
  );
  expect(answers.map((a) => a.statusCode)).toEqual([200, 200, 200, 200]);
  await app.close();
  await model.batcher.close();
  await provider.forceFlush();
  const spans = exporter.getFinishedSpans();
  const requests = spans.filter((s) => s.name === 'POST /v2/models/:name/infer');
  expect(requests).toHaveLength(4);
  expect(
    requests.every(
      (s) => s.attributes['http.response.status_code'] === 200 && s.attributes['batched_fn.model'] === 'tiny',
    ),
  ).toBe(true);
  const linked = spans
    .filter((s) => s.name === 'batch tiny')
    .flatMap((s) => s.links.map((l) => l.context.spanId))
    .sort();
  expect(linked).toEqual(requests.map((s) => s.spanContext().spanId).sort());
  await provider.shutdown();
});
