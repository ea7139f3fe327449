import { afterEach, expect, test } from 'vitest';
import { type RunningServer, startServer } from '@batched-fn/server';
import { grpcClient } from './grpc-client.js';
import { startOtlpReceiver } from './otlp-receiver.js';
import { tritonRepository } from './triton-helpers.js';

// `/v2` (and gRPC ServerMetadata) list exactly the extensions that work on this server: each
// feature adds its name where it is wired (kserve/extensions.ts), and REST and gRPC share the list.
let server: RunningServer | undefined;
let client: ReturnType<typeof grpcClient> | undefined;
afterEach(async () => {
  client?.close();
  await server?.close();
  server = client = undefined;
});

async function extensions(options: Parameters<typeof startServer>[0]): Promise<string[]> {
  server = await startServer({ modelRepository: tritonRepository(), port: 0, grpcPort: 0, ...options });
  client = grpcClient(server.grpcUrl as string);
  const rest = ((await (await fetch(`${server.url}/v2`)).json()) as { extensions: string[] }).extensions;
  expect((await client.call('ServerMetadata')).extensions).toEqual(rest);
  expect(new Set(rest).size).toBe(rest.length);
  return rest.sort();
}

test('a repository server lists what it serves, the same on REST and gRPC; trace only with --otel', async () => {
  const base = [
    'binary_tensor_data',
    'classification',
    'logging',
    'model_configuration',
    'model_repository',
    'schedule_policy',
    'statistics',
  ];
  expect(await extensions({})).toEqual(base);
  await server?.close();
  client?.close();
  const receiver = await startOtlpReceiver();
  process.env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.url;
  try {
    expect(await extensions({ otel: true })).toEqual([...base, 'trace'].sort());
  } finally {
    await server?.close();
    server = undefined;
    await receiver.close();
  }
});
