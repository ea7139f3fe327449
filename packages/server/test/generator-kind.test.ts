import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type RunningServer, startServer } from '@batched-fn/server';
import { TEST_CACHE } from './helpers.js';

// A generator is a model kind (issue #23): a user-written model.mjs that exports `step` and no
// `handler`, served by the repository like any model, and generating through the one front.
const REPOSITORY = fileURLToPath(new URL('./fixtures/generators/', import.meta.url));

let server: RunningServer;
beforeAll(async () => {
  server = await startServer({
    modelRepository: REPOSITORY,
    modelControl: 'explicit',
    loadModel: '*',
    port: 0,
    dashboard: 'off',
  });
}, 60_000);
afterAll(async () => server?.close());

const post = (path: string, body: unknown, signal?: AbortSignal) =>
  fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    ...(signal === undefined ? {} : { signal }),
  });

async function events(response: Response): Promise<{ data: any[]; errors: any[] }> {
  const chunks = (await response.text()).split('\n\n').filter((chunk) => chunk !== '');
  return {
    data: chunks.filter((c) => c.startsWith('data: ')).map((c) => JSON.parse(c.slice(6))),
    errors: chunks
      .filter((c) => c.startsWith('event: error\n'))
      .map((c) => JSON.parse(c.split('\ndata: ')[1] as string)),
  };
}

test('a repository generator (ours and Triton layout) is loaded, listed, READY, with metadata and config', async () => {
  const index = (await (await post('/v2/repository/index', {})).json()) as { name: string; state: string }[];
  expect(index.filter((m) => m.state === 'READY').map((m) => m.name)).toEqual(['counter', 'echo', 'tri_echo']);
  expect((await fetch(`${server.url}/v2/models/echo/ready`)).status).toBe(200);
  expect(await (await fetch(`${server.url}/v2/models/echo`)).json()).toEqual({
    name: 'echo',
    versions: ['1'],
    platform: 'batched-fn_js',
    inputs: [
      { name: 'text_input', datatype: 'BYTES', shape: [1] },
      { name: 'delay', datatype: 'FP64', shape: [1] },
      { name: 'upper', datatype: 'BOOL', shape: [1] },
    ],
    outputs: [{ name: 'text_output', datatype: 'BYTES', shape: [-1] }],
  });
  const config = (await (await fetch(`${server.url}/v2/models/echo/config`)).json()) as any;
  expect(config).toMatchObject({
    name: 'echo',
    max_batch_size: 0,
    model_transaction_policy: { decoupled: true },
    input: [
      { name: 'text_input', data_type: 'TYPE_STRING', dims: [1] },
      { name: 'delay', data_type: 'TYPE_FP64', dims: [1] },
      { name: 'upper', data_type: 'TYPE_BOOL', dims: [1] },
    ],
    output: [{ name: 'text_output', data_type: 'TYPE_STRING', dims: [-1] }],
    parameters: {
      max_active: { string_value: '4' },
      batching: { string_value: 'continuous' },
      max_tokens: { string_value: '100' },
      default_max_tokens: { string_value: '50' },
    },
  });
  expect(config.dynamic_batching).toBeUndefined();
  expect((await fetch(`${server.url}/v2/models/tri_echo/versions/1/ready`)).status).toBe(200);
});

test('REST generate: the model ends by itself (its `done`); sampling parameters reach it', async () => {
  const answer = await post('/v2/models/echo/generate', { text_input: 'hello', parameters: { upper: true } });
  expect(answer.status).toBe(200);
  expect(await answer.json()).toEqual({ model_name: 'echo', model_version: '1', text_output: 'HELLO' });
  const triton = await post('/v2/models/tri_echo/versions/1/generate', { text_input: 'abc' });
  expect(((await triton.json()) as { text_output: string }).text_output).toBe('abc');
});

test('SSE: one event per token, in order; max_tokens and stop are the server’s', async () => {
  const whole = await events(await post('/v2/models/echo/generate_stream', { text_input: 'hello' }));
  expect(whole.data.map((e) => e.text_output)).toEqual(['h', 'e', 'l', 'l', 'o']);
  const capped = await post('/v2/models/echo/generate', { text_input: 'hello world', parameters: { max_tokens: 3 } });
  expect(((await capped.json()) as { text_output: string }).text_output).toBe('hel');
  // "lo w" spans four tokens: held back until it is known not to be a stop, and never emitted.
  const stopped = await events(
    await post('/v2/models/echo/generate_stream', { text_input: 'hello world', parameters: { stop: 'lo w' } }),
  );
  expect(stopped.data.map((e) => e.text_output)).toEqual(['h', 'e', 'l']);
  // A prefix of a stop string that turns out not to be one is emitted once it is known.
  const released = await events(
    await post('/v2/models/echo/generate_stream', { text_input: 'hello world', parameters: { stop: ['lox', 'd'] } }),
  );
  expect(released.data.map((e) => e.text_output).join('')).toBe('hello worl');
  expect(released.errors).toEqual([]);
});

test('an unknown sampling parameter, a max_tokens over the cap and an infer call are 400s', async () => {
  const unknown = await post('/v2/models/echo/generate', { text_input: 'x', parameters: { temperature: 1 } });
  expect(unknown.status).toBe(400);
  expect(await unknown.json()).toEqual({
    error: 'Unknown sampling parameter `temperature` (the model accepts `delay`, `upper`)',
  });
  const over = await post('/v2/models/echo/generate', { text_input: 'x', parameters: { max_tokens: 101 } });
  expect(over.status).toBe(400);
  expect(await over.json()).toEqual({ error: 'parameters.max_tokens must be an integer from 1 to 100, got 101' });
  const infer = await post('/v2/models/echo/infer', {
    inputs: [{ name: 'text_input', datatype: 'BYTES', shape: [1], data: ['x'] }],
  });
  expect(infer.status).toBe(400);
  expect(await infer.json()).toEqual({
    error: "HTTP end point doesn't support models with decoupled transaction policy",
  });
  expect((await post('/v2/models/nope/generate', { text_input: 'x' })).status).toBe(404);
});

test('statistics: a generation is a request, and response_stats count each response by its index', async () => {
  const before = (await (await fetch(`${server.url}/v2/models/echo/stats`)).json()) as any;
  const counted = (stats: any, key: string): number => stats.model_stats[0].response_stats?.[key]?.success.count ?? 0;
  const success = (stats: any): number => stats.model_stats[0].inference_stats.success.count;
  await (await post('/v2/models/echo/generate', { text_input: 'abcdefg' })).json();
  const after = (await (await fetch(`${server.url}/v2/models/echo/stats`)).json()) as any;
  expect(success(after) - success(before)).toBe(1);
  for (let i = 0; i < 7; i++) expect(counted(after, String(i)) - counted(before, String(i))).toBe(1);
  const first = after.model_stats[0].response_stats['0'];
  expect(Object.keys(first).sort()).toEqual([
    'cancel',
    'compute_infer',
    'compute_output',
    'empty_response',
    'fail',
    'success',
  ]);
  expect(first.success.ns).toBeGreaterThan(0);
});

test('chat prompts: the model’s chatTemplate, run in a thread of its own, or the documented default', async () => {
  const { chatPrompt, listGenerators } = await import('../dist/protocol/generation.js');
  const messages = [
    { role: 'system', content: 'be brief' },
    { role: 'user', content: 'hi' },
  ];
  expect(await chatPrompt(server.registry, 'echo', messages)).toBe('<system>be brief<user>hi<assistant>');
  expect(await chatPrompt(server.registry, 'counter', messages)).toBe('system: be brief\nuser: hi\nassistant: ');
  expect(listGenerators(server.registry).map((g: { name: string }) => g.name)).toEqual(['counter', 'echo', 'tri_echo']);
});

test('a reader that falls too far behind is cut with a clear error, not buffered without limit', async () => {
  const { startGeneration, STREAM_BUFFER_LIMIT } = await import('../dist/protocol/generation.js');
  const stream = startGeneration(server.registry, {
    model: 'counter',
    prompt: '',
    parameters: {},
    maxTokens: 100_000,
  });
  // Nobody reads: the front buffers up to its bound, then ends the stream with the reason.
  await expect(stream.outcome).rejects.toMatchObject({
    protocolStatus: 'resource-exhausted',
    message: `The stream was cut: its reader fell ${STREAM_BUFFER_LIMIT} chunks behind the model`,
  });
  let read = 0;
  await expect(
    (async () => {
      for await (const _ of stream) read++;
    })(),
  ).rejects.toMatchObject({ protocolStatus: 'resource-exhausted' });
  expect(read).toBe(STREAM_BUFFER_LIMIT + 1);
  const active = () => server.generators.find((g) => g.name === 'counter')?.generate.stats.active;
  for (let i = 0; i < 200 && active() !== 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
  expect(active()).toBe(0);
});

test('unload while streams are open: the accepted streams finish whole, new requests get 503', async () => {
  const open = [0, 1].map(() =>
    post('/v2/models/echo/generate_stream', { text_input: 'abcdefghijklmnop', parameters: { delay: 25 } }),
  );
  const responses = await Promise.all(open);
  const unloading = post('/v2/repository/models/echo/unload', {});
  const state = async () =>
    ((await (await post('/v2/repository/index', {})).json()) as { name: string; state: string }[]).find(
      (m) => m.name === 'echo',
    )?.state;
  for (let i = 0; i < 100 && (await state()) === 'READY'; i++) await new Promise((resolve) => setTimeout(resolve, 5));
  const refused = await post('/v2/models/echo/generate', { text_input: 'x' });
  expect(refused.status).toBe(503);
  expect(refused.headers.get('retry-after')).toBe('1');
  for (const response of responses) {
    const { data, errors } = await events(response);
    expect(errors).toEqual([]);
    expect(data.map((e) => e.text_output).join('')).toBe('abcdefghijklmnop');
  }
  expect((await unloading).status).toBe(200);
  expect(await state()).toBe('UNAVAILABLE');
  expect((await post('/v2/repository/models/echo/load', {})).status).toBe(200);
  expect(((await (await post('/v2/models/echo/generate', { text_input: 'ok' })).json()) as any).text_output).toBe('ok');
}, 30_000);

describe('charlm, the builtin, through the same path', () => {
  let charlm: RunningServer;
  beforeAll(async () => {
    charlm = await startServer({ port: 0, cacheDir: TEST_CACHE, threads: 1, dashboard: 'off' });
  }, 60_000);
  afterAll(async () => charlm?.close());

  test('ready, in the index, with metadata and config; the default model is still the server’s model', async () => {
    expect((await fetch(`${charlm.url}/v2/models/charlm/ready`)).status).toBe(200);
    const index = (await (
      await fetch(`${charlm.url}/v2/repository/index`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      })
    ).json()) as { name: string }[];
    expect(index.map((m) => m.name)).toEqual(['charlm', 'mlp']);
    expect(await (await fetch(`${charlm.url}/v2/models/charlm`)).json()).toEqual({
      name: 'charlm',
      versions: ['1'],
      platform: 'batched-fn_generator',
      inputs: [
        { name: 'text_input', datatype: 'BYTES', shape: [1] },
        { name: 'temperature', datatype: 'FP32', shape: [1] },
        { name: 'seed', datatype: 'UINT32', shape: [1] },
      ],
      outputs: [{ name: 'text_output', datatype: 'BYTES', shape: [-1] }],
    });
    expect(
      ((await (await fetch(`${charlm.url}/v2/models/charlm/config`)).json()) as any).parameters.prefill_chunk,
    ).toEqual({ string_value: '8' });
    expect(charlm.model.name).toBe('mlp');
  });
});
