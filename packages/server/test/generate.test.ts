import { afterAll, beforeAll, expect, test } from 'vitest';
import { type RunningServer, startServer } from '@batched-fn/server';
import { TEST_CACHE } from './helpers.js';

// Triton's generate extension over charlm, batched continuously in a worker thread.
let server: RunningServer;
beforeAll(async () => {
  server = await startServer({ port: 0, cacheDir: TEST_CACHE, threads: 1, maxActive: 16, queueCap: 64 });
}, 60_000);
afterAll(async () => server?.close());

const post = (path: string, body: unknown, signal?: AbortSignal) =>
  fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    ...(signal === undefined ? {} : { signal }),
  });

async function generate(prompt: string, maxTokens: number, extra: Record<string, unknown> = {}): Promise<string> {
  const response = await post('/v2/models/charlm/generate', {
    text_input: prompt,
    parameters: { max_tokens: maxTokens, ...extra },
  });
  expect(response.status).toBe(200);
  const body = (await response.json()) as { model_name: string; text_output: string };
  expect(body.model_name).toBe('charlm');
  return body.text_output;
}

async function events(response: Response): Promise<unknown[]> {
  const text = await response.text();
  return text
    .split('\n\n')
    .filter((chunk) => chunk.startsWith('data: '))
    .map((chunk) => JSON.parse(chunk.slice(6)));
}

test('generate answers max_tokens characters; generate_stream sends them one event each, and they add up to the same text', async () => {
  const whole = await generate('Hello', 24);
  expect(whole).toHaveLength(24);
  const response = await post('/v2/models/charlm/generate_stream', {
    text_input: 'Hello',
    parameters: { max_tokens: 24 },
  });
  expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const tokens = (await events(response)) as { text_output: string }[];
  expect(tokens).toHaveLength(24);
  expect(tokens.map((t) => t.text_output).join('')).toBe(whole);
});

test('batched output equals unbatched output: the same prompt alone and among 15 other streams', async () => {
  const alone = await generate('The quick brown fox', 40);
  const crowd = await Promise.all([
    generate('The quick brown fox', 40),
    ...Array.from({ length: 15 }, (_, i) => generate(`other prompt ${i}`, 1 + ((i * 7) % 60))),
  ]);
  expect(crowd[0]).toBe(alone);
  expect(server.generators[0]?.generate.stats.stepSize.max).toBeGreaterThan(1);
});

test('a client that disconnects mid-stream leaves the batch: active sequences return to 0', async () => {
  const controller = new AbortController();
  const response = await post(
    '/v2/models/charlm/generate_stream',
    { text_input: 'x', parameters: { max_tokens: 4000 } },
    controller.signal,
  );
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  await reader.read();
  controller.abort();
  const stats = () => server.generators[0]?.generate.stats;
  for (let i = 0; i < 200 && (stats()?.active ?? 0) > 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
  expect(stats()?.active).toBe(0);
  expect(stats()?.ended.aborted).toBeGreaterThan(0);
  // The gauges return to 0 when clients leave; tokens, steps and time to first token are counted.
  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  expect(metrics).toContain('batched_fn_active_sequences{model="charlm"} 0');
  expect(metrics).toContain('batched_fn_waiting_sequences{model="charlm"} 0');
  expect(Number(/batched_fn_generated_tokens_total\{model="charlm"\} (\d+)/.exec(metrics)?.[1])).toBeGreaterThan(0);
  expect(metrics).toMatch(/batched_fn_step_batch_size_count\{model="charlm"\} [1-9]/);
  expect(metrics).toMatch(/batched_fn_time_to_first_token_seconds_count\{model="charlm"\} [1-9]/);
});

test('a bad body is a 400, an unknown model a 404', async () => {
  const bad = await post('/v2/models/charlm/generate', { text_input: 'x', parameters: { max_tokens: 0 } });
  expect(bad.status).toBe(400);
  expect(((await bad.json()) as { error: string }).error).toBe(
    'parameters.max_tokens must be an integer from 1 to 4096, got 0',
  );
  expect((await post('/v2/models/charlm/generate', { parameters: {} })).status).toBe(400);
  const long = await post('/v2/models/charlm/generate', { text_input: 'x'.repeat(1001) });
  expect(long.status).toBe(400);
  expect(((await long.json()) as { error: string }).error).toBe(
    'text_input must be a string of at most 1000 characters',
  );
  expect((await post('/v2/models/nope/generate_stream', { text_input: 'x' })).status).toBe(404);
});

test('beyond the queue cap a stream is refused with 503 before any event', async () => {
  const many = Array.from({ length: 200 }, () =>
    post('/v2/models/charlm/generate', { text_input: 'y', parameters: { max_tokens: 200 } }),
  );
  const statuses = (await Promise.all(many)).map((r) => r.status);
  expect(statuses.filter((s) => s === 503).length).toBeGreaterThan(0);
  expect(statuses.every((s) => s === 200 || s === 503)).toBe(true);
});

test('the generation load (batched-fn bench --generate) streams tokens and measures them', async () => {
  const { runGenerateLoad } = await import('../dist/cli/bench/generate-load.js');
  const result = await runGenerateLoad({ url: server.url, model: 'charlm', streams: 4, durationSeconds: 1 });
  expect(result.errors).toBe(0);
  expect(result.completed).toBeGreaterThan(0);
  expect(result.tokensPerSecond).toBeGreaterThan(0);
  expect(result.ttftP99).toBeGreaterThanOrEqual(result.ttftP50);
});
