import OpenAI from 'openai';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { ensureMlpModel, type RunningServer, startServer } from '@batched-fn/server';
import { parseFlags } from '../dist/cli/flags.js';
import { TEST_CACHE } from './helpers.js';

// OpenAI's API over charlm, with the official `openai` package as the client: the client is the spec.
let server: RunningServer;
let client: OpenAI;
beforeAll(async () => {
  server = await startServer({ port: 0, cacheDir: TEST_CACHE, threads: 1, maxActive: 16, channelCap: 64 });
  // No retries: a refusal is asserted as it is, not retried.
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'x', maxRetries: 0 });
}, 60_000);
afterAll(async () => server?.close());

/** charlm's running sequences (the ones in its batch). */
const active = (): number | undefined => server.registry.get('charlm')?.model?.generator?.stream.stats.active;

/** The same prompt and settings over the KServe generate route: the reference text. */
async function generated(prompt: string, parameters: Record<string, unknown>): Promise<string> {
  const response = await fetch(`${server.url}/v2/models/charlm/generate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ text_input: prompt, parameters }),
  });
  expect(response.status).toBe(200);
  return ((await response.json()) as { text_output: string }).text_output;
}

const codePoints = (text: string): number => [...text].length;

test('models.list lists charlm in OpenAI shape; models.retrieve finds it', async () => {
  const page = await client.models.list();
  const charlm = page.data.find((m) => m.id === 'charlm');
  expect(charlm).toMatchObject({ id: 'charlm', object: 'model', owned_by: 'batched-fn' });
  expect(Number.isInteger(charlm?.created)).toBe(true);
  expect(await client.models.retrieve('charlm')).toEqual(charlm);
  // The classifier is not a generator: not an OpenAI model.
  expect(page.data.map((m) => m.id)).not.toContain('mlp');
});

test('completions.create: max_tokens values, finish_reason length, usage counted, the text of /generate', async () => {
  const answer = await client.completions.create({ model: 'charlm', prompt: 'Hello', max_tokens: 24 });
  expect(answer.id).toMatch(/^cmpl-/);
  expect(answer.object).toBe('text_completion');
  expect(answer.model).toBe('charlm');
  expect(Math.abs(answer.created - Date.now() / 1000)).toBeLessThan(60);
  expect(answer.choices).toHaveLength(1);
  const [choice] = answer.choices;
  expect(choice?.finish_reason).toBe('length');
  expect(choice?.index).toBe(0);
  expect(codePoints(choice?.text ?? '')).toBe(24);
  expect(answer.usage).toEqual({ prompt_tokens: 5, completion_tokens: 24, total_tokens: 29 });
  expect(choice?.text).toBe(await generated('Hello', { max_tokens: 24 }));
});

test('completions.create with stream: chunks add up to the same text, then finish_reason, then usage', async () => {
  const whole = await client.completions.create({ model: 'charlm', prompt: 'Hello', max_tokens: 24 });
  const stream = await client.completions.create({
    model: 'charlm',
    prompt: 'Hello',
    max_tokens: 24,
    stream: true,
    stream_options: { include_usage: true },
  });
  const chunks: OpenAI.Completion[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  const last = chunks.at(-1);
  expect(last?.choices).toEqual([]);
  expect(last?.usage).toEqual({ prompt_tokens: 5, completion_tokens: 24, total_tokens: 29 });
  const finishing = chunks.at(-2);
  expect(finishing?.choices[0]).toMatchObject({ text: '', finish_reason: 'length' });
  const body = chunks.slice(0, -2);
  expect(body.length).toBeGreaterThan(1);
  expect(chunks[0]?.id).toMatch(/^cmpl-/);
  for (const chunk of chunks) expect([chunk.id, chunk.object]).toEqual([chunks[0]?.id, 'text_completion']);
  for (const chunk of body) {
    expect(chunk.choices[0]?.finish_reason).toBeNull();
    expect(chunk.usage).toBeNull();
  }
  expect(body.map((c) => c.choices[0]?.text).join('')).toBe(whole.choices[0]?.text);
});

test('a stream without include_usage has no usage chunk and no usage field', async () => {
  const stream = await client.completions.create({ model: 'charlm', prompt: 'Hi', max_tokens: 5, stream: true });
  const chunks: OpenAI.Completion[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('length');
  expect(chunks.every((c) => !('usage' in c))).toBe(true);
  expect(chunks.map((c) => c.choices[0]?.text).join('')).toHaveLength(5);
});

test('chat.completions.create: the default template, the same text as a completion of its prompt, usage', async () => {
  const messages = [
    { role: 'system' as const, content: 'You are terse.' },
    { role: 'user' as const, content: [{ type: 'text' as const, text: 'Say hi' }] },
  ];
  const answer = await client.chat.completions.create({ model: 'charlm', messages, max_completion_tokens: 20 });
  expect(answer.id).toMatch(/^chatcmpl-/);
  expect(answer.object).toBe('chat.completion');
  const [choice] = answer.choices;
  expect(choice?.message.role).toBe('assistant');
  expect(choice?.finish_reason).toBe('length');
  // The documented default template: `role: content` lines, then `assistant: `.
  const prompt = 'system: You are terse.\nuser: Say hi\nassistant: ';
  const promptTokens = codePoints(prompt);
  expect(answer.usage).toEqual({ prompt_tokens: promptTokens, completion_tokens: 20, total_tokens: promptTokens + 20 });
  const plain = await client.completions.create({ model: 'charlm', prompt, max_tokens: 20 });
  expect(choice?.message.content).toBe(plain.choices[0]?.text);
});

test('chat.completions.create with stream: role first, content deltas, finish_reason, usage last', async () => {
  const messages = [{ role: 'user' as const, content: 'Tell me' }];
  const whole = await client.chat.completions.create({ model: 'charlm', messages, max_tokens: 16 });
  const stream = await client.chat.completions.create({
    model: 'charlm',
    messages,
    max_tokens: 16,
    stream: true,
    stream_options: { include_usage: true },
  });
  const chunks: OpenAI.ChatCompletionChunk[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  expect(chunks[0]?.choices[0]?.delta).toEqual({ role: 'assistant', content: '' });
  expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0]?.id)).toBe(true);
  expect(chunks.at(-2)?.choices[0]).toMatchObject({ delta: {}, finish_reason: 'length' });
  expect(chunks.at(-1)).toMatchObject({ choices: [], usage: whole.usage });
  const content = chunks
    .slice(1, -2)
    .map((c) => c.choices[0]?.delta.content)
    .join('');
  expect(content).toBe(whole.choices[0]?.message.content);
});

test('stop: the text ends before the first stop string (not in it); finish_reason stop; tokens counted', async () => {
  const free = (await client.completions.create({ model: 'charlm', prompt: 'Once upon', max_tokens: 40 })).choices[0]
    ?.text as string;
  // A stop string that occurs in the free text (from its 10th character), and one that never does.
  const stop = free.slice(10, 13);
  const at = free.indexOf(stop);
  const answer = await client.completions.create({
    model: 'charlm',
    prompt: 'Once upon',
    max_tokens: 40,
    stop: [stop, '\u0007never'],
  });
  expect(answer.choices[0]?.text).toBe(free.slice(0, at));
  expect(answer.choices[0]?.text).not.toContain(stop);
  expect(answer.choices[0]?.finish_reason).toBe('stop');
  // A charlm token is one character: the stop string is complete at the token that ends it.
  expect(answer.usage?.completion_tokens).toBe(at + codePoints(stop));
  // Streamed alike: the held-back start of a stop string is never sent.
  const stream = await client.completions.create({
    model: 'charlm',
    prompt: 'Once upon',
    max_tokens: 40,
    stop,
    stream: true,
  });
  let text = '';
  let finish: string | null | undefined;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.text ?? '';
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  expect([text, finish]).toEqual([free.slice(0, at), 'stop']);
});

test('seed: the same seed gives the same text at temperature 1; another seed another text', async () => {
  const sample = async (seed: number) =>
    (await client.completions.create({ model: 'charlm', prompt: 'Seeded', max_tokens: 32, temperature: 1, seed }))
      .choices[0]?.text;
  const [a, b, c] = await Promise.all([sample(42), sample(42), sample(43)]);
  expect(a).toBe(b);
  expect(a).not.toBe(c);
  expect(a).not.toBe(await generated('Seeded', { max_tokens: 32 }));
});

test('n=2 is a BadRequestError with our message; an unknown model a NotFoundError; unknown fields 400', async () => {
  const n2 = await client.completions.create({ model: 'charlm', prompt: 'x', n: 2 }).catch((e: unknown) => e);
  expect(n2).toBeInstanceOf(OpenAI.BadRequestError);
  expect((n2 as InstanceType<typeof OpenAI.BadRequestError>).message).toBe(
    '400 n must be 1: this server generates one choice per request, got 2',
  );
  expect((n2 as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('n');
  expect((n2 as InstanceType<typeof OpenAI.BadRequestError>).type).toBe('invalid_request_error');

  const missing = await client.chat.completions
    .create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] })
    .catch((e: unknown) => e);
  expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
  expect((missing as InstanceType<typeof OpenAI.NotFoundError>).code).toBe('model_not_found');
  const retrieve = await client.models.retrieve('no-such-model').catch((e: unknown) => e);
  expect(retrieve).toBeInstanceOf(OpenAI.NotFoundError);

  const tools = await client.chat.completions
    .create({
      model: 'charlm',
      messages: [{ role: 'user', content: 'x' }],
      tools: [{ type: 'function', function: { name: 'f', parameters: {} } }],
    })
    .catch((e: unknown) => e);
  expect(tools).toBeInstanceOf(OpenAI.BadRequestError);
  expect((tools as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('tools');
  // A sampling setting the model does not take is the model's refusal, in the same shape.
  const topP = await client.completions
    .create({ model: 'charlm', prompt: 'x', top_p: 0.5, stream: true })
    .catch((e: unknown) => e);
  expect(topP).toBeInstanceOf(OpenAI.BadRequestError);
  expect((topP as Error).message).toMatch(/top_p/);
});

test('abort mid-stream: the client stops reading, and the sequence leaves the batch (active back to 0)', async () => {
  const controller = new AbortController();
  const stream = await client.completions.create(
    { model: 'charlm', prompt: 'A long one', max_tokens: 4000, stream: true },
    { signal: controller.signal },
  );
  let chunks = 0;
  for await (const _chunk of stream) {
    if (++chunks < 3) continue;
    controller.abort();
    break;
  }
  expect(chunks).toBe(3);
  for (let i = 0; i < 200 && (active() ?? 0) > 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
  expect(active()).toBe(0);
});

test("raw HTTP: a non-JSON body is 415, malformed JSON 400, an unknown /v1 path 404, in OpenAI's shape", async () => {
  const post = (path: string, body: string, type: string) =>
    fetch(`${server.url}/v1${path}`, { method: 'POST', headers: { 'content-type': type }, body });
  const form = await post('/completions', 'model=charlm&prompt=x', 'application/x-www-form-urlencoded');
  expect(form.status).toBe(415);
  expect(((await form.json()) as { error: { type: string } }).error.type).toBe('invalid_request_error');
  const text = await post('/completions', JSON.stringify({ model: 'charlm', prompt: 'x' }), 'text/plain');
  expect(text.status).toBe(415);
  const malformed = await post('/completions', '{"model":', 'application/json');
  expect(malformed.status).toBe(400);
  expect(((await malformed.json()) as { error: { param: string } }).error.param).toBe('body');
  const unknown = await fetch(`${server.url}/v1/embeddings`, { method: 'POST' });
  expect(unknown.status).toBe(404);
  expect(await unknown.json()).toMatchObject({ error: { type: 'invalid_request_error', code: 'unknown_url' } });
});

test('--openai off: the flag parses, and a server started with it has no /v1', async () => {
  expect(parseFlags('serve', ['--openai', 'off'])).toEqual({ openai: 'off' });
  expect(() => parseFlags('serve', ['--openai', 'maybe'])).toThrow('--openai must be on or off, got "maybe"');
  // A classifier only (no charlm to build): the routes are what is tested.
  const model = ensureMlpModel(undefined, TEST_CACHE);
  const off = await startServer({ port: 0, model, threads: 1, openai: 'off' });
  try {
    expect((await fetch(`${off.url}/v1/models`)).status).toBe(404);
    expect((await fetch(`${off.url}/v2/health/ready`)).status).toBe(200);
  } finally {
    await off.close();
  }
}, 60_000);

test('--http-restricted-api covers /v1: inference the completions, metadata the model list', async () => {
  const model = ensureMlpModel(undefined, TEST_CACHE);
  const restricted = await startServer({
    port: 0,
    model,
    threads: 1,
    httpRestrictedApi: 'inference,metadata:x-key=secret',
  });
  const call = (path: string, key?: string) =>
    fetch(`${restricted.url}/v1${path}`, {
      method: path === '/models' ? 'GET' : 'POST',
      headers: { 'content-type': 'application/json', ...(key === undefined ? {} : { 'x-key': key }) },
      ...(path === '/models' ? {} : { body: JSON.stringify({ model: 'mlp', prompt: 'x' }) }),
    });
  try {
    const refused = await call('/completions');
    expect(refused.status).toBe(403);
    expect(await refused.json()).toMatchObject({
      error: { message: "This API is restricted, expecting header 'x-key'", type: 'invalid_request_error' },
    });
    expect((await call('/completions', 'wrong')).status).toBe(403);
    expect((await call('/models')).status).toBe(403);
    // With the header, the request is served: there is no generator of that name (a classifier only).
    expect((await call('/completions', 'secret')).status).toBe(404);
    expect(await (await call('/models', 'secret')).json()).toEqual({ object: 'list', data: [] });
  } finally {
    await restricted.close();
  }
}, 60_000);
