import { rmSync } from 'node:fs';
import { connect } from 'node:http2';
import vm from 'node:vm';
import v8 from 'node:v8';
import { type Client, credentials, makeClientConstructor, Metadata, status } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { afterAll, afterEach, beforeAll, expect, test } from 'vitest';
import { PROTO_PATH, type RunningServer, SERVE_DEFAULTS, serveModel, startServer } from '@batched-fn/server';
import { parseFlags } from '../dist/cli/flags.js';
import { grpcClient, rawOf } from './grpc-client.js';
import { gatedModel, postJson } from './helpers.js';
import { int32sOf, messages, row16, simpleRequest, tritonRepository, until } from './triton-helpers.js';

// Triton's clients and tests against the gRPC face, with its test models' stand-ins (`simple`,
// `simple_string`): answers in raw_output_contents, large requests, the standard health service,
// restricted protocols, model control off, and every RPC of Triton's service declared.

const IMAGES = `
// A batch of RGB 224 x 224 images (FP32) → each image's mean.
export const inputs = [{ name: 'x', datatype: 'FP32', shape: [-1, 3, 224, 224] }];
export const outputs = [{ name: 'mean', datatype: 'FP32', shape: [-1, 1] }];
export function handler(requests) {
  return requests.map(({ inputs: { x } }) => {
    const size = 3 * 224 * 224;
    const rows = x.data.length / size;
    const mean = new Float32Array(rows);
    for (let r = 0; r < rows; r++) {
      let sum = 0;
      for (let i = r * size; i < (r + 1) * size; i++) sum += x.data[i];
      mean[r] = sum / size;
    }
    return { mean: { data: mean } };
  });
}
`;

let repo = '';
let server: RunningServer;
let client: ReturnType<typeof grpcClient>;
const extra: { close(): unknown }[] = [];
const servers: RunningServer[] = [];

beforeAll(async () => {
  repo = tritonRepository({ images: IMAGES, broken: 'export const inputs = 1;' });
  server = await startServer({
    modelRepository: repo,
    modelControl: 'explicit',
    port: 0,
    grpcPort: 0,
    maxDelay: 2,
    dashboard: 'off',
  });
  client = grpcClient(server.grpcUrl as string);
});
afterEach(async () => {
  for (const c of extra.splice(0)) c.close();
  for (const s of servers.splice(0)) await s.close();
});
afterAll(async () => {
  client.close();
  await server.close();
  rmSync(repo, { recursive: true, force: true });
});

const address = (s: RunningServer): string => (s.grpcUrl as string).replace('grpc://', '');
const varint = (n: number): number[] => {
  const bytes: number[] = [];
  for (; n > 127; n = Math.floor(n / 128)) bytes.push((n % 128) | 128);
  return [...bytes, n];
};

/** grpc-health-check's own client, as its README says to make one. */
function healthClient(target: string): any {
  const Health = makeClientConstructor(healthService as never, 'grpc.health.v1.Health');
  const health = new Health(target, credentials.createInsecure()) as unknown as Client;
  extra.push(health);
  return health;
}

const check = (
  health: any,
  service: string,
  metadata = new Metadata(),
): Promise<{ status?: string; code?: number; details?: string }> =>
  new Promise((resolve) =>
    health.check({ service }, metadata, (error: { code: number; details: string } | null, answer: { status: string }) =>
      resolve(error === null ? { status: answer.status } : { code: error.code, details: error.details }),
    ),
  );

// ---- 1. Answers in raw_output_contents ----

test('gRPC answers carry raw_output_contents for typed requests too, as Triton answers (simple, simple_string)', async () => {
  const a = row16(0);
  const b = Array(16).fill(1);
  const answer = await client.call('ModelInfer', simpleRequest('typed-1', a, b));
  expect(answer.id).toBe('typed-1');
  expect(answer.outputs).toEqual([
    { name: 'OUTPUT0', datatype: 'INT32', shape: [1, 16], parameters: {}, contents: null },
    { name: 'OUTPUT1', datatype: 'INT32', shape: [1, 16], parameters: {}, contents: null },
  ]);
  expect(answer.raw_output_contents.map(int32sOf)).toEqual([a.map((x) => x + 1), a.map((x) => x - 1)]);

  // BYTES: typed bytes_contents in, 4-byte little-endian lengths and bytes out.
  const text = (xs: number[]) => xs.map((x) => Buffer.from(String(x)));
  const strings = await client.call('ModelInfer', {
    model_name: 'simple_string',
    inputs: [
      { name: 'INPUT0', datatype: 'BYTES', shape: [1, 16], contents: { bytes_contents: text(a) } },
      { name: 'INPUT1', datatype: 'BYTES', shape: [1, 16], contents: { bytes_contents: text(b) } },
    ],
  });
  const elements = (buffer: Buffer): string[] => {
    const out: string[] = [];
    for (let at = 0; at < buffer.length; ) {
      const length = buffer.readUInt32LE(at);
      out.push(buffer.subarray(at + 4, at + 4 + length).toString());
      at += 4 + length;
    }
    return out;
  };
  expect(strings.outputs.map((o: any) => o.contents)).toEqual([null, null]);
  expect(strings.raw_output_contents.map(elements)).toEqual([a.map((x) => String(x + 1)), a.map((x) => String(x - 1))]);
});

// ---- 2. Large requests ----

test('a 16 x 3 x 224 x 224 FP32 batch (9.6 MB) and a 35-image one (20.1 MiB) are served over gRPC under the default --body-limit (64 MiB)', async () => {
  expect(SERVE_DEFAULTS.bodyLimit).toBe(64 * 1024 * 1024);
  const size = 3 * 224 * 224;
  for (const images of [16, 35]) {
    const pixels = new Float32Array(images * size);
    for (let r = 0; r < images; r++) pixels.fill(r, r * size, (r + 1) * size);
    const started = performance.now();
    const answer = await client.call('ModelInfer', {
      model_name: 'images',
      id: `batch-${images}`,
      inputs: [{ name: 'x', datatype: 'FP32', shape: [images, 3, 224, 224] }],
      raw_input_contents: [rawOf(pixels)],
    });
    const ms = performance.now() - started;
    expect(answer.outputs[0]).toMatchObject({ name: 'mean', shape: [images, 1] });
    expect(Array.from(new Float32Array(Uint8Array.from(answer.raw_output_contents[0]).buffer))).toEqual(
      Array.from({ length: images }, (_, r) => r),
    );
    console.log(`${images} images, ${pixels.byteLength} bytes: ${ms.toFixed(0)} ms`);
  }
});

test('a request over --body-limit is RESOURCE_EXHAUSTED naming the limit and the flag, plain or compressed (REST: 413)', async () => {
  const gated = gatedModel();
  const small = await serveModel(gated.model, gated.metrics, {
    port: 0,
    grpcPort: 0,
    bodyLimit: 1024 * 1024,
    dashboard: 'off',
  });
  servers.push(small);
  const limited = grpcClient(small.grpcUrl as string);
  extra.push(limited);
  const big = {
    model_name: 'gated',
    inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2] }],
    raw_input_contents: [Buffer.alloc(2 * 1024 * 1024)],
  };
  const refused = await limited.fails('ModelInfer', big);
  expect(refused.code).toBe(status.RESOURCE_EXHAUSTED);
  expect(refused.details).toMatch(
    /^Request message of 20971\d\d bytes is larger than the server's limit of 1048576 bytes \(--body-limit\)$/,
  );
  const rest = await fetch(`${small.url}/v2/models/gated/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ pad: 'x'.repeat(2 * 1024 * 1024) }),
  });
  expect(rest.status).toBe(413);

  // gzip-compressed, 2 KB on the wire: the limit holds for what it inflates to.
  const gzip = new (Object.getPrototypeOf(limited.raw).constructor)(address(small), credentials.createInsecure(), {
    'grpc.default_compression_algorithm': 2,
  });
  extra.push(gzip);
  const inflated = await new Promise<{ code: number; details: string }>((resolve) =>
    gzip.ModelInfer(big, (error: { code: number; details: string }) =>
      resolve({ code: error.code, details: error.details }),
    ),
  );
  expect(inflated).toEqual({
    code: status.RESOURCE_EXHAUSTED,
    details: "Request message decompresses to more than the server's limit of 1048576 bytes (--body-limit)",
  });
  // The server still serves.
  expect(await limited.call('ServerLive')).toEqual({ live: true });
});

// ---- 3. grpc.health.v1.Health ----

test('grpc.health.v1 Check: the server ("") and each model by name, through grpc-health-check\'s own client', async () => {
  const health = healthClient(address(server));
  expect(await check(health, '')).toEqual({ status: 'SERVING' });
  expect(await check(health, 'simple')).toEqual({ status: 'SERVING' });
  expect(await check(health, 'broken')).toEqual({ status: 'NOT_SERVING' });
  expect(await check(health, 'nope')).toEqual({
    code: status.NOT_FOUND,
    details: 'Health status unknown for service nope',
  });
});

test('a Check of a 100 KB service name is NOT_FOUND with the name cut, and the connection keeps serving (it hung every later call)', async () => {
  const health = healthClient(address(server));
  const answer = await new Promise<{ code?: number; details?: string }>((resolve) =>
    health.check(
      { service: 'x'.repeat(100_000) },
      new Metadata(),
      { deadline: Date.now() + 3_000 },
      (error: { code: number; details: string } | null) => resolve(error ?? {}),
    ),
  );
  expect(answer.code).toBe(status.NOT_FOUND);
  expect(answer.details).toMatch(/^Health status unknown for service x+\.\.\.$/);
  expect((answer.details as string).length).toBeLessThanOrEqual(4096);
  expect(await check(health, '')).toEqual({ status: 'SERVING' });
});

test('grpc.health.v1 Check and Watch follow a model across unload and load (model control explicit)', async () => {
  const health = healthClient(address(server));
  const watch = messages(health.watch({ service: 'simple_string' }));
  const server_ = messages(health.watch({ service: '' }));
  expect(await watch.next()).toEqual({ status: 'SERVING' });
  expect(await server_.next()).toEqual({ status: 'SERVING' });

  await client.call('RepositoryModelUnload', { model_name: 'simple_string' });
  expect(await watch.next()).toEqual({ status: 'NOT_SERVING' });
  expect(await check(health, 'simple_string')).toEqual({ status: 'NOT_SERVING' });
  await client.call('RepositoryModelLoad', { model_name: 'simple_string' });
  expect(await watch.next()).toEqual({ status: 'SERVING' });
  expect(await check(health, 'simple_string')).toEqual({ status: 'SERVING' });
  // One message per change: nothing else came, and the server's own status never moved.
  await new Promise((resolve) => setTimeout(resolve, 50));
  expect(watch.buffered()).toBe(0);
  expect(server_.buffered()).toBe(0);
  // A name the server does not have: SERVICE_UNKNOWN, the call kept open (the standard's rule).
  const unknown = messages(health.watch({ service: 'not-a-model' }));
  expect(await unknown.next()).toEqual({ status: 'SERVICE_UNKNOWN' });
});

test('grpc.health.v1 while draining: Watch hears NOT_SERVING for the server and its models, then the call ends OK', async () => {
  const gated = gatedModel({ maxBatchSize: 1 });
  const draining = await serveModel(gated.model, gated.metrics, { port: 0, grpcPort: 0, dashboard: 'off' });
  const health = healthClient(address(draining));
  const whole = messages(health.watch({ service: '' }));
  const model = messages(health.watch({ service: 'gated' }));
  expect(await whole.next()).toEqual({ status: 'SERVING' });
  expect(await model.next()).toEqual({ status: 'SERVING' });
  // A call in flight holds the drain open while the watchers hear of it.
  const drainClient = grpcClient(draining.grpcUrl as string);
  extra.push(drainClient);
  const held = drainClient.call('ModelInfer', {
    model_name: 'gated',
    inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], contents: { fp32_contents: [1, 1] } }],
  });
  await until(() => gated.running() === 1);
  const closing = draining.close();
  expect(await whole.next()).toEqual({ status: 'NOT_SERVING' });
  expect(await model.next()).toEqual({ status: 'NOT_SERVING' });
  expect(await whole.status).toMatchObject({ code: status.OK });
  gated.release();
  expect((await held).outputs[0].name).toBe('y');
  await closing;
});

test('Watch on made-up service names leaves nothing behind (grpc-health-check kept an empty entry per name)', async () => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const heap = (): number => {
    gc();
    gc();
    return process.memoryUsage().heapUsed;
  };
  const before = heap();
  // 4,000 watches of 8 KB names, 50 on each connection, each connection dropped once every watch
  // has its first answer. (Not cancelled one by one: 1,000 quick RST_STREAMs trip Node's HTTP/2
  // rapid-reset guard, and the connection is refused.)
  for (let round = 0; round < 80; round++) {
    const session = connect(`http://${address(server)}`);
    session.on('error', () => {});
    const answered = Array.from({ length: 50 }, (_, i) => {
      const name = Buffer.from(`${String(round * 50 + i).padStart(8, '0')}${'x'.repeat(8192)}`);
      const message = Buffer.concat([Buffer.from([0x0a, ...varint(name.length)]), name]);
      const stream = session.request({
        ':method': 'POST',
        ':path': '/grpc.health.v1.Health/Watch',
        'content-type': 'application/grpc',
        te: 'trailers',
      });
      stream.on('error', () => {});
      stream.end(
        Buffer.concat([Buffer.from([0, 0, 0, (message.length >>> 8) & 0xff, message.length & 0xff]), message]),
      );
      return new Promise((resolve) => stream.once('data', resolve));
    });
    await Promise.all(answered);
    session.destroy();
  }
  await new Promise((resolve) => setTimeout(resolve, 300));
  const grown = (heap() - before) / 1024 / 1024;
  console.log(`heap after 4,000 dropped watches of 8 KB names: +${grown.toFixed(1)} MB`);
  // 4,000 names of 8 KB are 32 MB if kept.
  expect(grown).toBeLessThan(8);
});

// ---- 4. --grpc-restricted-protocol ----

test('--grpc-restricted-protocol as Triton defines it: UNAVAILABLE without the header, served with it; other groups untouched', async () => {
  const restricted = await startServer({
    modelRepository: repo,
    port: 0,
    grpcPort: 0,
    maxDelay: 2,
    dashboard: 'off',
    // Triton's L0_grpc restricted-protocol test configuration.
    grpcRestrictedProtocol: ['health,inference:infer-key=infer-value', 'model-repository:admin-key=admin-value'],
  });
  servers.push(restricted);
  const plain = grpcClient(restricted.grpcUrl as string);
  extra.push(plain);
  const header = (key: string, value: string): Metadata => {
    const metadata = new Metadata();
    metadata.set(`triton-grpc-protocol-${key}`, value);
    return metadata;
  };
  const failure = async (method: string, request: object, metadata = new Metadata()) => {
    try {
      await plain.start(method, request, undefined, metadata).done;
      return { code: status.OK, details: '' };
    } catch (error) {
      return { code: (error as { code: number }).code, details: (error as { details: string }).details };
    }
  };
  const inferKey = "This protocol is restricted, expecting header 'triton-grpc-protocol-infer-key'";
  // health
  expect(await failure('ServerLive', {})).toEqual({ code: status.UNAVAILABLE, details: inferKey });
  expect(await plain.start('ServerLive', {}, undefined, header('infer-key', 'infer-value')).done).toEqual({
    live: true,
  });
  expect(await failure('ModelReady', { name: 'simple' }, header('infer-key', 'wrong'))).toEqual({
    code: status.UNAVAILABLE,
    details: inferKey,
  });
  const health = healthClient(address(restricted));
  expect(await check(health, '')).toEqual({ code: status.UNAVAILABLE, details: inferKey });
  expect(await check(health, '', header('infer-key', 'infer-value'))).toEqual({ status: 'SERVING' });
  // inference, unary and stream
  const request = simpleRequest('r', row16(0), row16(0));
  expect(await failure('ModelInfer', request)).toEqual({ code: status.UNAVAILABLE, details: inferKey });
  expect((await plain.start('ModelInfer', request, undefined, header('infer-key', 'infer-value')).done).id).toBe('r');
  const refusedStream = messages(plain.raw.ModelStreamInfer());
  expect(await refusedStream.status).toEqual({ code: status.UNAVAILABLE, details: inferKey });
  const stream = plain.raw.ModelStreamInfer(header('infer-key', 'infer-value'));
  const answers = messages(stream);
  stream.write(request);
  expect((await answers.next()).infer_response.id).toBe('r');
  stream.end();
  expect(await answers.status).toMatchObject({ code: status.OK });
  // model-repository: the infer key does not open it; the admin key reaches the action (model control is off here).
  expect(await failure('RepositoryModelUnload', { model_name: 'simple' }, header('infer-key', 'infer-value'))).toEqual({
    code: status.UNAVAILABLE,
    details: "This protocol is restricted, expecting header 'triton-grpc-protocol-admin-key'",
  });
  expect(
    await failure('RepositoryModelUnload', { model_name: 'simple' }, header('admin-key', 'admin-value')),
  ).toMatchObject({
    code: status.UNAVAILABLE,
    details: expect.stringMatching(/^explicit model load \/ unload is not allowed if polling is enabled/),
  });
  // Unrestricted groups need nothing (Triton's test_sanity).
  expect((await plain.call('ModelStatistics', { name: 'simple' })).model_stats[0].name).toBe('simple');
  expect((await plain.call('ServerMetadata')).name).toBe('batched-fn');
});

test('--grpc-restricted-protocol values are checked as Triton checks them', async () => {
  const bad: [string[], string][] = [
    [['health'], "--grpc-restricted-protocol option format is '<protocols>:<key>=<value>'. Got health"],
    [['health:key'], "--grpc-restricted-protocol option format is '<protocols>:<key>=<value>'. Got health:key"],
    [['health:=v'], "--grpc-restricted-protocol option format is '<protocols>:<key>=<value>'. Got health:=v"],
    [['health:k='], "--grpc-restricted-protocol option format is '<protocols>:<key>=<value>'. Got health:k="],
    [
      ['healthy:k=v'],
      "unknown restricted protocol 'healthy' (--grpc-restricted-protocol: the protocols are health, metadata, inference, shared-memory, model-config, model-repository, statistics, trace, logging)",
    ],
    [
      ['health,inference:a=1', 'inference:b=2'],
      "restricted protocol 'inference' can not be specified in multiple config groups (--grpc-restricted-protocol)",
    ],
  ];
  // The flag repeats, one group list per key.
  expect(
    parseFlags('serve', [
      '--grpc-restricted-protocol',
      'health:k=v',
      '--grpc-restricted-protocol',
      'model-repository,statistics:admin=s3cret',
    ]).grpcRestrictedProtocol,
  ).toEqual(['health:k=v', 'model-repository,statistics:admin=s3cret']);
  expect(parseFlags('serve', ['--grpc-restricted-protocol=inference:k=v']).grpcRestrictedProtocol).toBe(
    'inference:k=v',
  );
  const gated = gatedModel();
  for (const [values, message] of bad) {
    await expect(
      serveModel(gated.model, gated.metrics, {
        port: 0,
        grpcPort: 0,
        dashboard: 'off',
        grpcRestrictedProtocol: values,
      }),
    ).rejects.toThrow(new RangeError(message));
  }
  // A value may hold ':' and '=' itself (only the first ':' and the '=' after it split).
  const ok = await serveModel(gated.model, gated.metrics, {
    port: 0,
    grpcPort: 0,
    dashboard: 'off',
    grpcRestrictedProtocol: 'metadata:k=a:b=c',
  });
  servers.push(ok);
  const c = grpcClient(ok.grpcUrl as string);
  extra.push(c);
  const metadata = new Metadata();
  metadata.set('triton-grpc-protocol-k', 'a:b=c');
  expect((await c.start('ServerMetadata', {}, undefined, metadata).done).name).toBe('batched-fn');
});

// ---- 5. Model control off ----

test("load and unload while model control is off are UNAVAILABLE with Triton's text (as tritonclient and its tests match it)", async () => {
  const gated = gatedModel();
  const off = await serveModel(gated.model, gated.metrics, { port: 0, grpcPort: 0, dashboard: 'off' });
  servers.push(off);
  const c = grpcClient(off.grpcUrl as string);
  extra.push(c);
  // Triton's text (its model_repository_manager.cc), then ours: how to turn model control on.
  const rest = await postJson(`${off.url}/v2/repository/models/gated/unload`, '{}');
  expect(rest.body.error).toMatch(
    /^explicit model load \/ unload is not allowed if polling is enabled \(.*--model-control explicit.*\)$/,
  );
  expect(await c.fails('RepositoryModelLoad', { model_name: 'gated' })).toEqual({
    code: status.UNAVAILABLE,
    details: rest.body.error,
  });
  expect(await c.fails('RepositoryModelUnload', { model_name: 'gated' })).toEqual({
    code: status.UNAVAILABLE,
    details: rest.body.error,
  });
});

// ---- 6. Every RPC of Triton's service ----

test("every RPC of Triton's GRPCInferenceService has a handler: served, or UNIMPLEMENTED saying why (never grpc-js's bare default)", async () => {
  const protobuf = (await import('protobufjs')).default;
  const methods = Object.entries(
    new protobuf.Root().loadSync(PROTO_PATH, { keepCase: true }).lookupService('inference.GRPCInferenceService')
      .methods,
  );
  for (const [method, definition] of methods) {
    if (definition.requestStream === true) continue; // ModelStreamInfer: triton-grpc-stream.test.ts
    let answer: { code: number; details: string } = { code: status.OK, details: '' };
    try {
      await client.call(method, { name: 'simple', model_name: 'simple' });
    } catch (error) {
      answer = { code: (error as { code: number }).code, details: (error as { details: string }).details };
    }
    expect(answer.details, method).not.toMatch(/^The server does not implement the method/);
    if (answer.code === status.UNIMPLEMENTED)
      expect(answer.details, method).toMatch(/not (implemented|supported|enabled)|disabled/);
  }
});

test("the shipped .proto declares Triton's messages with Triton's field numbers (grpc_service.proto and model_config.proto)", async () => {
  const protobuf = (await import('protobufjs')).default;
  const root = new protobuf.Root().loadSync(PROTO_PATH, { keepCase: true });
  const fields = (type: string) =>
    Object.fromEntries(Object.entries(root.lookupType(`inference.${type}`).fields).map(([name, f]) => [name, f.id]));
  const service = root.lookupService('inference.GRPCInferenceService');
  expect(Object.keys(service.methods).sort()).toEqual(
    [
      'ServerLive',
      'ServerReady',
      'ModelReady',
      'ServerMetadata',
      'ModelMetadata',
      'ModelInfer',
      'ModelStreamInfer',
      'ModelConfig',
      'ModelStatistics',
      'RepositoryIndex',
      'RepositoryModelLoad',
      'RepositoryModelUnload',
      'SystemSharedMemoryStatus',
      'SystemSharedMemoryRegister',
      'SystemSharedMemoryUnregister',
      'CudaSharedMemoryStatus',
      'CudaSharedMemoryRegister',
      'CudaSharedMemoryUnregister',
      'TraceSetting',
      'LogSettings',
    ].sort(),
  );
  const stream = service.methods.ModelStreamInfer as {
    requestType: string;
    responseType: string;
    requestStream?: boolean;
    responseStream?: boolean;
  };
  expect([stream.requestType, stream.requestStream, stream.responseType, stream.responseStream]).toEqual([
    'ModelInferRequest',
    true,
    'ModelStreamInferResponse',
    true,
  ]);
  expect(fields('ModelStreamInferResponse')).toEqual({ error_message: 1, infer_response: 2 });
  expect(fields('ModelConfigRequest')).toEqual({ name: 1, version: 2 });
  expect(fields('ModelConfigResponse')).toEqual({ config: 1 });
  expect(fields('ModelStatistics')).toMatchObject({ response_stats: 9 });
  expect(fields('InferResponseStatistics')).toEqual({
    compute_infer: 1,
    compute_output: 2,
    success: 3,
    fail: 4,
    empty_response: 5,
    cancel: 6,
  });
  expect(fields('SystemSharedMemoryRegisterRequest')).toEqual({ name: 1, key: 2, offset: 3, byte_size: 4 });
  expect(fields('SystemSharedMemoryStatusResponse')).toEqual({ regions: 1 });
  expect(fields('SystemSharedMemoryStatusResponse.RegionStatus')).toEqual({ name: 1, key: 2, offset: 3, byte_size: 4 });
  expect(fields('SystemSharedMemoryUnregisterRequest')).toEqual({ name: 1 });
  expect(fields('CudaSharedMemoryRegisterRequest')).toEqual({ name: 1, raw_handle: 2, device_id: 3, byte_size: 4 });
  expect(fields('CudaSharedMemoryStatusResponse.RegionStatus')).toEqual({ name: 1, device_id: 2, byte_size: 3 });
  expect(fields('TraceSettingRequest')).toEqual({ settings: 1, model_name: 2 });
  expect(fields('TraceSettingRequest.SettingValue')).toEqual({ value: 1 });
  expect(fields('TraceSettingResponse')).toEqual({ settings: 1 });
  expect(fields('LogSettingsRequest')).toEqual({ settings: 1 });
  expect(fields('LogSettingsRequest.SettingValue')).toEqual({ bool_param: 1, uint32_param: 2, string_param: 3 });
  expect(fields('LogSettingsResponse.SettingValue')).toEqual({ bool_param: 1, uint32_param: 2, string_param: 3 });
  // model_config.proto: the fields a Triton client reads from ModelConfig.
  expect(fields('ModelConfig')).toMatchObject({
    name: 1,
    platform: 2,
    version_policy: 3,
    max_batch_size: 4,
    input: 5,
    output: 6,
    instance_group: 7,
    dynamic_batching: 11,
    sequence_batching: 13,
    parameters: 14,
    backend: 17,
    model_transaction_policy: 19,
  });
  expect(fields('ModelInput')).toMatchObject({ name: 1, data_type: 2, format: 3, dims: 4 });
  expect(fields('ModelOutput')).toMatchObject({ name: 1, data_type: 2, dims: 3, label_filename: 4 });
  expect(fields('ModelDynamicBatching')).toMatchObject({
    preferred_batch_size: 1,
    max_queue_delay_microseconds: 2,
    priority_levels: 4,
    default_priority_level: 5,
    default_queue_policy: 6,
  });
  expect(fields('ModelInstanceGroup')).toMatchObject({ name: 1, count: 2, gpus: 3, kind: 4 });
  expect(root.lookupEnum('inference.DataType').values).toMatchObject({
    TYPE_INVALID: 0,
    TYPE_BOOL: 1,
    TYPE_INT32: 8,
    TYPE_FP32: 11,
    TYPE_STRING: 13,
  });
});
