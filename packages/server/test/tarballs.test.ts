import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { jsonRequest, postJson, TEST_CACHE } from './helpers.js';

// The packages as a user gets them: packed, installed from their tarballs into an empty project
// outside the repository, with nothing of the workspace in reach.
const root = fileURLToPath(new URL('../../..', import.meta.url));
const packs = mkdtempSync(join(tmpdir(), 'bfn-packs-'));
const project = mkdtempSync(join(tmpdir(), 'bfn-consumer-'));
const env = {
  ...process.env,
  ONNXRUNTIME_NODE_INSTALL: 'skip',
  npm_config_audit: 'false',
  npm_config_fund: 'false',
  npm_config_update_notifier: 'false',
};
const npm = (args: string[], cwd: string): string =>
  execFileSync('npm', args, { cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const tarball = (name: string): string => join(packs, name);
const version = (JSON.parse(readFileSync(join(root, 'packages/server/package.json'), 'utf8')) as { version: string })
  .version;

beforeAll(() => {
  npm(
    [
      'pack',
      '--workspace',
      'batched-fn',
      '--workspace',
      '@batched-fn/server',
      '--workspace',
      '@batched-fn/redis',
      '--pack-destination',
      packs,
    ],
    root,
  );
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  npm(
    ['install', '--prefer-offline', tarball(`batched-fn-${version}.tgz`), tarball(`batched-fn-server-${version}.tgz`)],
    project,
  );
}, 180_000);

afterAll(() => {
  execFileSync('rm', ['-rf', packs, project]);
});

test('each tarball ships its build, its sources (for the maps), a README and a LICENSE, and no tests', () => {
  for (const [workspace, entry] of [
    ['batched-fn', 'index'],
    ['@batched-fn/server', 'index'],
    ['@batched-fn/redis', 'index'],
  ]) {
    const [listing] = JSON.parse(npm(['pack', '--dry-run', '--json', '--workspace', workspace as string], root)) as [
      { files: { path: string }[] },
    ];
    const paths = listing.files.map((f) => f.path);
    for (const path of [
      `dist/${entry}.js`,
      `dist/${entry}.d.ts`,
      `dist/${entry}.js.map`,
      `src/${entry}.ts`,
      'README.md',
      'LICENSE',
      'package.json',
    ])
      expect(paths).toContain(path);
    expect(paths.filter((p) => p.startsWith('test/') || p.includes('.test.'))).toEqual([]);
  }
});

test('npx batched-fn serve --port 0 from the tarballs serves the default model; /v2 reports the package version', async () => {
  const child = spawn(
    join(project, 'node_modules/.bin/batched-fn'),
    ['serve', '--port', '0', '--grpc-port', '0', '--cache-dir', TEST_CACHE],
    { cwd: project, env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout.on('data', (chunk) => (out += chunk));
  child.stderr.on('data', (chunk) => (out += chunk));
  const exit = new Promise<number | null>((resolve) => child.once('exit', resolve));
  while (!/ on (http:\/\/127\.0\.0\.1:\d+)/.test(out)) {
    if (child.exitCode !== null) throw new Error(out);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const url = / on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1] as string;
  const response = await postJson(
    `${url}/v2/models/mlp/infer`,
    jsonRequest('input', [1, 256], 'FP32', Array(256).fill(0.5)),
  );
  expect(response.status).toBe(200);
  expect(response.body.outputs[0].shape).toEqual([1, 16]);
  expect(await (await fetch(`${url}/v2`)).json()).toMatchObject({ name: 'batched-fn', version });
  child.kill('SIGTERM');
  expect(await exit).toBe(0);
}, 60_000);

test('--redis without the optional packages is one clear line and exit 2', () => {
  let failure: { status: number; stderr: string } | undefined;
  try {
    execFileSync(join(project, 'node_modules/.bin/batched-fn'), ['serve', '--redis', 'redis://127.0.0.1:1'], {
      cwd: project,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      encoding: 'utf8',
    });
  } catch (error) {
    failure = error as { status: number; stderr: string };
  }
  expect(failure?.status).toBe(2);
  expect(failure?.stderr).toBe(
    '--redis needs @batched-fn/redis and ioredis, which are optional: npm install @batched-fn/redis ioredis\n',
  );
});

test('--otel without the optional OpenTelemetry packages is one clear line and exit 2', () => {
  let failure: { status: number; stderr: string } | undefined;
  try {
    execFileSync(join(project, 'node_modules/.bin/batched-fn'), ['serve', '--otel', '--port', '0'], {
      cwd: project,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      encoding: 'utf8',
    });
  } catch (error) {
    failure = error as { status: number; stderr: string };
  }
  expect(failure?.status).toBe(2);
  expect(failure?.stderr).toBe(
    '--otel needs @opentelemetry/api and @opentelemetry/core and @opentelemetry/sdk-trace and @opentelemetry/resources and @opentelemetry/exporter-trace-otlp-proto and @opentelemetry/exporter-trace-otlp-http, which are optional: npm install @opentelemetry/api @opentelemetry/core @opentelemetry/sdk-trace @opentelemetry/resources @opentelemetry/exporter-trace-otlp-proto @opentelemetry/exporter-trace-otlp-http\n',
  );
});

test("the fastify plugin registers on the user's own fastify 5", () => {
  writeFileSync(
    join(project, 'plugin.js'),
    `import Fastify from 'fastify';
import { batchedFn } from 'batched-fn';
import { kservePlugin } from '@batched-fn/server';
const batcher = batchedFn({ handler: (b) => b.map((i) => ({ y: { datatype: 'FP32', shape: [i.rows, 1], data: new Float32Array(i.rows) } })), maxDelay: 0, size: (i) => i.rows });
const model = { name: 'm', version: '1', platform: 'js', signature: { inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 1] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 1] }] }, batcher, infer: (i, o) => batcher(i, o) };
const app = Fastify();
app.get('/mine', async () => 'still mine');
await app.register(kservePlugin, { models: [model] });
const infer = await app.inject({ method: 'POST', url: '/v2/models/m/infer', headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 1], datatype: 'FP32', data: [1] }] }) });
const mine = await app.inject({ method: 'GET', url: '/mine' });
console.log(JSON.stringify({ infer: infer.statusCode, mine: mine.body, fastify: app.version }));
await app.close();
await batcher.close();
`,
  );
  const result = JSON.parse(execFileSync(process.execPath, ['plugin.js'], { cwd: project, env, encoding: 'utf8' }));
  expect(result).toMatchObject({ infer: 200, mine: 'still mine' });
  expect(result.fastify).toMatch(/^5\./);
});

test('@batched-fn/redis installs from its tarball and loads beside its ioredis peer', () => {
  npm(['install', '--prefer-offline', tarball(`batched-fn-redis-${version}.tgz`), 'ioredis@^5.9.0'], project);
  const exported = execFileSync(
    process.execPath,
    ['-e', "import('@batched-fn/redis').then((m) => console.log(Object.keys(m).sort().join(',')))"],
    { cwd: project, env, encoding: 'utf8' },
  );
  expect(exported.trim()).toBe('DEFAULT_PREFIX,RemoteWorker,remoteBatchedFn,startRemoteWorker,streamKeys');
}, 120_000);
