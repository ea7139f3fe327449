import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { type RunningServer, startServer } from '@batched-fn/server';
import { scratchDir } from './scratch.js';

// OpenAI's API over user-written generators in a model repository (not charlm), with the `openai` client:
// the model's own chatTemplate, its parameters, its end of text, its failure mid-stream, and a full queue.

/** Echoes its prompt back one upper-cased character per step (6 steps); a prompt starting `fail` breaks at step 3. */
const ECHO = `
export const parameters = ['seed'];
export function start(prompts) {
  return prompts.map((p) => ({ text: p.text, i: 0 }));
}
export function step(states) {
  return states.map((s) => {
    s.i++;
    if (s.text.startsWith('fail') && s.i === 3) return new Error('the model broke at step 3');
    return { value: s.text[(s.i - 1) % s.text.length].toUpperCase(), done: s.i >= 6 };
  });
}
export function chatTemplate(messages) {
  return messages.map((m) => '<' + m.role + '>' + m.content).join('') + '<assistant>';
}
`;

/** One token each 5 ms of busy work, for as long as asked: a sequence that holds its slot. */
const SLOW = `
export function start(prompts) {
  return prompts.map(() => ({}));
}
export function step(states) {
  const until = Date.now() + 5;
  while (Date.now() < until);
  return states.map(() => ({ value: '.' }));
}
`;

let server: RunningServer;
let client: OpenAI;
beforeAll(async () => {
  const repository = scratchDir('bfn-openai-repo-');
  for (const [name, source, config] of [
    ['echo', ECHO, {}],
    ['slow', SLOW, { maxActive: 1, channelCap: 1, maxTokens: 100_000 }],
  ] as const) {
    mkdirSync(join(repository, name));
    writeFileSync(join(repository, name, 'model.mjs'), source);
    writeFileSync(join(repository, name, 'config.json'), JSON.stringify(config));
  }
  server = await startServer({ modelRepository: repository, port: 0, threads: 1 });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'x', maxRetries: 0 });
}, 60_000);
afterAll(async () => server?.close());

const slowStats = () => server.registry.get('slow')?.model?.generator?.stream.stats;

test('models.list lists the repository generators', async () => {
  const ids = (await client.models.list()).data.map((m) => m.id).sort();
  expect(ids).toEqual(['echo', 'slow']);
});

test("chat uses the model's chatTemplate; the model's own end is finish_reason stop; usage counts values", async () => {
  const answer = await client.chat.completions.create({
    model: 'echo',
    messages: [{ role: 'user', content: 'hi' }],
  });
  // The prompt the template made is `<user>hi<assistant>`: its first six characters, echoed.
  expect(answer.choices[0]?.message.content).toBe('<USER>');
  expect(answer.choices[0]?.finish_reason).toBe('stop');
  expect(answer.usage).toEqual({ prompt_tokens: 19, completion_tokens: 6, total_tokens: 25 });
  const completion = await client.completions.create({ model: 'echo', prompt: 'abcdefgh', max_tokens: 4, seed: 1 });
  expect([completion.choices[0]?.text, completion.choices[0]?.finish_reason]).toEqual(['ABCD', 'length']);
});

test('a parameter the model does not take is a 400 naming it', async () => {
  const error = await client.completions
    .create({ model: 'echo', prompt: 'x', temperature: 0.5 })
    .catch((e: unknown) => e);
  expect(error).toBeInstanceOf(OpenAI.BadRequestError);
  expect((error as Error).message).toMatch(/`temperature`/);
});

test('a model that fails mid-stream: chunks, then an error event the client raises; unstreamed, a 500', async () => {
  const stream = await client.completions.create({ model: 'echo', prompt: 'failing', stream: true });
  const texts: string[] = [];
  const failure = await (async () => {
    for await (const chunk of stream) texts.push(chunk.choices[0]?.text ?? '');
  })().catch((e: unknown) => e);
  expect(texts.join('')).toBe('FA');
  expect(failure).toBeInstanceOf(OpenAI.APIError);
  expect((failure as Error).message).toMatch(/the model broke at step 3/);
  const whole = await client.completions.create({ model: 'echo', prompt: 'failing' }).catch((e: unknown) => e);
  expect(whole).toBeInstanceOf(OpenAI.InternalServerError);
  expect((whole as InstanceType<typeof OpenAI.InternalServerError>).type).toBe('server_error');
});

test('a full queue is a 429 RateLimitError with Retry-After; an abort frees the slot', async () => {
  const holder = new AbortController();
  const running = await client.completions.create(
    { model: 'slow', prompt: 'x', max_tokens: 50_000, stream: true },
    { signal: holder.signal },
  );
  const reader = running[Symbol.asyncIterator]();
  await reader.next();
  expect(slowStats()?.active).toBe(1);
  // The next one waits (channelCap 1); the one after it is refused.
  const waiter = new AbortController();
  const waiting = client.completions
    .create({ model: 'slow', prompt: 'y', max_tokens: 3 }, { signal: waiter.signal })
    .catch((e: unknown) => e);
  for (let i = 0; i < 200 && slowStats()?.waiting !== 1; i++) await new Promise((r) => setTimeout(r, 10));
  expect(slowStats()?.waiting).toBe(1);
  const response = await fetch(`${server.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'slow', prompt: 'z', max_tokens: 3 }),
  });
  expect(response.status).toBe(429);
  expect(response.headers.get('retry-after')).toBe('1');
  expect(await response.json()).toMatchObject({ error: { type: 'rate_limit_error', code: 'rate_limit_exceeded' } });
  // Freeing the running slot lets the waiting one through.
  holder.abort();
  await reader.return?.();
  const done = (await waiting) as OpenAI.Completion;
  expect(done.choices[0]).toMatchObject({ text: '...', finish_reason: 'length' });
  for (let i = 0; i < 200 && slowStats()?.active !== 0; i++) await new Promise((r) => setTimeout(r, 10));
  expect(slowStats()?.active).toBe(0);
});

test('a client that hangs up on an unstreamed request takes its sequence out of the batch', async () => {
  const controller = new AbortController();
  const pending = client.completions
    .create({ model: 'slow', prompt: 'x', max_tokens: 50_000 }, { signal: controller.signal })
    .catch((e: unknown) => e);
  for (let i = 0; i < 200 && slowStats()?.active !== 1; i++) await new Promise((r) => setTimeout(r, 10));
  expect(slowStats()?.active).toBe(1);
  const aborted = slowStats()?.ended.aborted ?? 0;
  controller.abort();
  expect(await pending).toBeInstanceOf(OpenAI.APIUserAbortError);
  for (let i = 0; i < 200 && slowStats()?.active !== 0; i++) await new Promise((r) => setTimeout(r, 10));
  expect(slowStats()?.active).toBe(0);
  expect(slowStats()?.ended.aborted).toBe(aborted + 1);
});
