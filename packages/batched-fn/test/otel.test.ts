import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { context, SpanStatusCode, trace } from '@opentelemetry/api';
import {
  BatchSpanProcessor,
  InMemorySpanExporter,
  StackContextManager,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import { expect, test } from 'vitest';
import { batchedFn } from 'batched-fn';
import { otelTracing } from 'batched-fn/otel';

// Tracing through the core's seam: one span per batch, linked to every caller's span; and a core
// that never needs @opentelemetry/api unless `batched-fn/otel` is imported.
// `context.with` makes a span active for the synchronous call, which is where the batcher captures it.
context.setGlobalContextManager(new StackContextManager().enable());

function setup() {
  const exporter = new InMemorySpanExporter();
  const provider = new TracerProvider({
    spanProcessors: [new BatchSpanProcessor({ exporter, scheduledDelayMillis: 5 })],
  });
  return { exporter, provider, tracer: provider.getTracer('test') };
}

test('a batch span links to the span of every call it served, with the batch attributes; callers get their wait and batch', async () => {
  const { exporter, provider, tracer } = setup();
  const double = batchedFn<number, number>({
    handler: (xs) => xs.map((x) => 2 * x),
    maxBatchSize: 4,
    maxDelay: 1000,
    name: 'double',
    tracing: otelTracing(tracer),
  });
  const callers = [1, 2, 3, 4].map((x) => tracer.startSpan(`request ${x}`));
  // Two ways to name the caller: the `trace` option, and the active span where the call is made.
  const results = await Promise.all(
    callers.map((span, i) =>
      i < 2 ? double(i + 1, { trace: span }) : context.with(trace.setSpan(context.active(), span), () => double(i + 1)),
    ),
  );
  expect(results).toEqual([2, 4, 6, 8]);
  for (const span of callers) span.end();
  await provider.forceFlush();
  const spans = exporter.getFinishedSpans();
  const batch = spans.filter((s) => s.name === 'batch double');
  expect(batch).toHaveLength(1);
  const [span] = batch as [(typeof batch)[number]];
  expect(span.links.map((l) => l.context.spanId).sort()).toEqual(callers.map((c) => c.spanContext().spanId).sort());
  expect(span.parentSpanContext).toBeUndefined();
  expect(span.attributes).toMatchObject({
    'messaging.batch.message_count': 4,
    'messaging.operation.type': 'process',
    'batched_fn.batch.items': 4,
    'batched_fn.batch.rows': 4,
    'batched_fn.batch.reason': 'full',
  });
  expect(span.attributes['batched_fn.batch.exec_ms']).toBeGreaterThanOrEqual(0);
  expect(span.attributes['batched_fn.batch.oldest_wait_ms']).toBeGreaterThanOrEqual(0);
  for (const caller of spans.filter((s) => s.name.startsWith('request'))) {
    expect(caller.attributes).toMatchObject({ 'batched_fn.batch.items': 4, 'batched_fn.batch.rows': 4 });
    expect(caller.attributes['batched_fn.queue_wait_ms']).toBeGreaterThanOrEqual(0);
  }
  await provider.shutdown();
});

test('a failed batch sets its span status to ERROR with the exception; untraced calls make no span', async () => {
  const { exporter, provider, tracer } = setup();
  const broken = batchedFn<number, number>({
    handler: () => {
      throw new Error('CUDA out of memory');
    },
    maxDelay: 0,
    name: 'broken',
    tracing: otelTracing(tracer),
  });
  const caller = tracer.startSpan('request');
  await expect(broken(1, { trace: caller })).rejects.toThrow('CUDA out of memory');
  caller.end();
  await expect(broken(2)).rejects.toThrow('CUDA out of memory');
  await provider.forceFlush();
  const batches = exporter.getFinishedSpans().filter((s) => s.name === 'batch broken');
  expect(batches).toHaveLength(1);
  expect(batches[0]?.status).toEqual({ code: SpanStatusCode.ERROR, message: 'CUDA out of memory' });
  expect(batches[0]?.events.map((e) => e.name)).toEqual(['exception']);
  await provider.shutdown();
});

test('worker mode: the batch span says which worker ran it', async () => {
  const { exporter, provider, tracer } = setup();
  const worker = new URL('./fixtures/echo.worker.mjs', import.meta.url);
  const double = batchedFn<number, number>({
    worker,
    workers: 1,
    maxDelay: 0,
    name: 'w',
    tracing: otelTracing(tracer),
  });
  const caller = tracer.startSpan('request');
  expect(await double(21, { trace: caller })).toMatchObject({ value: 42 });
  caller.end();
  await double.close();
  await provider.forceFlush();
  expect(exporter.getFinishedSpans().find((s) => s.name === 'batch w')?.attributes['batched_fn.worker.id']).toBe(0);
  await provider.shutdown();
});

test('without @opentelemetry/api installed the core imports and batches; only batched-fn/otel needs it', () => {
  // A resolve hook that makes the package missing, as in a project that never installed it.
  const hook = `data:text/javascript,${encodeURIComponent(
    "export async function resolve(s, c, next) { if (s.startsWith('@opentelemetry/')) { const e = new Error('Cannot find package ' + s); e.code = 'ERR_MODULE_NOT_FOUND'; throw e; } return next(s, c); }",
  )}`;
  const register = `data:text/javascript,${encodeURIComponent(`import { register } from 'node:module'; register(${JSON.stringify(hook)});`)}`;
  const script = `
    const { batchedFn } = await import('batched-fn');
    const f = batchedFn({ handler: (xs) => xs.map((x) => x + 1), maxDelay: 0 });
    console.log('core', await f(1));
    try { await import('batched-fn/otel'); console.log('otel loaded'); } catch (e) { console.log('otel', e.code); }
  `;
  const out = execFileSync(process.execPath, ['--import', register, '--input-type=module', '-e', script], {
    cwd: fileURLToPath(new URL('..', import.meta.url)),
    encoding: 'utf8',
  });
  expect(out).toBe('core 2\notel ERR_MODULE_NOT_FOUND\n');
});
