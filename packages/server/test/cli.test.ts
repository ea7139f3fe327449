import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { killRunning, run } from './cli-run.js';
import { jsonRequest, postJson, TEST_CACHE } from './helpers.js';
import { scratchDir } from './scratch.js';

afterEach(killRunning);

test('serve prints a ready-to-paste curl example that works', async () => {
  const server = run([
    'serve',
    '--port',
    '0',
    '--grpc-port',
    '0',
    '--cache-dir',
    TEST_CACHE,
    '--max-delay',
    'auto',
    '--latency-target',
    '500',
  ]);
  const url = await server.url;
  // The default model's 256 inputs are too long for one line: the line shows what to send (banner.test.ts).
  const curl = /\nTry it[^\n]*:\n {2}curl -s (\S+)\n/.exec(server.output());
  expect(curl?.[1]).toBe(`${url}/v2/models/mlp`);
  const response = await fetch(curl?.[1] as string);
  expect(response.status).toBe(200);
  expect(((await response.json()) as { outputs: { shape: number[] }[] }).outputs[0]?.shape).toEqual([-1, 16]);
  server.child.kill('SIGTERM');
  expect(await server.exit).toBe(0);
});

/** Starts `serve` with a window long enough that `count` requests sit accepted and unanswered in its queue. */
/** Sends a signal and waits until the process has said it handled it: identical pending signals would merge into one. */
async function signal(server: ReturnType<typeof run>, name: NodeJS.Signals, said: string): Promise<void> {
  server.child.kill(name);
  while (!server.output().includes(said)) await new Promise((resolve) => setTimeout(resolve, 2));
}

async function queued(count: number) {
  const server = run([
    'serve',
    '--port',
    '0',
    '--grpc-port',
    '0',
    '--cache-dir',
    TEST_CACHE,
    '--max-batch-size',
    '128',
    '--max-delay',
    '100000',
  ]);
  const url = await server.url;
  const data = Array.from({ length: 256 }, (_, i) => i / 256);
  const inflight = Array.from({ length: count }, () =>
    postJson(`${url}/v2/models/mlp/infer`, jsonRequest('input', [1, 256], 'FP32', data)).catch((e: unknown) => e),
  );
  for (;;) {
    const metrics = await (await fetch(`${url}/metrics`)).text();
    if (metrics.includes(`batched_fn_queue_depth{model="mlp"} ${count}`)) break;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return { server, inflight };
}

test('SIGTERM with requests in flight answers them all, then exits 0', async () => {
  const { server, inflight } = await queued(24);
  server.child.kill('SIGTERM');
  const statuses = (await Promise.all(inflight)).map((r) => (r as { status: number }).status);
  expect(statuses).toEqual(Array(24).fill(200));
  expect(await server.exit).toBe(0);
  expect(server.output()).toContain('SIGTERM: draining...');
});

test('a second SIGTERM (or SIGINT) while draining is ignored: all 64 accepted requests are answered, exit 0', async () => {
  const { server, inflight } = await queued(64);
  await signal(server, 'SIGTERM', 'SIGTERM: draining...');
  await signal(server, 'SIGINT', 'SIGINT: already draining');
  const statuses = (await Promise.all(inflight)).map((r) => (r as { status: number }).status);
  expect(statuses).toEqual(Array(64).fill(200));
  expect(await server.exit).toBe(0);
  expect(server.output()).toContain('SIGINT: already draining; send it once more to exit without waiting');
});

test('a third signal exits at once, without draining', async () => {
  // A model too slow to drain quickly: one worker thread, batches of one, 400 requests queued.
  const server = run([
    'serve',
    '--port',
    '0',
    '--grpc-port',
    '0',
    '--cache-dir',
    TEST_CACHE,
    '--max-batch-size',
    '1',
    '--threads',
    '1',
  ]);
  const url = await server.url;
  const data = Array.from({ length: 256 }, (_, i) => i / 256);
  const inflight = Array.from({ length: 400 }, () =>
    postJson(`${url}/v2/models/mlp/infer`, jsonRequest('input', [1, 256], 'FP32', data)).catch(() => 'reset'),
  );
  while (!(await (await fetch(`${url}/metrics`)).text()).match(/batched_fn_queue_depth\{model="mlp"\} [1-9]\d/))
    await new Promise((r) => setTimeout(r, 5));
  await signal(server, 'SIGTERM', 'SIGTERM: draining...');
  await signal(server, 'SIGTERM', 'SIGTERM: already draining');
  server.child.kill('SIGTERM');
  expect(await server.exit).toBe(143);
  expect(server.output()).toContain('SIGTERM: exiting now, without draining');
  await Promise.all(inflight);
});

test('durations beyond one timer are usage errors, not timers that fire at once', async () => {
  for (const [flag, value] of [
    ['--timeout', '2147483648'],
    ['--max-delay', '3000000000'],
    ['--batch-timeout', '1e10'],
    ['--latency-target', '0'],
  ]) {
    const bad = run(['serve', flag as string, value as string]);
    expect(await bad.exit).toBe(2);
    expect(bad.output()).toMatch(
      new RegExp(`${flag} must be a number of milliseconds (from|above) 0 to 2147483647, got "${value}"`),
    );
  }
});

test('start-up errors are one clear line and exit 2, not a stack trace', async () => {
  const dir = scratchDir('bfn-cli-');
  const notOnnx = join(dir, 'model.onnx');
  writeFileSync(notOnnx, 'hello world\n');
  const cases: [string[], string][] = [
    [
      ['serve', '--model', join(dir, 'missing.onnx')],
      `Cannot start: Cannot read model ${join(dir, 'missing.onnx')}: no such file\n`,
    ],
    [['serve', '--model', dir], `Cannot start: Cannot read model ${dir}: it is a directory\n`],
    [
      ['serve', '--model', notOnnx],
      `Cannot start: ${notOnnx} is not an ONNX model we can serve: Unsupported protobuf wire type 4\n`,
    ],
    [
      ['serve', '--cache-dir', TEST_CACHE, '--host', 'no-such-host.invalid', '--port', '0'],
      'Cannot start: getaddrinfo ENOTFOUND no-such-host.invalid\n',
    ],
  ];
  for (const [args, line] of cases) {
    const bad = run(args);
    expect(await bad.exit).toBe(2);
    expect(bad.output()).toBe(line);
  }
});

test('bad flags exit 2 with a message and the usage', async () => {
  const bad = run(['serve', '--max-batch-size', '0']);
  expect(await bad.exit).toBe(2);
  expect(bad.output()).toContain('--max-batch-size must be an integer from 1 and up, got "0"');
  expect(bad.output()).toContain('Usage:');
  const unknown = run(['serve', '--max-batchsize', '4']);
  expect(await unknown.exit).toBe(2);
  expect(unknown.output()).toMatch(/Unknown option '--max-batchsize'/);
  const preferred = run(['serve', '--preferred-batch-sizes', '8,x']);
  expect(await preferred.exit).toBe(2);
  expect(preferred.output()).toContain(
    '--preferred-batch-sizes must be a comma-separated list of integers from 1 and up, got "8,x"',
  );
  const tooBig = run(['serve', '--cache-dir', TEST_CACHE, '--max-batch-size', '8', '--preferred-batch-sizes', '16']);
  expect(await tooBig.exit).toBe(2);
  expect(tooBig.output()).toContain(
    'Expected every `preferredBatchSizes` entry to be at most maxBatchSize (8), got 16',
  );
  const command = run(['frobnicate']);
  expect(await command.exit).toBe(2);
  expect(command.output()).toContain('Unknown command `frobnicate`');
});
