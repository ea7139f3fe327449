import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { type RunningServer, startServer } from '@batched-fn/server';
import { jsonRequest, postJson, TEST_CACHE } from './helpers.js';
import { scratchDir } from './scratch.js';

// Errors outside the body checks: what a user who types a URL by hand reads.
let server: RunningServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

const version = (await import('../package.json', { with: { type: 'json' } })).default.version as string;

/** `count` tiny JS models, m00, m01...: a repository with more names than an error lists. */
function repository(count: number): string {
  const repo = scratchDir('bfn-routes-');
  for (let i = 0; i < count; i++) {
    const dir = join(repo, `m${String(i).padStart(2, '0')}`);
    mkdirSync(dir);
    writeFileSync(
      join(dir, 'model.mjs'),
      `export const inputs = [{ name: 'x', datatype: 'FP32', shape: [-1, 1] }];
export const outputs = [{ name: 'y', datatype: 'FP32', shape: [-1, 1] }];
export function handler(requests) { return requests.map((r) => ({ y: { data: r.inputs.x.data } })); }`,
    );
  }
  return repo;
}

test('GET / is a small index: the package, its version, the models and where to go; GET /v2/models lists the models', async () => {
  server = await startServer({ port: 0, cacheDir: TEST_CACHE });
  const index = await fetch(`${server.url}/`);
  expect(index.status).toBe(200);
  expect(await index.json()).toMatchObject({
    name: 'batched-fn',
    version,
    models: expect.arrayContaining(['mlp']),
    links: { dashboard: '/dashboard', metrics: '/metrics', server: '/v2', models: '/v2/models' },
  });
  const models = await fetch(`${server.url}/v2/models`);
  expect(models.status).toBe(200);
  const listed = ((await models.json()) as { models: { name: string }[] }).models;
  expect(listed.find((m) => m.name === 'mlp')).toEqual({ name: 'mlp', versions: ['1'], state: 'READY' });
  // The index and the list name the same models.
  const names = ((await (await fetch(`${server.url}/`)).json()) as { models: string[] }).models;
  expect(listed.map((m) => m.name).sort()).toEqual([...names].sort());
});

test('a wrong method on a known route is a 405 with Allow; a wrong route under a model names its routes', async () => {
  server = await startServer({ port: 0, cacheDir: TEST_CACHE, dashboard: 'off' });
  const get = await fetch(`${server.url}/v2/models/mlp/infer`);
  expect([get.status, get.headers.get('allow')]).toEqual([405, 'OPTIONS, POST']);
  expect(await get.json()).toEqual({
    error: 'Method GET is not allowed on /v2/models/mlp/infer: it takes OPTIONS, POST',
  });
  // POST to the model itself: the request was meant for its /infer.
  const post = await postJson(
    `${server.url}/v2/models/mlp`,
    jsonRequest('input', [1, 256], 'FP32', Array(256).fill(0)),
  );
  expect([post.status, post.headers.get('allow'), post.body.error]).toEqual([
    405,
    'GET, HEAD, OPTIONS',
    'Method POST is not allowed on /v2/models/mlp: it takes GET, HEAD, OPTIONS; to infer, POST /v2/models/mlp/infer',
  ]);
  const typo = await postJson(`${server.url}/v2/models/mlp/infr`, '{}');
  expect(typo.status).toBe(404);
  expect(typo.body.error).toMatch(
    /^No route for POST \/v2\/models\/mlp\/infr\. Inference is POST \/v2\/models\/mlp\/infer; the model's other routes: .*GET …\/config, .*GET …\/ready/,
  );
  // The dashboard is off: its page is not a route, and nothing else is either.
  expect(await (await fetch(`${server.url}/dashboard`)).json()).toEqual({ error: 'No route for GET /dashboard' });
  expect((await fetch(`${server.url}/`)).status).toBe(200);
  const links = ((await (await fetch(`${server.url}/`)).json()) as { links: object }).links;
  expect(Object.keys(links)).not.toContain('dashboard');
});

test('an unknown model names the models the server has, at most 10', async () => {
  server = await startServer({ modelRepository: repository(12), port: 0, dashboard: 'off' });
  const unknown = await postJson(`${server.url}/v2/models/nope/infer`, '{}');
  expect([unknown.status, unknown.body.error]).toEqual([
    400,
    "Request for unknown model: 'nope' is not found (models here: m00, m01, m02, m03, m04, m05, m06, m07, m08, m09, " +
      'and 2 more (GET /v2/models lists them))',
  ]);
  const listed = (await (await fetch(`${server.url}/v2/models`)).json()) as { models: { name: string }[] };
  expect(listed.models.map((m) => m.name)).toHaveLength(12);
});

test('limits are named by their flag and value: --max-batch-size 64, --body-limit', async () => {
  server = await startServer({ port: 0, cacheDir: TEST_CACHE, bodyLimit: 32 * 1024 * 1024 });
  const rows = await postJson(
    `${server.url}/v2/models/mlp/infer`,
    jsonRequest('input', [65, 256], 'FP32', Array(65 * 256).fill(0)),
  );
  expect([rows.status, rows.body.error]).toEqual([
    413,
    "ERR_ITEM_TOO_LARGE: Input has size 65, larger than the model's max batch size (--max-batch-size 64)",
  ]);
  // A 40 MB body over a limit lowered to 32 MiB.
  const big = await fetch(`${server.url}/v2/models/mlp/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: Buffer.alloc(40_000_000, 0x20),
  });
  expect([big.status, ((await big.json()) as { error: string }).error]).toEqual([
    413,
    "Request body is larger than the server's limit (--body-limit 32 MiB)",
  ]);
});
