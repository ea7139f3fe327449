import { rmSync } from 'node:fs';
import { type ClientHttp2Session, connect } from 'node:http2';
import vm from 'node:vm';
import v8 from 'node:v8';
import { Metadata, status } from '@grpc/grpc-js';
import { afterEach, expect, test } from 'vitest';
import { PROTO_PATH, type RunningServer, serveModel, startServer } from '@batched-fn/server';
import { serveModels } from '../dist/server.js';
import { ModelRegistry } from '../dist/repository/registry.js';
import { grpcClient, rawOf } from './grpc-client.js';
import { gatedModel } from './helpers.js';
import { grpcStatusOf } from './raw-grpc.js';
import { int32sOf, messages, row16, simpleRequest, tritonRepository, until } from './triton-helpers.js';

// ModelStreamInfer (tritonclient's start_stream / async_stream_infer): requests batched like any
// others and answered in order with their ids, errors in error_message with the stream kept open,
// generation models refused; cancel, half-close, deadline, a vanished client, drain, and the
// stream limits (--grpc-max-streams, --grpc-receive-timeout).

let server: RunningServer | undefined;
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await server?.close();
  server = undefined;
});

async function gatedServer(
  options: Parameters<typeof gatedModel>[0] = {},
  serve: Parameters<typeof serveModel>[2] = {},
) {
  const gated = gatedModel(options);
  server = await serveModel(gated.model, gated.metrics, { port: 0, grpcPort: 0, dashboard: 'off', ...serve });
  const client = grpcClient(server.grpcUrl as string);
  cleanups.push(() => client.close());
  return { ...gated, client, server };
}

const gatedRow = (id: string, extra: object = {}) => ({
  model_name: 'gated',
  id,
  inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], contents: { fp32_contents: [1, 1] } }],
  ...extra,
});
const metric = async (url: string, line: RegExp): Promise<number> => {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(line.exec(text)?.[1] ?? 0);
};

test('requests on one stream are batched with each other and with ModelInfer calls, and answered in order with their ids', async () => {
  const repo = tritonRepository();
  cleanups.push(() => rmSync(repo, { recursive: true, force: true }));
  server = await startServer({ modelRepository: repo, port: 0, grpcPort: 0, maxDelay: 150, dashboard: 'off' });
  const client = grpcClient(server.grpcUrl as string);
  cleanups.push(() => client.close());
  const batches = /batched_fn_batch_size_count\{model="simple"\} (\d+)/;
  const rows = /batched_fn_batch_size_sum\{model="simple"\} (\d+)/;
  const [batchesBefore, rowsBefore] = [await metric(server.url, batches), await metric(server.url, rows)];

  const stream = client.raw.ModelStreamInfer();
  const answers = messages(stream);
  for (let i = 0; i < 8; i++) stream.write(simpleRequest(`s${i}`, row16(i), row16(0)));
  const unary = [
    client.call('ModelInfer', simpleRequest('u0', row16(100), row16(0))),
    client.call('ModelInfer', simpleRequest('u1', row16(200), row16(0))),
  ];
  for (let i = 0; i < 8; i++) {
    const { error_message, infer_response } = await answers.next();
    expect(error_message).toBe('');
    expect(infer_response.id).toBe(`s${i}`);
    expect(infer_response.raw_output_contents.map(int32sOf)).toEqual([
      row16(i).map((x, k) => x + k),
      row16(i).map((x, k) => x - k),
    ]);
  }
  expect((await Promise.all(unary)).map((a) => a.id)).toEqual(['u0', 'u1']);
  // Ten requests, one batch of ten rows: the stream's requests went through the batcher as they came.
  expect(await metric(server.url, batches)).toBe(batchesBefore + 1);
  expect(await metric(server.url, rows)).toBe(rowsBefore + 10);
  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  expect(metrics).toMatch(/batched_fn_requests_total\{model="simple",protocol="grpc",status="200"\} 10/);
  stream.end();
  expect(await answers.status).toMatchObject({ code: status.OK });
});

test('a failed request is answered in its turn with error_message (the text ModelInfer would carry) and its id; the stream stays open', async () => {
  const { client, release, running } = await gatedServer({ maxBatchSize: 1 });
  const stream = client.raw.ModelStreamInfer();
  const answers = messages(stream);
  const bad = gatedRow('bad', {
    inputs: [{ name: 'nope', datatype: 'FP32', shape: [1, 2], contents: { fp32_contents: [1, 1] } }],
  });
  const unknown = gatedRow('unknown', { model_name: 'nope' });
  // The first is held in the model: the errors behind it, ready at once, wait for it.
  stream.write(gatedRow('first'));
  stream.write(bad);
  stream.write(unknown);
  await until(() => running() === 1);
  await new Promise((resolve) => setTimeout(resolve, 100));
  expect(answers.buffered()).toBe(0);
  release();
  expect(await answers.next()).toMatchObject({ error_message: '', infer_response: { id: 'first' } });
  expect(await answers.next()).toEqual({
    error_message: (await client.fails('ModelInfer', bad)).details,
    infer_response: {
      model_name: '',
      model_version: '',
      id: 'bad',
      parameters: {},
      outputs: [],
      raw_output_contents: [],
    },
  });
  expect(await answers.next()).toMatchObject({
    error_message: (await client.fails('ModelInfer', unknown)).details,
    infer_response: { id: 'unknown' },
  });
  // Still open: the next request is served.
  stream.write(gatedRow('after'));
  await until(() => running() === 1);
  release();
  expect(await answers.next()).toMatchObject({
    error_message: '',
    infer_response: { id: 'after', outputs: [{ name: 'y', datatype: 'FP32', shape: [1, 1] }] },
  });
  stream.end();
  expect(await answers.status).toMatchObject({ code: status.OK });
});

test('a model the server does not have is answered with an error_message, and the stream stays open', async () => {
  const gated = gatedModel();
  server = await serveModels(ModelRegistry.of([gated.model]), gated.metrics, {
    port: 0,
    grpcPort: 0,
    dashboard: 'off',
  });
  const client = grpcClient(server.grpcUrl as string);
  cleanups.push(() => client.close());
  const stream = client.raw.ModelStreamInfer();
  const answers = messages(stream);
  stream.write({
    model_name: 'charlm',
    id: 'g1',
    inputs: [{ name: 'text_input', datatype: 'BYTES', shape: [1], contents: { bytes_contents: [Buffer.from('hi')] } }],
  });
  expect(await answers.next()).toMatchObject({
    error_message: expect.stringMatching(/^Request for unknown model: 'charlm' is not found/),
    infer_response: { id: 'g1' },
  });
  stream.end();
  expect(await answers.status).toMatchObject({ code: status.OK });
});

test('half-close: the stream ends OK once every answer it owes is written', async () => {
  const { client, release, running } = await gatedServer({ maxBatchSize: 4 });
  const stream = client.raw.ModelStreamInfer();
  const answers = messages(stream);
  for (const id of ['a', 'b', 'c']) stream.write(gatedRow(id));
  stream.end();
  // Every batch finishes as soon as it runs, however the three are batched.
  const releasing = setInterval(release, 5);
  cleanups.push(() => clearInterval(releasing));
  await until(() => running() === 1);
  const ids = [
    (await answers.next()).infer_response.id,
    (await answers.next()).infer_response.id,
    (await answers.next()).infer_response.id,
  ];
  expect(ids).toEqual(['a', 'b', 'c']);
  expect(await answers.status).toMatchObject({ code: status.OK });
});

test("cancel: the stream's queued requests leave the queue and nothing more is written", async () => {
  const { client, release, running, model } = await gatedServer({ maxBatchSize: 1, channelCap: 10 });
  const stream = client.raw.ModelStreamInfer();
  const answers = messages(stream);
  for (const id of ['a', 'b', 'c']) stream.write(gatedRow(id));
  await until(() => running() === 1 && model.batcher.stats.queued === 2);
  stream.cancel();
  expect(await answers.status).toMatchObject({ code: status.CANCELLED });
  await until(() => model.batcher.stats.queued === 0);
  release();
  expect(answers.buffered()).toBe(0);
  // Nothing in flight is left: the server closes at once.
  const started = performance.now();
  await server?.close();
  server = undefined;
  expect(performance.now() - started).toBeLessThan(3_000);
});

test("the call's deadline: DEADLINE_EXCEEDED, and its requests leave the queue", async () => {
  const { client, running, model, release } = await gatedServer({ maxBatchSize: 1, channelCap: 10 });
  const stream = client.raw.ModelStreamInfer(new Metadata(), { deadline: Date.now() + 400 });
  const answers = messages(stream);
  stream.write(gatedRow('a'));
  stream.write(gatedRow('b'));
  await until(() => running() === 1 && model.batcher.stats.queued === 1);
  expect(await answers.status).toMatchObject({ code: status.DEADLINE_EXCEEDED });
  await until(() => model.batcher.stats.queued === 0);
  release();
});

test('a client that vanishes mid-stream leaves nothing behind: its queued requests leave, their memory is freed', async () => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  // The requests' bytes are Buffers: outside the JS heap, counted in arrayBuffers.
  const heap = (): number => {
    gc();
    gc();
    const usage = process.memoryUsage();
    return usage.heapUsed + usage.arrayBuffers;
  };
  // A batch holds one of these 131,072-row requests.
  const { release, running, model } = await gatedServer({ maxBatchSize: 200_000, channelCap: 1000 });
  const protobuf = (await import('protobufjs')).default;
  const Request = new protobuf.Root()
    .loadSync(PROTO_PATH, { keepCase: true })
    .lookupType('inference.ModelInferRequest');
  // 100 streams, each sending a 1 MB request the model holds in its queue, then their connections drop.
  const payload = Buffer.alloc(1024 * 1024);
  const message = Buffer.from(
    Request.encode(
      Request.fromObject({
        model_name: 'gated',
        inputs: [{ name: 'x', datatype: 'FP32', shape: [131072, 2] }],
        raw_input_contents: [payload],
      }),
    ).finish(),
  );
  const framed = Buffer.concat([
    Buffer.from([
      0,
      (message.length >>> 24) & 0xff,
      (message.length >>> 16) & 0xff,
      (message.length >>> 8) & 0xff,
      message.length & 0xff,
    ]),
    message,
  ]);
  const before = heap();
  const sessions: ClientHttp2Session[] = [];
  for (let i = 0; i < 100; i++) {
    const session = connect(`http://${((server as RunningServer).grpcUrl as string).replace('grpc://', '')}`);
    session.on('error', () => {});
    const stream = session.request({
      ':method': 'POST',
      ':path': '/inference.GRPCInferenceService/ModelStreamInfer',
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    stream.on('error', () => {});
    stream.write(framed);
    sessions.push(session);
  }
  await until(() => running() === 1 && model.batcher.stats.queued === 99, 20_000);
  const held = (heap() - before) / 1024 / 1024;
  for (const session of sessions) session.destroy();
  await until(() => model.batcher.stats.queued === 0);
  release();
  await new Promise((resolve) => setTimeout(resolve, 300));
  const left = (heap() - before) / 1024 / 1024;
  console.log(
    `100 streams with a 1 MB request each: +${held.toFixed(1)} MB held while queued, +${left.toFixed(1)} MB once their clients vanished`,
  );
  expect(held).toBeGreaterThan(50);
  expect(left).toBeLessThan(10);
  const started = performance.now();
  await server?.close();
  server = undefined;
  expect(performance.now() - started).toBeLessThan(3_000);
});

test("drain: a stream's owed answers are written, a request after drain began is refused, then the stream ends OK", async () => {
  const { client, release, running } = await gatedServer({ maxBatchSize: 1 });
  const stream = client.raw.ModelStreamInfer();
  const answers = messages(stream);
  stream.write(gatedRow('before'));
  await until(() => running() === 1);
  const closing = server?.close();
  server = undefined;
  stream.write(gatedRow('during'));
  await new Promise((resolve) => setTimeout(resolve, 100));
  release();
  expect(await answers.next()).toMatchObject({ error_message: '', infer_response: { id: 'before' } });
  expect(await answers.next()).toMatchObject({
    error_message: 'Server is shutting down',
    infer_response: { id: 'during' },
  });
  expect(await answers.status).toMatchObject({ code: status.OK });
  await closing;
});

test('one stream holds at most --grpc-max-streams unanswered requests: past it the stream is not read, and all are answered in order', async () => {
  const { client, release, running, model } = await gatedServer(
    { maxBatchSize: 1, channelCap: 100 },
    { grpcMaxStreams: 3 },
  );
  const stream = client.raw.ModelStreamInfer();
  const answers = messages(stream);
  for (let i = 0; i < 40; i++) stream.write(gatedRow(`r${i}`));
  await until(() => running() === 1);
  await new Promise((resolve) => setTimeout(resolve, 200));
  // One running and two queued: the other 37 wait in the client and in flow control.
  expect(running() + model.batcher.stats.queued).toBe(3);
  const ids: string[] = [];
  let most = 0;
  for (let i = 0; i < 40; i++) {
    await until(() => running() === 1);
    most = Math.max(most, running() + model.batcher.stats.queued);
    release();
    ids.push((await answers.next()).infer_response.id);
  }
  expect(ids).toEqual(Array.from({ length: 40 }, (_, i) => `r${i}`));
  expect(most).toBeLessThanOrEqual(3);
  stream.end();
  expect(await answers.status).toMatchObject({ code: status.OK });
});

// ---- Raw HTTP/2: messages a grpc-js client would not send ----

function rawStream(session: ClientHttp2Session) {
  const stream = session.request({
    ':method': 'POST',
    ':path': '/inference.GRPCInferenceService/ModelStreamInfer',
    'content-type': 'application/grpc',
    te: 'trailers',
  });
  stream.on('error', () => {});
  let data = Buffer.alloc(0);
  stream.on('data', (chunk: Buffer) => {
    data = Buffer.concat([data, chunk]);
  });
  const trailers = grpcStatusOf(stream);
  const closed = new Promise<void>((resolve) => stream.once('close', resolve));
  /** The gRPC messages received so far. */
  const received = (): Buffer[] => {
    const out: Buffer[] = [];
    for (let at = 0; at + 5 <= data.length; ) {
      const length = data.readUInt32BE(at + 1);
      out.push(data.subarray(at + 5, at + 5 + length));
      at += 5 + length;
    }
    return out;
  };
  return { stream, trailers, closed, received };
}

const frame = (message: Uint8Array): Buffer =>
  Buffer.concat([
    Buffer.from([
      0,
      (message.length >>> 24) & 0xff,
      (message.length >>> 16) & 0xff,
      (message.length >>> 8) & 0xff,
      message.length & 0xff,
    ]),
    message,
  ]);

test('a client that does not read its answers is not read either: the server holds at most --grpc-max-streams answers for it', async () => {
  const repo = tritonRepository();
  cleanups.push(() => rmSync(repo, { recursive: true, force: true }));
  server = await startServer({
    modelRepository: repo,
    port: 0,
    grpcPort: 0,
    maxDelay: 0,
    grpcMaxStreams: 10,
    dashboard: 'off',
  });
  const protobuf = (await import('protobufjs')).default;
  const Request = new protobuf.Root()
    .loadSync(PROTO_PATH, { keepCase: true })
    .lookupType('inference.ModelInferRequest');
  // 64 rows each way: an answer of 8 KB.
  const rows = Array.from({ length: 64 * 16 }, (_, i) => i);
  const message = frame(Request.encode(Request.fromObject(simpleRequest('big', rows, rows))).finish());
  const session = connect(`http://${(server.grpcUrl as string).replace('grpc://', '')}`);
  session.on('error', () => {});
  cleanups.push(() => session.destroy());
  const { stream, trailers, received } = rawStream(session);
  stream.pause(); // never read, for now
  const sent = 300;
  for (let i = 0; i < sent; i++) stream.write(message);
  stream.end();
  const served = () =>
    metric(
      (server as RunningServer).url,
      /batched_fn_requests_total\{model="simple",protocol="grpc",status="200"\} (\d+)/,
    );
  let before = -1;
  for (let now = await served(); now !== before; now = await served()) {
    before = now;
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
  console.log(`a client that reads nothing: ${before} of ${sent} requests of 8 KB answers were run`);
  expect(before).toBeLessThan(100);
  stream.resume();
  await until(() => received().length === sent, 15_000);
  expect(await trailers).toEqual({ code: status.OK, details: 'OK' });
});

test('a malformed message on the stream is answered in error_message, and the next one is served', async () => {
  const { release, running } = await gatedServer({ maxBatchSize: 1 });
  const protobuf = (await import('protobufjs')).default;
  const root = new protobuf.Root().loadSync(PROTO_PATH, { keepCase: true });
  const Request = root.lookupType('inference.ModelInferRequest');
  const Response = root.lookupType('inference.ModelStreamInferResponse');
  const session = connect(`http://${((server as RunningServer).grpcUrl as string).replace('grpc://', '')}`);
  session.on('error', () => {});
  cleanups.push(() => session.destroy());
  const { stream, trailers, received } = rawStream(session);
  stream.write(frame(Buffer.from([0x2a, 0x10, 0x01]))); // field 5 says 16 bytes, 1 is there
  stream.write(frame(Request.encode(Request.fromObject(gatedRow('fine'))).finish()));
  await until(() => running() === 1);
  release();
  await until(() => received().length === 2);
  const [first, second] = received().map((m) => Response.toObject(Response.decode(m), { defaults: true }) as any);
  expect(first.error_message).toBe(
    'Malformed ModelInferRequest message: field 5 says 16 bytes, 1 are left in its message',
  );
  expect(first.infer_response.id).toBe('');
  expect(second).toMatchObject({ error_message: '', infer_response: { id: 'fine' } });
  stream.end();
  expect(await trailers).toEqual({ code: status.OK, details: 'OK' });
});

test('--grpc-receive-timeout on a stream: it may idle between messages, but a message must arrive whole within the timeout of its first byte', async () => {
  const { release, running } = await gatedServer({ maxBatchSize: 1 }, { grpcReceiveTimeout: 300 });
  const protobuf = (await import('protobufjs')).default;
  const Request = new protobuf.Root()
    .loadSync(PROTO_PATH, { keepCase: true })
    .lookupType('inference.ModelInferRequest');
  const session = connect(`http://${((server as RunningServer).grpcUrl as string).replace('grpc://', '')}`);
  session.on('error', () => {});
  cleanups.push(() => session.destroy());

  // A first message that never completes, before any answer: DEADLINE_EXCEEDED, saying why.
  const early = rawStream(session);
  early.stream.write(Buffer.from([0, 0, 0, 0, 100, 1, 2, 3]));
  const started = performance.now();
  expect(await early.trailers).toEqual({
    code: status.DEADLINE_EXCEEDED,
    details: 'A message on this stream did not arrive within 300 ms of its first byte (--grpc-receive-timeout)',
  });
  expect(performance.now() - started).toBeGreaterThanOrEqual(280);
  await early.closed;

  // A stream that is answered, then idles past the timeout, is still open and served...
  const idle = rawStream(session);
  idle.stream.write(frame(Request.encode(Request.fromObject(gatedRow('one'))).finish()));
  await until(() => running() === 1);
  release();
  await until(() => idle.received().length === 1);
  await new Promise((resolve) => setTimeout(resolve, 600));
  idle.stream.write(frame(Request.encode(Request.fromObject(gatedRow('two'))).finish()));
  await until(() => running() === 1);
  release();
  await until(() => idle.received().length === 2);
  // ...and a message that then stalls halfway is cut (the stream is reset: its answers' trailers are grpc-js's to send).
  const stalledAt = performance.now();
  idle.stream.write(Buffer.from([0, 0, 0, 0, 100, 1, 2, 3]));
  await idle.closed;
  expect(performance.now() - stalledAt).toBeGreaterThanOrEqual(280);
  expect(idle.stream.rstCode).toBeGreaterThan(0);
});

test('--grpc-receive-timeout does not count the time the server itself does not read a stream (a slow model behind 100 KB requests)', async () => {
  // One 12,800-row request (100 KB) per batch; the stream may hold one unanswered request.
  const { release, running } = await gatedServer(
    { maxBatchSize: 20_000, channelCap: 100 },
    { grpcReceiveTimeout: 300, grpcMaxStreams: 1 },
  );
  const protobuf = (await import('protobufjs')).default;
  const Request = new protobuf.Root()
    .loadSync(PROTO_PATH, { keepCase: true })
    .lookupType('inference.ModelInferRequest');
  const request = (id: string) =>
    frame(
      Request.encode(
        Request.fromObject({
          model_name: 'gated',
          id,
          inputs: [{ name: 'x', datatype: 'FP32', shape: [12_800, 2] }],
          raw_input_contents: [rawOf(new Float32Array(25_600))],
        }),
      ).finish(),
    );
  const session = connect(`http://${((server as RunningServer).grpcUrl as string).replace('grpc://', '')}`);
  session.on('error', () => {});
  cleanups.push(() => session.destroy());
  const { stream, received, trailers } = rawStream(session);
  // All in one write: HTTP/2 frames cut across the messages, as a client's coalesced writes do.
  stream.end(Buffer.concat(Array.from({ length: 24 }, (_, i) => request(`r${i}`))));
  // The model holds the first for 600 ms: meanwhile the server stops reading the stream, in the
  // middle of a message (its start came in the frame that ended the one before).
  await until(() => running() === 1);
  await new Promise((resolve) => setTimeout(resolve, 600));
  const releasing = setInterval(release, 5);
  cleanups.push(() => clearInterval(releasing));
  expect(await trailers).toEqual({ code: status.OK, details: 'OK' });
  expect(received()).toHaveLength(24);
});

test('a message over --body-limit on a stream ends it RESOURCE_EXHAUSTED, naming the limit', async () => {
  const { client } = await gatedServer({}, { bodyLimit: 1024 * 1024 });
  const stream = client.raw.ModelStreamInfer();
  const answers = messages(stream);
  stream.write({
    model_name: 'gated',
    inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2] }],
    raw_input_contents: [rawOf(new Float32Array(300_000))],
  });
  const ended = await answers.status;
  expect(ended.code).toBe(status.RESOURCE_EXHAUSTED);
  expect(ended.details).toMatch(
    /^Request message of 12000\d\d bytes is larger than the server's limit of 1048576 bytes \(--body-limit\)$/,
  );
});
