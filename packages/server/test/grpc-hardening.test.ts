import type { ClientHttp2Session } from 'node:http2';
import { status } from '@grpc/grpc-js';
import { afterEach, expect, test } from 'vitest';
import { type RunningServer, serveModel } from '@batched-fn/server';
import { grpcClient } from './grpc-client.js';
import { gatedModel } from './helpers.js';
import { frame, rawSession as openRawSession, rawCall } from './raw-grpc.js';

// Attacks on the gRPC face (and their REST twins) from a security review: streams that never
// send their request, messages that decode into millions of objects, deadlines past 2^31 ms,
// malformed messages and grpc-timeout headers. Each test is named after its attack.
let server: RunningServer | undefined;
let client: ReturnType<typeof grpcClient> | undefined;
const sessions: ClientHttp2Session[] = [];
afterEach(async () => {
  for (const session of sessions.splice(0)) session.destroy();
  client?.close();
  await server?.close();
  server = client = undefined;
});

const until = async (condition: () => boolean, ms = 5_000) => {
  const end = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > end) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
};

async function start(serve: Parameters<typeof serveModel>[2] = {}, options: Parameters<typeof gatedModel>[0] = {}) {
  const gated = gatedModel(options);
  server = await serveModel(gated.model, gated.metrics, { port: 0, grpcPort: 0, ...serve });
  client = grpcClient(server.grpcUrl as string);
  return { ...gated, client };
}

/** A raw HTTP/2 connection to this test's server's gRPC port. */
const rawSession = (): Promise<ClientHttp2Session> =>
  openRawSession((server as RunningServer).grpcUrl as string, sessions);
const varint = (n: number): number[] => {
  const bytes: number[] = [];
  for (; n > 127; n = Math.floor(n / 128)) bytes.push((n % 128) | 128);
  return [...bytes, n];
};
/** A length-delimited protobuf field. */
const field = (number: number, body: Buffer): Buffer =>
  Buffer.concat([Buffer.from([...varint(number * 8 + 2), ...varint(body.length)]), body]);
/** `count` copies of `unit`, back to back. */
const bytesOf = (unit: number[], count: number): Buffer =>
  Buffer.from(Buffer.from(unit).toString('latin1').repeat(count), 'latin1');

const MESSAGE_LIMIT = 8 * 1024 * 1024;
const modelName = field(1, Buffer.from('gated'));

// ---- 1. Streams that announce a message and never send it ----

test('stalled streams (headers, then never the message) are answered DEADLINE_EXCEEDED after --grpc-receive-timeout and released', async () => {
  await start({ grpcReceiveTimeout: 300, grpcMaxStreams: 4 });
  const session = await rawSession();
  const started = performance.now();
  // Four streams fill the connection's cap: each announces a 10-byte message and never sends it.
  const stalled = Array.from({ length: 4 }, () =>
    rawCall(session, 'ModelInfer', Buffer.from([0, 0, 0, 0, 10]), { end: false }),
  );
  for (const { answer } of stalled) {
    expect(await answer).toEqual({
      code: status.DEADLINE_EXCEEDED,
      details: 'The request did not arrive within 300 ms of its headers (--grpc-receive-timeout)',
    });
  }
  // The server closed them (RST_STREAM after the answer), though the client never ended its side...
  await Promise.all(stalled.map(({ closed }) => closed));
  expect(performance.now() - started).toBeGreaterThanOrEqual(290);
  // ...so their slots are free: a full call on the same connection is answered.
  const live = rawCall(session, 'ServerLive', frame(Buffer.alloc(0)));
  expect(await live.answer).toEqual({ code: status.OK, details: 'OK' });
});

test('a call stalled after its message (no end of stream), and a stream to an unknown method, are cut the same way', async () => {
  await start({ grpcReceiveTimeout: 200 });
  const session = await rawSession();
  const noEnd = rawCall(session, 'ServerLive', frame(Buffer.alloc(0)), { end: false });
  expect(await noEnd.answer).toMatchObject({ code: status.DEADLINE_EXCEEDED });
  // grpc-js answers UNIMPLEMENTED at once, but would hold the stream while the client keeps its side open.
  const unknown = rawCall(session, 'NoSuchMethod', Buffer.from([0, 0, 0, 0, 10]), { end: false });
  expect(await unknown.answer).toMatchObject({ code: status.UNIMPLEMENTED });
  await Promise.all([noEnd.closed, unknown.closed]);
});

test('a connection cannot hold more than --grpc-max-streams streams: the server announces the cap, and grpc-js clients queue past it', async () => {
  const gated = await start({ grpcMaxStreams: 3 });
  const session = await rawSession();
  expect(session.remoteSettings.maxConcurrentStreams).toBe(3);
  // The default is HTTP/2's recommended floor, not 2^32-1.
  const defaults = gatedModel();
  const other = await serveModel(defaults.model, defaults.metrics, { port: 0, grpcPort: 0 });
  try {
    const probe = await openRawSession(other.grpcUrl as string, sessions);
    expect(probe.remoteSettings.maxConcurrentStreams).toBe(100);
  } finally {
    await other.close();
  }
  // Twelve calls on one channel of a cap of 3: all are answered, none refused.
  const answers = await Promise.all(Array.from({ length: 12 }, () => gated.client.call('ServerMetadata')));
  expect(answers.map((a) => a.name)).toEqual(Array(12).fill('batched-fn'));
});

// ---- 2. One message that decodes into millions of objects ----

test('one 8 MiB ModelInfer of 4.2 M empty inputs is refused before decoding: no stall, no gigabytes', async () => {
  await start();
  const session = await rawSession();
  const inputs = bytesOf([0x2a, 0x00], (MESSAGE_LIMIT - 16) / 2); // field 5, length 0: an empty InferInputTensor
  const rss = process.memoryUsage().rss;
  const started = performance.now();
  const call = rawCall(session, 'ModelInfer', frame(Buffer.concat([modelName, inputs])));
  expect(await call.answer).toEqual({
    code: status.INVALID_ARGUMENT,
    details: 'ModelInferRequest has more than 1024 inputs (--max-tensors): refused before decoding',
  });
  // Before: 4-23 s of main-thread stall and +1.4-2.3 GB of RSS. Now the scan stops at input 1025.
  expect(performance.now() - started).toBeLessThan(3_000);
  expect(process.memoryUsage().rss - rss).toBeLessThan(300 * 1024 * 1024);
});

test('--max-tensors bounds inputs, outputs and raw_input_contents; at the limit the request is decoded as usual', async () => {
  const gated = await start({ maxTensors: 1 });
  const session = await rawSession();
  const input = field(
    5,
    Buffer.concat([
      field(1, Buffer.from('x')),
      field(2, Buffer.from('FP32')),
      field(3, Buffer.from([1, 2])),
      field(5, field(6, Buffer.from(new Float32Array([1, 1]).buffer))),
    ]),
  );
  const output = field(6, field(1, Buffer.from('y')));
  const refused = (what: string) => ({
    code: status.INVALID_ARGUMENT,
    details: `ModelInferRequest has more than 1 ${what} (--max-tensors): refused before decoding`,
  });
  expect(await rawCall(session, 'ModelInfer', frame(Buffer.concat([modelName, input, input]))).answer).toEqual(
    refused('inputs'),
  );
  expect(await rawCall(session, 'ModelInfer', frame(Buffer.concat([modelName, input, output, output]))).answer).toEqual(
    refused('outputs'),
  );
  expect(
    await rawCall(
      session,
      'ModelInfer',
      frame(Buffer.concat([modelName, input, field(7, Buffer.alloc(8)), field(7, Buffer.alloc(8))])),
    ).answer,
  ).toEqual(refused('raw_input_contents entries'));
  // One of each passes the scan and the decoder, and reaches the model.
  const ok = rawCall(session, 'ModelInfer', frame(Buffer.concat([modelName, input, output])));
  await until(() => gated.running() === 1);
  gated.release();
  expect(await ok.answer).toEqual({ code: status.OK, details: 'OK' });
});

test('4.2 M empty BYTES elements, or 2 M parameters, in one ModelInfer are refused before decoding (--max-bytes-elements, --max-objects)', async () => {
  await start();
  const session = await rawSession();
  const details =
    'ModelInferRequest has more than 65536 elements (messages, map entries and shape dimensions; --max-objects): refused before decoding';
  const elements = bytesOf([0x42, 0x00], (MESSAGE_LIMIT - 32) / 2); // field 8 of InferTensorContents: an empty bytes element
  const bytesInput = field(
    5,
    Buffer.concat([field(1, Buffer.from('x')), field(2, Buffer.from('BYTES')), field(5, elements)]),
  );
  const started = performance.now();
  expect(await rawCall(session, 'ModelInfer', frame(Buffer.concat([modelName, bytesInput]))).answer).toEqual({
    code: status.INVALID_ARGUMENT,
    details: 'ModelInferRequest has more than 1048576 BYTES elements (--max-bytes-elements): refused before decoding',
  });
  // Before: 4.2 s and +943 MB to decode them into Buffers.
  expect(performance.now() - started).toBeLessThan(3_000);
  const parameters = bytesOf([0x22, 0x02, 0x12, 0x00], (MESSAGE_LIMIT - 16) / 4); // a `parameters` entry with an empty value
  expect(await rawCall(session, 'ModelInfer', frame(Buffer.concat([modelName, parameters]))).answer).toEqual({
    code: status.INVALID_ARGUMENT,
    details,
  });
  const dims = bytesOf([0x18, 0x00], (MESSAGE_LIMIT - 32) / 2); // 4 M unpacked shape dimensions
  expect(await rawCall(session, 'ModelInfer', frame(Buffer.concat([modelName, field(5, dims)]))).answer).toEqual({
    code: status.INVALID_ARGUMENT,
    details,
  });
});

test('inputs sent with the wrong wire type (protobufjs reads `5: varint 0` as an empty input) are refused, not decoded', async () => {
  await start();
  const session = await rawSession();
  const answer = await rawCall(
    session,
    'ModelInfer',
    frame(Buffer.concat([modelName, bytesOf([0x28, 0x00], 1_000_000)])),
  ).answer;
  expect(answer).toEqual({
    code: status.INVALID_ARGUMENT,
    details: 'Malformed ModelInferRequest message: field 5 has wire type 0, which it cannot have',
  });
});

test("REST's twin: an 8 MiB body of {} inputs, or of {} anywhere, is refused before JSON.parse; strings and small bodies are not counted", async () => {
  await start();
  const post = async (body: string) => {
    const started = performance.now();
    const response = await fetch(`${server?.url}/v2/models/gated/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    return {
      status: response.status,
      body: (await response.json()) as { error: string },
      ms: performance.now() - started,
    };
  };
  const count = Math.floor((MESSAGE_LIMIT - 200) / 3);
  const inputs = await post(`{"inputs":[${'{},'.repeat(count)}{}]}`);
  expect(inputs.status).toBe(400);
  expect(inputs.body.error).toBe('Request has more than 1024 inputs (--max-tensors): refused before parsing');
  // Before: 1.5-3 s of stall and +0.6-0.9 GB for JSON.parse to build 2.8 M objects.
  expect(inputs.ms).toBeLessThan(3_000);
  const nested = await post(
    `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[1,1],"parameters":{"deep":[${'{},'.repeat(count)}{}]}}]}`,
  );
  expect(nested.status).toBe(400);
  expect(nested.body.error).toBe(
    'Request body has more than 65536 JSON objects (--max-objects): refused before parsing',
  );
  // Braces inside strings are not objects, and an escaped key is still read as `outputs`.
  const braces = await post(
    `{"id":"${'{'.repeat(200_000)}\\"{","inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[1,1]}],"outp\\u0075ts":[${'{"name":"y"},'.repeat(1024)}{"name":"y"}]}`,
  );
  expect(braces.body.error).toBe('Request has more than 1024 outputs (--max-tensors): refused before parsing');
});

test('--max-tensors and --max-objects are checked when the server starts, naming the option', async () => {
  const gated = gatedModel();
  await expect(serveModel(gated.model, gated.metrics, { port: 0, maxTensors: 0 })).rejects.toThrow(
    new RangeError('Expected `maxTensors` to be an integer from 1 and up, got `0`'),
  );
  await expect(
    serveModel(gated.model, gated.metrics, { port: 0, maxObjects: '9' as unknown as number }),
  ).rejects.toThrow(new TypeError('Expected `maxObjects` to be a number, got `9` (string)'));
  await expect(
    serveModel(gated.model, gated.metrics, { port: 0, grpcPort: 0, grpcMaxStreams: 2 ** 32 }),
  ).rejects.toThrow(
    new RangeError('Expected `grpcMaxStreams` to be an integer from 1 to 4294967295, got `4294967296`'),
  );
  await expect(
    serveModel(gated.model, gated.metrics, { port: 0, grpcPort: 0, grpcReceiveTimeout: 2 ** 31 }),
  ).rejects.toThrow(
    new RangeError('Expected `grpcReceiveTimeout` to be an integer from 1 to 2147483647, got `2147483648`'),
  );
  await gated.model.batcher.close();
});

// ---- 3. A deadline more than 2^31 ms away ----

test('a deadline 30 days away (past 2^31 ms) lets the call run instead of failing DEADLINE_EXCEEDED at once', async () => {
  const gated = await start();
  const month = 30 * 24 * 3600 * 1000;
  const call = gated.client.call(
    'ModelInfer',
    {
      model_name: 'gated',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], contents: { fp32_contents: [1, 1] } }],
    },
    month,
  );
  // Before: grpc-js wrapped 2592000000 ms with `| 0` and the call failed within 3-35 ms.
  const reached = await Promise.race([
    until(() => gated.running() === 1).then(() => true),
    call.then(
      () => false,
      () => false,
    ),
  ]);
  expect(reached).toBe(true);
  await new Promise((resolve) => setTimeout(resolve, 100));
  gated.release();
  expect((await call).outputs[0].name).toBe('y');
  // The longest grpc-timeout there is (99999999 hours) runs too.
  const session = await rawSession();
  expect(
    await rawCall(session, 'ServerLive', frame(Buffer.alloc(0)), { headers: { 'grpc-timeout': '99999999H' } }).answer,
  ).toEqual({ code: status.OK, details: 'OK' });
});

// ---- 4. Malformed messages and grpc-timeout values: the client's fault, not INTERNAL ----

test('a malformed protobuf message is INVALID_ARGUMENT, not INTERNAL (and not silently truncated)', async () => {
  await start();
  const session = await rawSession();
  // protobufjs throws on this one ("index out of range"), and grpc-js answered INTERNAL.
  expect(await rawCall(session, 'ModelMetadata', frame(Buffer.from([0x0f]))).answer).toEqual({
    code: status.INVALID_ARGUMENT,
    details: 'Malformed ModelMetadataRequest message: field 1 has wire type 7, which no field of this message has',
  });
  // protobufjs reads this one as model_name "" (its 32767-byte length runs past the end).
  expect(await rawCall(session, 'ModelInfer', frame(Buffer.from([0x0a, 0xff, 0xff, 0x01]))).answer).toEqual({
    code: status.INVALID_ARGUMENT,
    details: 'Malformed ModelInferRequest message: field 1 says 32767 bytes, 0 are left in its message',
  });
  // A map entry without its value: protobufjs's toObject throws a TypeError on it.
  expect(
    await rawCall(session, 'ModelInfer', frame(Buffer.concat([modelName, Buffer.from([0x22, 0x00])]))).answer,
  ).toMatchObject({
    code: status.INVALID_ARGUMENT,
    details: expect.stringMatching(/^Malformed ModelInferRequest message: /),
  });
});

test('an invalid grpc-timeout header is INVALID_ARGUMENT, not INTERNAL', async () => {
  await start();
  const session = await rawSession();
  for (const value of ['soon', '123456789m', '10 S', '-5S']) {
    expect(
      await rawCall(session, 'ServerLive', frame(Buffer.alloc(0)), { headers: { 'grpc-timeout': value } }).answer,
    ).toEqual({
      code: status.INVALID_ARGUMENT,
      details: `Invalid grpc-timeout header ${JSON.stringify(value)}: it takes 1 to 8 digits and a unit, H, M, S, m, u or n`,
    });
  }
  // A valid one still works.
  expect(
    await rawCall(session, 'ServerLive', frame(Buffer.alloc(0)), { headers: { 'grpc-timeout': '5S' } }).answer,
  ).toEqual({ code: status.OK, details: 'OK' });
});
