import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { type RunningServer, startServer } from '@batched-fn/server';
import { grpcClient } from './grpc-client.js';
import { postJson, writeIntModel } from './helpers.js';
import { row16, tritonRepository } from './triton-helpers.js';

// Triton's model configuration extension: GET /v2/models/{m}[/versions/{v}]/config and gRPC
// ModelConfig answer Triton's ModelConfig, in its JSON form.
let server: RunningServer | undefined;
let client: ReturnType<typeof grpcClient> | undefined;
afterEach(async () => {
  client?.close();
  await server?.close();
  server = client = undefined;
});

async function repository(config: object) {
  const repo = tritonRepository();
  writeFileSync(join(repo, 'simple', 'config.json'), JSON.stringify(config));
  writeFileSync(join(repo, 'simple', 'labels.txt'), 'a\nb\n');
  server = await startServer({ modelRepository: repo, port: 0, grpcPort: 0 });
  client = grpcClient(server.grpcUrl as string);
}

test("a JS model's config: backend js, max_batch_size, dims without the batch dimension, dynamic batching, instance group and parameters", async () => {
  await repository({
    maxBatchSize: 8,
    maxDelay: 2.5,
    preferredBatchSizes: [4, 8],
    queueCap: 32,
    workers: 2,
    timeout: 750,
    priorityLevels: 3,
    defaultPriorityLevel: 2,
    labels: { OUTPUT0: 'labels.txt' },
    parameters: { mode: 'fast', beams: 4 },
  });
  const config = await (await fetch(`${server?.url}/v2/models/simple/config`)).json();
  expect(config).toEqual({
    name: 'simple',
    platform: '',
    backend: 'js',
    version_policy: { latest: { num_versions: 1 } },
    max_batch_size: 8,
    input: [
      { name: 'INPUT0', data_type: 'TYPE_INT32', dims: [16], format: 'FORMAT_NONE' },
      { name: 'INPUT1', data_type: 'TYPE_INT32', dims: [16], format: 'FORMAT_NONE' },
    ],
    output: [
      { name: 'OUTPUT0', data_type: 'TYPE_INT32', dims: [16], label_filename: 'labels.txt' },
      { name: 'OUTPUT1', data_type: 'TYPE_INT32', dims: [16] },
    ],
    dynamic_batching: {
      preferred_batch_size: [4, 8],
      max_queue_delay_microseconds: 2500,
      preserve_ordering: false,
      priority_levels: 3,
      default_priority_level: 2,
      default_queue_policy: {
        timeout_action: 'REJECT',
        default_timeout_microseconds: 750_000,
        allow_timeout_override: true,
        max_queue_size: 32,
      },
    },
    instance_group: [{ name: 'simple', kind: 'KIND_CPU', count: 2 }],
    parameters: { mode: { string_value: 'fast' }, beams: { string_value: '4' }, max_delay: { string_value: '2.5' } },
  });
  expect((await (await fetch(`${server?.url}/v2/models/simple/versions/1/config`)).json()) as any).toEqual(config);
  // gRPC: the same message, through Triton's ModelConfig (model_config.proto).
  const answer = await client?.call('ModelConfig', { name: 'simple', version: '' });
  expect(answer.config).toMatchObject({
    name: 'simple',
    backend: 'js',
    max_batch_size: 8,
    input: [
      expect.objectContaining({ name: 'INPUT0', data_type: 'TYPE_INT32', dims: [16], format: 'FORMAT_NONE' }),
      expect.objectContaining({ name: 'INPUT1' }),
    ],
    output: [
      expect.objectContaining({ name: 'OUTPUT0', label_filename: 'labels.txt' }),
      expect.objectContaining({ name: 'OUTPUT1', label_filename: '' }),
    ],
    dynamic_batching: expect.objectContaining({
      preferred_batch_size: [4, 8],
      max_queue_delay_microseconds: 2500,
      priority_levels: 3,
      default_priority_level: 2,
      default_queue_policy: expect.objectContaining({ max_queue_size: 32, default_timeout_microseconds: 750_000 }),
    }),
    instance_group: [expect.objectContaining({ name: 'simple', kind: 'KIND_CPU', count: 2 })],
    parameters: { mode: { string_value: 'fast' }, beams: { string_value: '4' }, max_delay: { string_value: '2.5' } },
  });
});

test("maxDelay 'auto' shows under parameters with the delay it has learned (the recent median wait), also as max_queue_delay_microseconds", async () => {
  await repository({ maxDelay: 'auto' });
  const before = (await (await fetch(`${server?.url}/v2/models/simple/config`)).json()) as any;
  expect(before.parameters).toEqual({ max_delay: { string_value: 'auto' }, learned_delay_ms: { string_value: '0' } });
  const body = JSON.stringify({
    inputs: [
      { name: 'INPUT0', shape: [1, 16], datatype: 'INT32', data: row16(0) },
      { name: 'INPUT1', shape: [1, 16], datatype: 'INT32', data: row16(0) },
    ],
  });
  await Promise.all(Array.from({ length: 8 }, () => postJson(`${server?.url}/v2/models/simple/infer`, body)));
  const after = (await (await fetch(`${server?.url}/v2/models/simple/config`)).json()) as any;
  const wait = server?.registry.get('simple')?.model?.batcher.stats.waitMs.p50 as number;
  expect(after.parameters.learned_delay_ms).toEqual({ string_value: String(Math.round(wait * 1000) / 1000) });
  expect(after.dynamic_batching.max_queue_delay_microseconds).toBe(Math.round(wait * 1000));
});

test('an ONNX model: platform onnxruntime_onnx, backend onnxruntime, datatypes and threads', async () => {
  server = await startServer({
    model: writeIntModel(),
    port: 0,
    grpcPort: 0,
    maxBatchSize: 16,
    maxDelay: 0,
    threads: 1,
  });
  client = grpcClient(server.grpcUrl as string);
  const config = await (await fetch(`${server.url}/v2/models/int-model/config`)).json();
  expect(config).toMatchObject({
    name: 'int-model',
    platform: 'onnxruntime_onnx',
    backend: 'onnxruntime',
    max_batch_size: 16,
    input: [
      { name: 'ids', data_type: 'TYPE_INT64', dims: [4] },
      { name: 'mask', data_type: 'TYPE_INT32', dims: [4] },
    ],
    output: [{ name: 'out', data_type: 'TYPE_FP32', dims: [4] }],
    dynamic_batching: { max_queue_delay_microseconds: 0, priority_levels: 0, default_priority_level: 0 },
    parameters: { max_delay: { string_value: '0' }, threads: { string_value: '1' } },
  });
  expect((await client.call('ModelConfig', { name: 'int-model' })).config).toMatchObject({
    platform: 'onnxruntime_onnx',
    input: [expect.objectContaining({ data_type: 'TYPE_INT64' }), expect.objectContaining({ data_type: 'TYPE_INT32' })],
  });
});

test('an unknown model is the same error as its metadata, on REST and gRPC', async () => {
  await repository({});
  const metadata = await fetch(`${server?.url}/v2/models/nope`);
  const config = await fetch(`${server?.url}/v2/models/nope/config`);
  expect(config.status).toBe(metadata.status);
  expect(await config.json()).toEqual(await metadata.json());
  const version = await fetch(`${server?.url}/v2/models/simple/versions/7/config`);
  expect(version.status).toBe((await fetch(`${server?.url}/v2/models/simple/versions/7`)).status);
  expect(await client?.fails('ModelConfig', { name: 'nope' })).toEqual(
    await client?.fails('ModelMetadata', { name: 'nope' }),
  );
});

test('/v2 lists model_configuration', async () => {
  await repository({});
  expect(((await (await fetch(`${server?.url}/v2`)).json()) as any).extensions).toContain('model_configuration');
  expect((await client?.call('ServerMetadata'))?.extensions).toContain('model_configuration');
});

test.each([
  [{ defaultPriorityLevel: 1 }, '`defaultPriorityLevel` needs `priorityLevels`'],
  [
    { priorityLevels: 2, defaultPriorityLevel: 3 },
    'Expected `defaultPriorityLevel` to be an integer from 1 to `priorityLevels` (2), got `3`',
  ],
  [{ priorityLevels: 0 }, 'Expected `priorityLevels` to be an integer from 1 and up, got `0`'],
  [
    { labels: { OUTPUT0: '../escape.txt' } },
    "Expected `labels` to be an object of output name to a labels file in the model's folder or an array of strings",
  ],
])('config.json %j is refused at load with a message naming the key', async (config, message) => {
  await repository(config);
  const entry = server?.registry.get('simple');
  expect(entry?.state).toBe('UNAVAILABLE');
  expect(entry?.reason).toContain(message);
});
