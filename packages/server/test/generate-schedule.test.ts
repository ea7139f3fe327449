import { cpSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { type RunningServer, startServer } from '@batched-fn/server';
import { scratchDir } from './scratch.js';

// The schedule-policy parameters on Triton's generate extension: `priority` (a level, 1 the highest) and
// `timeout` (µs) are the server's, as on infer and on gRPC, never a model's sampling parameter.
let server: RunningServer | undefined;

beforeAll(async () => {
  const repo = scratchDir('bfn-generate-schedule-');
  cpSync(new URL('./fixtures/generators/echo/', import.meta.url), join(repo, 'echo'), { recursive: true });
  // One sequence at a time: whoever waits is chosen by priority when the slot frees.
  writeFileSync(
    join(repo, 'echo', 'config.json'),
    JSON.stringify({ maxActive: 1, maxTokens: 100, defaultMaxTokens: 50, priorityLevels: 2 }),
  );
  server = await startServer({ modelRepository: repo, port: 0, host: '127.0.0.1', workers: 1 });
}, 60_000);
afterAll(async () => server?.close());

/** Resolves once the echo generator's stats say so (polled; the test's own timeout bounds it). */
async function until(holds: (stats: { active: number; waiting: number }) => boolean): Promise<void> {
  const stream = (server as RunningServer).generators.find((g) => g.name === 'echo')?.generate;
  while (stream === undefined || !holds(stream.stats)) await new Promise((resolve) => setTimeout(resolve, 5));
}

const generate = (text: string, parameters: Record<string, unknown>) =>
  fetch(`${(server as RunningServer).url}/v2/models/echo/generate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ text_input: text, parameters }),
  });

test('generate: a waiting request of priority 1 joins before one of priority 2 sent earlier', async () => {
  const finished: string[] = [];
  const track = async (name: string, response: Promise<Response>) => {
    const answer = await response;
    expect(answer.status).toBe(200);
    finished.push(name);
    return ((await answer.json()) as { text_output: string }).text_output;
  };
  // The slot is held for 6 steps of 100 ms while the other two queue, the lower level first.
  const running = track('running', generate('hold..', { delay: 100 }));
  await until((s) => s.active === 1);
  const low = track('low', generate('low', { priority: 2 }));
  await until((s) => s.waiting === 1);
  const high = track('high', generate('high', { priority: 1 }));
  await until((s) => s.waiting === 2);
  expect(await Promise.all([running, low, high])).toEqual(['hold..', 'low', 'high']);
  expect(finished).toEqual(['running', 'high', 'low']);
});

test('generate: `timeout` (µs) bounds the wait to join; a level the model lacks and a bad timeout are 400s', async () => {
  const running = generate('hold..', { delay: 100 });
  await until((s) => s.active === 1);
  const late = await generate('late', { timeout: 50_000 });
  expect(late.status).toBe(504);
  expect(((await late.json()) as { error: string }).error).toMatch(/timed out|timeout/i);
  expect((await running).status).toBe(200);
  const tooLow = await generate('x', { priority: 3 });
  expect(tooLow.status).toBe(400);
  expect(((await tooLow.json()) as { error: string }).error).toBe(
    'parameters.priority is 3, but model `echo` has priority levels 1 to 2 (1 is the highest; 0 means its default level, 2)',
  );
  const negative = await generate('x', { timeout: -1 });
  expect(negative.status).toBe(400);
  expect(((await negative.json()) as { error: string }).error).toMatch(
    /^parameters.timeout must be an integer number of microseconds/,
  );
});
