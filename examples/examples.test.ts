import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { expect, inject, test } from 'vitest';

const root = new URL('../', import.meta.url);

/** Runs an example as a user would (`node examples/x.mjs` from the repository), and returns what it printed. */
async function run(file: string): Promise<string> {
  const { stdout, stderr } = await promisify(execFile)(process.execPath, [file], { cwd: root, timeout: 15_000 });
  expect(stderr).toBe('');
  return stdout;
}

test("quickstart, run alone, prints each caller's answer from one batched model run", async () => {
  expect(await run('examples/dist/quickstart.js')).toBe('[ 3, 7, 11 ] in 1 batch\n');
});

test('the .mjs twins print what their TypeScript examples print', async () => {
  expect(await run('examples/quickstart.mjs')).toBe('[ 3, 7, 11 ] in 1 batch\n');
  expect(await run('examples/streaming.mjs')).toBe("[ 'batch', 'me', 'continuously' ] in 12 steps\n");
  expect(await run('examples/dist/streaming.js')).toBe(await run('examples/streaming.mjs'));
  expect(await run('examples/worker-pool.mjs')).toBe('score 5 input detached: true\n');
  expect(await run('examples/dist/worker-pool.js')).toBe(await run('examples/worker-pool.mjs'));
});

test('http-server.mjs, run alone, prints a curl line that it answers, and exits 0 on SIGTERM', async () => {
  const child = spawn(process.execPath, ['examples/http-server.mjs'], {
    cwd: root,
    env: { ...process.env, PORT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    const [line] = (await once(createInterface({ input: child.stdout }), 'line')) as [string];
    const url = /^Try it: curl '(http:\/\/127\.0\.0\.1:\d+\/\?text=hello)'$/.exec(line)?.[1];
    expect(url, line).toBeDefined();
    const answer = await fetch(url as string);
    expect(answer.status).toBe(200);
    expect(await answer.json()).toEqual({ length: 5 });
    child.kill('SIGTERM');
    expect(await once(child, 'exit')).toEqual([0, null]);
  } finally {
    child.kill('SIGKILL');
  }
});

test('the HTTP example answers 200, and 503 with Retry-After once channelCap items wait', async () => {
  const { server, shutdown, model, predict } = await import('./dist/http-server.js');
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}/?text=hello`;
  const ok = await fetch(url);
  expect(ok.status).toBe(200);
  expect(await ok.json()).toEqual({ length: 5 });

  // Hold the model so requests pile up: one batch of 32 runs, 256 wait, the next one is shed.
  const real = model.predict;
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  model.predict = async (texts: string[]) => {
    await held;
    return real(texts);
  };
  const accepted = Array.from({ length: 32 + 256 }, () => fetch(url));
  while (predict.stats.queued < 256) await new Promise((resolve) => setTimeout(resolve, 5));
  const shed = await fetch(url);
  expect(shed.status).toBe(503);
  expect(shed.headers.get('retry-after')).toBe('1');
  expect(((await shed.json()) as { error: string }).error).toMatch(/ERR_QUEUE_FULL|Queue is full/);
  release();
  const statuses = await Promise.all(accepted.map(async (r) => (await r).status));
  // The held first batch may leave with fewer than 32, so a few of these may be shed too;
  // what must hold is that every request got 200 or 503 and the server's own counts agree.
  expect(statuses.every((s) => s === 200 || s === 503)).toBe(true);
  expect(statuses.filter((s) => s === 200).length + 1).toBe(predict.stats.completed);
  expect(statuses.filter((s) => s === 503).length + 1).toBe(predict.stats.failures.ERR_QUEUE_FULL);
  model.predict = real;
  await shutdown();
});

test('the worker example transfers its input and gets the score back', async () => {
  const { score, detached } = await import('./dist/worker-pool.js');
  expect(score).toBe(5);
  expect(detached).toBe(true);
});

test('the fastify plugin serves the model inside an existing app', async () => {
  process.env.BATCHED_FN_CACHE ??= inject('testCache');
  const { app, shutdown } = await import('./dist/fastify-plugin.js');
  expect((await app.inject({ method: 'GET', url: '/' })).json()).toEqual({ service: 'my app' });
  const response = await app.inject({
    method: 'POST',
    url: '/v2/models/mlp/infer',
    headers: { 'content-type': 'application/json' },
    payload: { inputs: [{ name: 'input', shape: [2, 256], datatype: 'FP32', data: Array(512).fill(0.25) }] },
  });
  expect(response.statusCode).toBe(200);
  const [output] = response.json().outputs;
  expect(output.shape).toEqual([2, 16]);
  expect(output.data.slice(0, 16)).toEqual(output.data.slice(16));
  expect((await app.inject({ method: 'GET', url: '/metrics' })).body).toContain(
    'batched_fn_batch_size_count{model="mlp"} 1',
  );
  await shutdown();
});

// The README and every page of docs/: each TypeScript block, and each JS block that names its file, is that file.
const pages = [
  'README.md',
  ...readdirSync(new URL('docs/', root))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];

test('every TypeScript block in the README and docs/ is one of these example files, verbatim', () => {
  let shown = 0;
  for (const page of pages) {
    const text = readFileSync(new URL(page, root), 'utf8');
    for (const [, lang, block] of text.matchAll(/```(ts|js)\n([\s\S]*?)```/g) as Iterable<string[]>) {
      const file = /^\/\/ file: (\S+)/.exec(block as string)?.[1];
      if (lang === 'js' && file === undefined) continue; // a sketch (a model.js outline), not a file to run
      expect(file, `${page}: block without a "// file:" line:\n${(block as string).slice(0, 80)}`).toBeDefined();
      expect(block, `${page}: ${file}`).toBe(readFileSync(new URL(file as string, root), 'utf8'));
      shown++;
    }
  }
  expect(shown).toBeGreaterThanOrEqual(7);
});

test('the example model repository serves the MLP, the OCR classifier and the JS sentiment model side by side', async () => {
  const { cpSync, mkdtempSync, rmSync } = await import('node:fs');
  const { prepareRepository, REPOSITORY } = await import('./dist/model-repository/prepare.js');
  const { startServer } = await import('@batched-fn/server');
  const repository = mkdtempSync(join(tmpdir(), 'bfn-example-repo-'));
  cpSync(REPOSITORY, repository, { recursive: true, filter: (source) => !source.endsWith('model.onnx') });
  prepareRepository(repository, inject('testCache'));
  const server = await startServer({ modelRepository: repository, port: 0, threads: 1 });
  try {
    const post = async (model: string, body: unknown) =>
      (
        await fetch(`${server.url}/v2/models/${model}/infer`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        })
      ).json() as Promise<{ outputs: { name: string; data: unknown[] }[] }>;
    const index = (await (await fetch(`${server.url}/v2/repository/index`, { method: 'POST' })).json()) as {
      name: string;
      state: string;
    }[];
    expect(index.map((m) => [m.name, m.state])).toEqual([
      ['mlp', 'READY'],
      ['ocr', 'READY'],
      ['sentiment', 'READY'],
    ]);
    const sentiment = await post('sentiment', {
      inputs: [
        {
          name: 'text',
          shape: [3],
          datatype: 'BYTES',
          data: ['I love this, great and fast', 'terrible and slow, I hate it', 'not good'],
        },
      ],
    });
    expect(sentiment.outputs[0]?.data).toEqual(['positive', 'negative', 'negative']);
    const mlp = await post('mlp', {
      inputs: [{ name: 'input', shape: [1, 256], datatype: 'FP32', data: Array(256).fill(0.5) }],
    });
    expect(mlp.outputs[0]?.data).toHaveLength(16);
    const ocr = await post('ocr', {
      inputs: [{ name: 'x', shape: [1, 3, 48, 192], datatype: 'FP32', data: Array(3 * 48 * 192).fill(0.1) }],
    });
    expect(ocr.outputs[0]?.data).toHaveLength(2);
  } finally {
    await server.close();
    rmSync(repository, { recursive: true, force: true });
  }
});

test('the streaming example spells every word through one continuously batched step loop', async () => {
  const { words, spell } = await import('./dist/streaming.js');
  expect(words).toEqual(['batch', 'me', 'continuously']);
  expect(spell.stats.steps).toBe('continuously'.length);
  await spell.close();
});
