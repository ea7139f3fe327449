import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CHARLM, ensureCharLm, type RunningServer, startServer } from '@batched-fn/server';
import { TEST_CACHE } from './helpers.js';

// Attacks on generation: long prompts that stall everyone's stream, and streams that ignore Connection: close.

interface Worker {
  context(data: {
    modelPath: string;
    hidden: number;
    prefillChunk: number;
    produced: Int32Array;
  }): Promise<WorkerContext>;
  start(requests: Request[], ctx: WorkerContext): unknown[] | Promise<unknown[]>;
  step(states: unknown[], ctx: WorkerContext): Promise<{ value?: string; done?: boolean }[]>;
  dispose(ctx: WorkerContext): Promise<void>;
}
type WorkerContext = { session: { run: (feeds: Record<string, { dims: readonly number[] }>) => Promise<unknown> } };
interface Request {
  prompt: string;
  maxTokens: number;
  stop: string;
  temperature: number;
  seed: number;
}

const request = (prompt: string, maxTokens: number): Request => ({
  prompt,
  maxTokens,
  stop: '',
  temperature: 0,
  seed: 1,
});
const longPrompt = (i: number): string =>
  Array.from({ length: 1000 }, (_, j) => String.fromCharCode(32 + ((i * 31 + j * 7) % 95))).join('');

/** charlm's worker module, run here on this thread, with every `session.run` counted (rows too). */
async function countedWorker(prefillChunk: number) {
  const worker = (await import('../dist/builtin/charlm.worker.js')) as unknown as Worker;
  const ctx = await worker.context({
    modelPath: ensureCharLm(CHARLM, TEST_CACHE),
    hidden: CHARLM.hidden,
    prefillChunk,
    produced: new Int32Array(new SharedArrayBuffer(4)),
  });
  const counts = { runs: 0, rows: 0 };
  const run = ctx.session.run.bind(ctx.session);
  ctx.session.run = (feeds) => {
    counts.runs++;
    counts.rows += feeds.token?.dims[0] ?? 0;
    return run(feeds);
  };
  return { worker, ctx, counts };
}

type Counted = Awaited<ReturnType<typeof countedWorker>>;

/**
 * Steps `states` as the core does (a finished one leaves before the next step) until all have
 * finished or `stop()` says so; `texts[i]` collects state i's tokens. Returns the runs of each step
 * and the states still going.
 */
async function stepAll(
  { worker, ctx, counts }: Counted,
  states: unknown[],
  texts: string[],
  stop = () => false,
): Promise<{ runsPerStep: number[]; left: unknown[] }> {
  let active = states.map((state, index) => ({ state, index }));
  const runsPerStep: number[] = [];
  for (let guard = 0; active.length > 0 && !stop() && guard < 10_000; guard++) {
    const before = counts.runs;
    const outputs = await worker.step(
      active.map((a) => a.state),
      ctx,
    );
    runsPerStep.push(counts.runs - before);
    outputs.forEach((o, i) => {
      const { index } = active[i] as { index: number };
      if (o.value !== undefined) texts[index] += o.value;
    });
    active = active.filter((_, i) => outputs[i]?.done !== true);
  }
  return { runsPerStep, left: active.map((a) => a.state) };
}

test('15 joiners with 1,000-character prompts: start runs nothing, a step runs at most prefillChunk times, and the prefill of all 15 costs O(length) runs, not O(15 x length)', async () => {
  const counted = await countedWorker(8);
  const { worker, ctx, counts } = counted;
  // One stream is running when the 15 arrive.
  const first = await worker.start([request('x', 100_000)], ctx);
  const { left: running } = await stepAll(counted, first, [''], () => counts.runs >= 20);
  counts.runs = counts.rows = 0;
  const joiners = await worker.start(
    Array.from({ length: 15 }, (_, i) => request(longPrompt(i), 2)),
    ctx,
  );
  // Before: start prefilled each joiner alone, one run per character: 15,000 runs before the next step.
  expect(counts.runs).toBe(0);
  const texts = Array.from({ length: 16 }, () => '');
  const { runsPerStep } = await stepAll(counted, [...running, ...joiners], texts, () =>
    texts.slice(1).every((t) => t.length === 2),
  );
  // The running stream kept its pace (at most 8 runs between two of its tokens, and a token every
  // step); the joiners prefilled together, 1,000 positions in 125 steps of 8 runs, then answered.
  expect(Math.max(...runsPerStep)).toBeLessThanOrEqual(8);
  expect(texts[0]).toHaveLength(runsPerStep.length);
  expect(runsPerStep.length).toBeLessThanOrEqual(1000 / 8 + 2);
  expect(counts.runs).toBeLessThan(1_100);
  expect(counts.rows).toBeGreaterThanOrEqual(15 * 1000);
  console.log(
    `prefill of 15 x 1,000 characters: ${counts.runs} runs (${counts.rows} rows) in ${runsPerStep.length} steps, at most ${Math.max(...runsPerStep)} per step`,
  );
  await worker.dispose(ctx);
}, 120_000);

test('chunked prefill changes no text: a prompt prefilled whole and alone, or 3 characters a step among other joiners, answers the same', async () => {
  const prompt = 'The quick brown fox jumps over the lazy dog. '.repeat(3);
  const alone = await countedWorker(10_000);
  const aloneText = [''];
  const { runsPerStep } = await stepAll(alone, await alone.worker.start([request(prompt, 40)], alone.ctx), aloneText);
  // Prefilled whole in the first step: one run per character, then one per token.
  expect(runsPerStep[0]).toBe(prompt.length);
  await alone.worker.dispose(alone.ctx);
  const crowd = await countedWorker(3);
  const texts = ['', '', '', ''];
  const states = await crowd.worker.start(
    [
      request(prompt, 40),
      request(longPrompt(1).slice(0, 300), 50),
      request('', 7),
      { ...request('a', 60), temperature: 0.8, seed: 5 },
    ],
    crowd.ctx,
  );
  await stepAll(crowd, states, texts);
  await crowd.worker.dispose(crowd.ctx);
  expect(aloneText[0]).toHaveLength(40);
  expect(texts[0]).toBe(aloneText[0]);
  expect(texts.map((t) => t.length)).toEqual([40, 50, 7, 60]);
}, 120_000);

describe('over HTTP', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startServer({ port: 0, cacheDir: TEST_CACHE, threads: 1, maxActive: 16, queueCap: 64 });
  }, 60_000);
  afterAll(async () => server?.close());

  const post = (path: string, body: unknown) =>
    fetch(`${server.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });

  /** Reads an SSE response to its end; returns when each event arrived and their tokens. */
  async function events(response: Response): Promise<{ at: number[]; tokens: string[] }> {
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    const at: number[] = [];
    const tokens: string[] = [];
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return { at, tokens };
      buffer += decoder.decode(value, { stream: true });
      for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
        const chunk = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (!chunk.startsWith('data: ')) continue;
        at.push(performance.now());
        tokens.push((JSON.parse(chunk.slice(6)) as { text_output: string }).text_output);
      }
    }
  }

  test('15 clients join with 1,000-character prompts: a running stream keeps its pace, and every token is counted once', async () => {
    const tokensBefore = async () =>
      Number(
        /batched_fn_generated_tokens_total\{model="charlm"\} (\d+)/.exec(
          await (await fetch(`${server.url}/metrics`)).text(),
        )?.[1] ?? 0,
      );
    const counted = await tokensBefore();
    const runningResponse = await post('/v2/models/charlm/generate_stream', {
      text_input: 'x',
      parameters: { max_tokens: 4000 },
    });
    const running = events(runningResponse);
    // Let it run, then 15 long prompts arrive while it streams.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const joinedAt = performance.now();
    const joiners = await Promise.all(
      Array.from({ length: 15 }, async (_, i) =>
        events(
          await post('/v2/models/charlm/generate_stream', { text_input: longPrompt(i), parameters: { max_tokens: 4 } }),
        ),
      ),
    );
    const joinersDone = performance.now();
    const { at, tokens } = await running;
    let stall = 0;
    for (let i = 1; i < at.length; i++)
      if ((at[i] as number) > joinedAt && (at[i - 1] as number) < joinersDone)
        stall = Math.max(stall, (at[i] as number) - (at[i - 1] as number));
    console.log(`running stream's longest gap while 15 x 1,000-character prompts joined: ${stall.toFixed(0)} ms`);
    // Before: every running stream stalled for the 15 prefills back to back, 15,000 runs: 1.9-3.3 s.
    // Now a step runs at most 8 times (about 3 ms here idle); 1 s leaves room for a loaded machine.
    expect(stall).toBeLessThan(1000);
    expect(tokens).toHaveLength(4000);
    expect(joiners.every((j) => j.tokens.length === 4)).toBe(true);
    // Steps where joiners were still prefilling produced no token for them, and none is counted.
    expect((await tokensBefore()) - counted).toBe(4000 + 15 * 4);
  }, 120_000);

  /** A raw HTTP/1.1 request with `Connection: close`; resolves with the response's headers once the server has closed the socket. */
  function closeRequest(
    path: string,
    body: string,
  ): Promise<{ status: number; connection: string | undefined; closedByServer: boolean }> {
    return new Promise((resolve, reject) => {
      const url = new URL(path, server.url);
      const req = httpRequest(
        {
          host: url.hostname,
          port: url.port,
          path: url.pathname,
          method: 'POST',
          agent: false,
          headers: {
            connection: 'close',
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
          },
        },
        (res) => {
          res.resume();
          // Keep-alive would leave the socket open after the body: give the server 5 s to close it.
          const timer = setTimeout(() => {
            res.socket.destroy();
            resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, closedByServer: false });
          }, 5000);
          res.socket.once('close', () => {
            clearTimeout(timer);
            resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, closedByServer: true });
          });
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  test('a streaming client that sent Connection: close gets Connection: close, and its socket is closed after the stream', async () => {
    const streamed = await closeRequest(
      '/v2/models/charlm/generate_stream',
      JSON.stringify({ text_input: 'Hi', parameters: { max_tokens: 3 } }),
    );
    // Before: `connection: keep-alive`, and the socket stayed open.
    expect(streamed).toEqual({ status: 200, connection: 'close', closedByServer: true });
    // The plain answer already did so: the streaming one now matches it.
    expect(
      await closeRequest(
        '/v2/models/charlm/generate',
        JSON.stringify({ text_input: 'Hi', parameters: { max_tokens: 3 } }),
      ),
    ).toEqual({ status: 200, connection: 'close', closedByServer: true });
  }, 30_000);

  test('a streaming client that keeps the connection alive still can', async () => {
    const response = await post('/v2/models/charlm/generate_stream', {
      text_input: 'Hi',
      parameters: { max_tokens: 3 },
    });
    expect(response.headers.get('connection')).toBe('keep-alive');
    expect((await events(response)).tokens).toHaveLength(3);
  }, 30_000);
});

test('prefillChunk is checked when the generator is made', async () => {
  const { createCharLmGenerator } = await import('../dist/formats/generator.js');
  expect(() => createCharLmGenerator({ prefillChunk: 0, cacheDir: TEST_CACHE })).toThrow(
    new RangeError('Expected `prefillChunk` to be an integer from 1 to 1000, got `0` (number)'),
  );
  expect(() => createCharLmGenerator({ prefillChunk: 1.5, cacheDir: TEST_CACHE })).toThrow(
    new RangeError('Expected `prefillChunk` to be an integer from 1 to 1000, got `1.5` (number)'),
  );
  expect(() => createCharLmGenerator({ prefillChunk: '8' as unknown as number, cacheDir: TEST_CACHE })).toThrow(
    new TypeError('Expected `prefillChunk` to be an integer from 1 to 1000, got `8` (string)'),
  );
});

test('--prefill-chunk is at most 1000 (the longest prompt): a larger chunk would prefill whole prompts again and bring the stalls back', async () => {
  const { parseFlags } = await import('../dist/cli/flags.js');
  expect(() => parseFlags('serve', ['--prefill-chunk', '1001'])).toThrow(
    '--prefill-chunk must be at most 1000, got "1001"',
  );
  expect(parseFlags('serve', ['--prefill-chunk', '1000'])).toMatchObject({ prefillChunk: 1000 });
});
