import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, test } from 'vitest';
import { jsonRequest, postJson, TEST_CACHE } from './helpers.js';

const bin = fileURLToPath(new URL('../bin/batched-fn.js', import.meta.url));
let child: ChildProcess | undefined;
afterEach(() => {
  child?.kill('SIGKILL');
  child = undefined;
});

function run(args: string[]): { child: ChildProcess; output: () => string; url: Promise<string>; exit: Promise<number | null> } {
  const proc = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout?.on('data', (chunk) => (out += chunk));
  proc.stderr?.on('data', (chunk) => (out += chunk));
  const url = new Promise<string>((resolve, reject) => {
    proc.stdout?.on('data', () => {
      const match = / on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (match) resolve(match[1] as string);
    });
    proc.once('exit', () => reject(new Error(`exited before listening:\n${out}`)));
  });
  url.catch(() => {}); // a run meant to fail never listens; its tests read `exit` instead
  const exit = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  child = proc;
  return { child: proc, output: () => out, url, exit };
}

test('serve prints a ready-to-paste curl example that works', async () => {
  const server = run(['serve', '--port', '0', '--cache-dir', TEST_CACHE, '--max-delay', 'auto', '--latency-target', '500']);
  const url = await server.url;
  const curl = /curl -s (\S+) -H 'content-type: application\/json' -d '(.+)'/.exec(server.output());
  expect(curl?.[1]).toBe(`${url}/v2/models/mlp/infer`);
  const response = await postJson(curl?.[1] as string, curl?.[2] as string);
  expect(response.status).toBe(200);
  expect(response.body.outputs[0].shape).toEqual([1, 16]);
  server.child.kill('SIGTERM');
  expect(await server.exit).toBe(0);
});

test('SIGTERM with requests in flight answers them all, then exits 0', async () => {
  // A long delay keeps all 24 requests waiting in the queue, so SIGTERM finds them accepted and unanswered.
  const server = run(['serve', '--port', '0', '--cache-dir', TEST_CACHE, '--max-batch-size', '64', '--max-delay', '10000']);
  const url = await server.url;
  const data = Array.from({ length: 256 }, (_, i) => i / 256);
  const inflight = Array.from({ length: 24 }, () => postJson(`${url}/v2/models/mlp/infer`, jsonRequest('input', [1, 256], 'FP32', data)));
  for (;;) {
    const metrics = await (await fetch(`${url}/metrics`)).text();
    if (metrics.includes('batched_fn_queue_depth{model="mlp"} 24')) break;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  server.child.kill('SIGTERM');
  const statuses = (await Promise.all(inflight)).map((r) => r.status);
  expect(statuses).toEqual(Array(24).fill(200));
  expect(await server.exit).toBe(0);
  expect(server.output()).toContain('SIGTERM: draining...');
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
  expect(preferred.output()).toContain('--preferred-batch-sizes must be a comma-separated list of integers from 1 and up, got "8,x"');
  const tooBig = run(['serve', '--cache-dir', TEST_CACHE, '--max-batch-size', '8', '--preferred-batch-sizes', '16']);
  expect(await tooBig.exit).toBe(2);
  expect(tooBig.output()).toContain('Expected every `preferredBatchSizes` entry to be at most maxBatchSize (8), got 16');
  const command = run(['frobnicate']);
  expect(await command.exit).toBe(2);
  expect(command.output()).toContain('Unknown command `frobnicate`');
});
