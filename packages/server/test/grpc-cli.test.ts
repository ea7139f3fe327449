import { status } from '@grpc/grpc-js';
import { afterEach, expect, test } from 'vitest';
import { killRunning, run } from './cli-run.js';
import { grpcClient } from './grpc-client.js';
import { TEST_CACHE } from './helpers.js';

// `batched-fn serve` and gRPC: the banner's address, the flags, and SIGTERM draining gRPC calls.
afterEach(killRunning);

const data = Array.from({ length: 256 }, (_, i) => i / 256);
const infer = {
  model_name: 'mlp',
  inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 256], contents: { fp32_contents: data } }],
};

test('the banner prints grpc://HOST:PORT with the real port; SIGTERM answers every accepted gRPC call, then exits 0', async () => {
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
  const client = grpcClient(await server.grpc);
  expect(await client.call('ServerLive')).toEqual({ live: true });
  const inflight = Array.from({ length: 24 }, () => client.call('ModelInfer', infer));
  for (;;) {
    const metrics = await (await fetch(`${url}/metrics`)).text();
    if (metrics.includes('batched_fn_queue_depth{model="mlp"} 24')) break;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  server.child.kill('SIGTERM');
  const answers = await Promise.all(inflight);
  expect(answers.map((a) => a.outputs[0].shape)).toEqual(Array(24).fill([1, 16]));
  expect(await server.exit).toBe(0);
  // After the drain nothing listens: a client says UNAVAILABLE.
  expect((await client.fails('ServerLive')).code).toBe(status.UNAVAILABLE);
  client.close();
});

test('--no-grpc serves REST only; --no-grpc with --grpc-port is a usage error', async () => {
  const server = run(['serve', '--port', '0', '--no-grpc', '--cache-dir', TEST_CACHE]);
  await server.url;
  expect(server.output()).not.toContain('grpc://');
  server.child.kill('SIGTERM');
  expect(await server.exit).toBe(0);
  const both = run(['serve', '--no-grpc', '--grpc-port', '9000']);
  expect(await both.exit).toBe(2);
  expect(both.output()).toContain('Give --grpc-port or --no-grpc, not both');
});

test('a gRPC port already taken is a one-line start-up error, exit 2', async () => {
  const first = run(['serve', '--port', '0', '--grpc-port', '0', '--cache-dir', TEST_CACHE]);
  const port = new URL((await first.grpc).replace('grpc://', 'http://')).port;
  const second = run(['serve', '--port', '0', '--grpc-port', port, '--cache-dir', TEST_CACHE]);
  expect(await second.exit).toBe(2);
  expect(second.output()).toBe(`Cannot start: gRPC address 127.0.0.1:${port} is already in use (--grpc-port)\n`);
  first.child.kill('SIGTERM');
  await first.exit;
});
