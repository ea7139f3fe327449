import { status } from '@grpc/grpc-js';
import { afterEach, expect, test } from 'vitest';
import { type RunningServer, startServer } from '@batched-fn/server';
import { grpcClient } from './grpc-client.js';
import { postJson } from './helpers.js';
import { type ReceivedSpan, startOtlpReceiver } from './otlp-receiver.js';
import { row16, tritonRepository } from './triton-helpers.js';

// Triton's trace extension drives --otel at run time: GET/POST /v2[/models/{m}]/trace/setting and
// gRPC TraceSetting. Spans are read from a real OTLP/HTTP receiver.
let server: RunningServer | undefined;
let client: ReturnType<typeof grpcClient> | undefined;
let receiver: Awaited<ReturnType<typeof startOtlpReceiver>> | undefined;
afterEach(async () => {
  client?.close();
  await server?.close();
  await receiver?.close();
  server = client = receiver = undefined;
});

async function start(otel: boolean) {
  if (otel) {
    receiver = await startOtlpReceiver();
    // Read by the exporter when --otel starts it, in this process.
    Object.assign(process.env, {
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
      OTEL_BSP_SCHEDULE_DELAY: '20',
    });
  }
  server = await startServer({ modelRepository: tritonRepository(), port: 0, grpcPort: 0, maxDelay: 0, otel });
  client = grpcClient(server.grpcUrl as string);
  return { url: server.url, client };
}

const INITIAL = { trace_level: ['TIMESTAMPS'], trace_rate: '1', trace_count: '-1', trace_mode: 'opentelemetry' };
const setting = (url: string, settings: object, model?: string) =>
  postJson(`${url}/v2/${model === undefined ? '' : `models/${model}/`}trace/setting`, JSON.stringify(settings));
const simple = (url: string, model = 'simple') =>
  postJson(
    `${url}/v2/models/${model}/infer`,
    JSON.stringify({
      inputs: [
        {
          name: 'INPUT0',
          shape: [1, 16],
          datatype: model === 'simple' ? 'INT32' : 'BYTES',
          data: model === 'simple' ? row16(0) : row16(0).map(String),
        },
        {
          name: 'INPUT1',
          shape: [1, 16],
          datatype: model === 'simple' ? 'INT32' : 'BYTES',
          data: model === 'simple' ? row16(1) : row16(1).map(String),
        },
      ],
    }),
  );

/** Sends requests one after another (each waits for its answer), so rate counting is exact. */
async function inferSequentially(url: string, count: number, model = 'simple'): Promise<void> {
  for (let i = 0; i < count; i++) expect((await simple(url, model)).status).toBe(200);
}

/**
 * Every span of the requests so far, once exported: a marker request (health, traced whatever the
 * rate while the level is on) is sent last, and its span arrives after every span that ended before it.
 */
async function exported(url: string): Promise<ReceivedSpan[]> {
  await fetch(`${url}/v2/health/live`);
  const deadline = Date.now() + 10_000;
  while (!(receiver?.spans ?? []).some((s) => s.name === 'GET /v2/health/live')) {
    if (Date.now() > deadline) throw new Error('the marker span never arrived');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const spans = [...(receiver?.spans ?? [])];
  receiver?.spans.splice(0);
  return spans;
}
const inferSpans = (spans: ReceivedSpan[], model = 'simple') =>
  spans.filter((s) => s.name === 'POST /v2/models/:name/infer' && s.attributes['batched_fn.model'] === model);
const batchSpans = (spans: ReceivedSpan[], model = 'simple') => spans.filter((s) => s.name === `batch ${model}`);

test('without --otel: a clear 400 on REST, FAILED_PRECONDITION on gRPC, and `trace` is not listed', async () => {
  const { url, client } = await start(false);
  const message =
    'Tracing is off on this server: start it with --otel to trace requests (OpenTelemetry over OTLP/HTTP); the trace settings drive that tracing';
  for (const path of ['/v2/trace/setting', '/v2/models/simple/trace/setting']) {
    const get = await fetch(`${url}${path}`);
    expect(get.status).toBe(400);
    expect(await get.json()).toEqual({ error: message });
    expect(await postJson(`${url}${path}`, JSON.stringify({ trace_level: ['OFF'] }))).toMatchObject({
      status: 400,
      body: { error: message },
    });
  }
  expect(await client.fails('TraceSetting', {})).toEqual({ code: status.FAILED_PRECONDITION, details: message });
  expect(((await (await fetch(`${url}/v2`)).json()) as any).extensions).not.toContain('trace');
});

test("the settings: Triton's shape on REST and gRPC, global and per model; errors in Triton's words", async () => {
  const { url, client } = await start(true);
  expect((await (await fetch(`${url}/v2/trace/setting`)).json()) as any).toEqual(INITIAL);
  expect((await (await fetch(`${url}/v2/models/simple/trace/setting`)).json()) as any).toEqual(INITIAL);
  expect((await client.call('TraceSetting', { model_name: '' })).settings).toEqual({
    trace_level: { value: ['TIMESTAMPS'] },
    trace_rate: { value: ['1'] },
    trace_count: { value: ['-1'] },
    trace_mode: { value: ['opentelemetry'] },
  });
  expect(((await (await fetch(`${url}/v2`)).json()) as any).extensions).toContain('trace');
  // A model's settings start as a copy of the global ones; null makes one follow the global setting again.
  expect((await setting(url, { trace_rate: '5' }, 'simple')).body).toEqual({ ...INITIAL, trace_rate: '5' });
  expect((await setting(url, { trace_level: ['TIMESTAMPS', 'TENSORS'] })).body).toEqual({
    ...INITIAL,
    trace_level: ['TIMESTAMPS', 'TENSORS'],
  });
  expect(
    (await client.call('TraceSetting', { model_name: 'simple', settings: { trace_count: { value: ['7'] } } })).settings
      .trace_count,
  ).toEqual({ value: ['7'] });
  expect((await (await fetch(`${url}/v2/models/simple/trace/setting`)).json()) as any).toEqual({
    ...INITIAL,
    trace_rate: '5',
    trace_count: '7',
  });
  expect((await setting(url, { trace_rate: null }, 'simple')).body).toEqual({ ...INITIAL, trace_count: '7' });
  expect(
    (await client.call('TraceSetting', { model_name: 'simple', settings: { trace_count: { value: [] } } })).settings
      .trace_count,
  ).toEqual({ value: ['-1'] });
  // Global null: back to the start value.
  expect((await setting(url, { trace_level: null })).body).toEqual(INITIAL);

  const errors: [object, string][] = [
    [{ trace_file: 'model.log' }, 'trace file location can not be updated through network protocol'],
    [{ trace_level: ['OFF', 'TIMESTAMPS'] }, "Expect only one trace level 'OFF' is specified"],
    [{ trace_level: ['LOUD'] }, "Unknown trace level 'LOUD'; the levels are 'OFF', 'TIMESTAMPS', 'TENSORS'"],
    [
      { trace_level: 'TIMESTAMPS' },
      `expect a non-empty array of trace levels ('OFF', 'TIMESTAMPS', 'TENSORS') for 'trace_level', got "TIMESTAMPS"`,
    ],
    [{ trace_rate: 'often' }, "Unable to parse 'trace_rate', got: often"],
    [{ trace_rate: '-1' }, "Unable to parse 'trace_rate', value is out of range [ 0, 4294967295 ], got: -1"],
    [{ trace_count: '-2' }, "Unable to parse 'trace_count', value is out of range [ -1, 2147483647 ], got: -2"],
    [
      { log_frequency: '10' },
      "'log_frequency' is not used here: traces go to the OpenTelemetry collector (trace_mode opentelemetry), not to files",
    ],
    [
      { trace_colour: 'red' },
      "Unknown trace setting 'trace_colour'; the settings are 'trace_file', 'trace_level', 'trace_rate', 'trace_count', 'log_frequency', 'trace_mode'",
    ],
  ];
  for (const [body, message] of errors) {
    expect(await setting(url, { trace_count: '3', ...body })).toMatchObject({ status: 400, body: { error: message } });
    // gRPC's settings are lists of strings already: a lone string level is REST's mistake alone.
    if (typeof (body as { trace_level?: unknown }).trace_level === 'string') continue;
    const grpcSettings = Object.fromEntries(
      Object.entries({ trace_count: '3', ...body }).map(([k, v]) => [k, { value: Array.isArray(v) ? v : [v] }]),
    );
    expect(await client.fails('TraceSetting', { settings: grpcSettings })).toEqual({
      code: status.INVALID_ARGUMENT,
      details: message,
    });
  }
  // Nothing changed: each request was checked whole before any of it applied.
  expect((await (await fetch(`${url}/v2/trace/setting`)).json()) as any).toEqual(INITIAL);
  expect(await setting(url, {}, 'does-not-exist')).toMatchObject({
    status: 400,
    body: { error: 'Request for unknown model : does-not-exist' },
  });
  expect(await client.fails('TraceSetting', { model_name: 'does-not-exist' })).toEqual({
    code: status.INVALID_ARGUMENT,
    details: 'Request for unknown model : does-not-exist',
  });
});

test('trace_level OFF traces nothing (no request, no batch span); TIMESTAMPS traces again', async () => {
  const { url } = await start(true);
  await inferSequentially(url, 2);
  let spans = await exported(url);
  expect(inferSpans(spans)).toHaveLength(2);
  expect(batchSpans(spans)).toHaveLength(2);

  expect((await setting(url, { trace_level: ['OFF'] })).body.trace_level).toEqual(['OFF']);
  await inferSequentially(url, 3);
  await setting(url, { trace_level: ['TIMESTAMPS'] });
  spans = await exported(url);
  expect(inferSpans(spans)).toHaveLength(0);
  expect(batchSpans(spans)).toHaveLength(0);

  await inferSequentially(url, 1);
  spans = await exported(url);
  expect(inferSpans(spans)).toHaveLength(1);
  expect(batchSpans(spans)).toHaveLength(1);
});

test('trace_rate 3 traces one inference in 3 (the 3rd and 6th), and their batches alone', async () => {
  const { url } = await start(true);
  await setting(url, { trace_rate: '3' });
  await inferSequentially(url, 7);
  const spans = await exported(url);
  expect(inferSpans(spans)).toHaveLength(2);
  const batches = batchSpans(spans);
  expect(batches).toHaveLength(2);
  expect(batches.flatMap((b) => b.links.map((l) => l.spanId)).sort()).toEqual(
    inferSpans(spans)
      .map((s) => s.spanId)
      .sort(),
  );
});

test('trace_count 2 stops after two traces, and the setting shows what is left; -1 is unlimited again', async () => {
  const { url, client } = await start(true);
  await setting(url, { trace_count: '2' });
  await inferSequentially(url, 5);
  expect(((await (await fetch(`${url}/v2/trace/setting`)).json()) as any).trace_count).toBe('0');
  let spans = await exported(url);
  expect(inferSpans(spans)).toHaveLength(2);
  await setting(url, { trace_count: '-1' });
  await inferSequentially(url, 3);
  // gRPC calls count as inferences too.
  await client.call('ModelInfer', {
    model_name: 'simple',
    inputs: [
      { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], contents: { int_contents: row16(0) } },
      { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], contents: { int_contents: row16(0) } },
    ],
  });
  spans = await exported(url);
  expect(inferSpans(spans)).toHaveLength(3);
  expect(spans.filter((s) => s.name === 'inference.GRPCInferenceService/ModelInfer')).toHaveLength(1);
});

test("a model's own settings: OFF for simple leaves simple_string traced, and null follows the global level again", async () => {
  const { url } = await start(true);
  await setting(url, { trace_level: ['OFF'] }, 'simple');
  expect((await (await fetch(`${url}/v2/trace/setting`)).json()) as any).toEqual(INITIAL);
  await inferSequentially(url, 2);
  await inferSequentially(url, 2, 'simple_string');
  let spans = await exported(url);
  expect(inferSpans(spans)).toHaveLength(0);
  expect(inferSpans(spans, 'simple_string')).toHaveLength(2);
  await setting(url, { trace_level: null }, 'simple');
  await inferSequentially(url, 1);
  spans = await exported(url);
  expect(inferSpans(spans)).toHaveLength(1);
});
