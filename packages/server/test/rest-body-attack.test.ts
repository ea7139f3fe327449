import { connect } from 'node:net';
import { deflateRawSync, deflateSync, gzipSync } from 'node:zlib';
import Fastify, { type FastifyInstance } from 'fastify';
import { batchedFn } from 'batched-fn';
import { type InferItem, type InferResult, kservePlugin, type ServedModel, type Tensor } from '@batched-fn/server';
import { afterEach, expect, test } from 'vitest';

// An attack pass on the REST request's callback body reader (rest/request-body.ts readBody, the
// callback content-type parser in rest/plugin.ts) and the text-built answer header
// (protocol/encode.ts). A fastify app with kservePlugin and a model of the caller's own, on
// 127.0.0.1 and an ephemeral port.

let app: FastifyInstance | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

/** x FP32 [-1, 2] → y; `answer` says what y is (a model of the caller's own may leave fields out). */
function ownModel(answer: (rows: number) => Tensor): ServedModel {
  const batcher = batchedFn<InferItem, InferResult>({
    handler: async (batch) => batch.map((item) => ({ y: answer(item.rows) })),
    maxBatchSize: 4,
    maxDelay: 0,
    size: (item) => item.rows,
    name: 'own',
  });
  return {
    name: 'own',
    version: '1',
    platform: 'test',
    signature: {
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 1] }],
    },
    maxBatchSize: 4,
    batcher,
    infer: (item, options) => batcher(item, options),
  };
}

/** Serves `model` with a 1 KiB body limit; records the request stream's listeners once each answer is out. */
async function serve(model: ServedModel): Promise<{ port: number; left: number[] }> {
  const left: number[] = [];
  app = Fastify();
  app.addHook('onResponse', (request, _reply, done) => {
    const raw = request.raw;
    left.push(['data', 'end', 'error', 'close'].reduce((n, event) => n + raw.listenerCount(event), 0));
    done();
  });
  await app.register(kservePlugin, { models: [model], bodyLimit: 1024 });
  await app.listen({ host: '127.0.0.1', port: 0 });
  return { port: (app.server.address() as { port: number }).port, left };
}

/** One raw request; everything the server sends until it closes the connection (bounded in time). */
function exchange(port: number, request: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(), 2_000);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
    socket.write(request);
  });
}

const BODY = JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: [1, 2] }] });

test('a binary output of a model that leaves `shape` out still gets a header that is JSON, as its JSON answer does', async () => {
  // A plain-JS model of the caller's own (kservePlugin takes any ServedModel), answering as a
  // repository model.mjs may: `{ datatype, data }`, no shape. The JSON answer omits the key; the
  // binary answer's header must be JSON too (it was, when the header was JSON.stringify of objects).
  const model = ownModel((rows) => ({ datatype: 'FP32', data: new Float32Array(rows) }) as unknown as Tensor);
  const { port } = await serve(model);
  const url = `http://127.0.0.1:${port}/v2/models/own/infer`;
  const post = (body: unknown) =>
    fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const input = { name: 'x', datatype: 'FP32', shape: [1, 2], data: [1, 2] };
  const json = await post({ inputs: [input] });
  expect(json.status).toBe(200);
  expect(((await json.json()) as { outputs: unknown[] }).outputs[0]).toEqual({
    name: 'y',
    datatype: 'FP32',
    data: [0],
  });
  const binary = await post({ inputs: [input], outputs: [{ name: 'y', parameters: { binary_data: true } }] });
  expect(binary.status).toBe(200);
  const body = Buffer.from(await binary.arrayBuffer());
  const headerLength = Number(binary.headers.get('inference-header-content-length'));
  const header = body.subarray(0, headerLength).toString('utf8');
  // Failed before ef2b490: the header said `"shape":undefined`, which no client can parse.
  expect(header).not.toContain('undefined');
  expect(JSON.parse(header).outputs[0]).toEqual({
    name: 'y',
    datatype: 'FP32',
    parameters: { binary_data_size: 4 },
  });
});

test('every refusal of the body reader is answered once, with its status and text, and leaves no listener on the request', async () => {
  const model = ownModel((rows) => ({ datatype: 'FP32', shape: [rows, 1], data: new Float32Array(rows) }));
  const { port, left } = await serve(model);
  const request = (headers: string, body: Buffer | string = '') =>
    Buffer.concat([
      Buffer.from(`POST /v2/models/own/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${headers}\r\n`),
      Buffer.from(body),
    ]);
  const sized = (headers: string, body: Buffer | string) =>
    request(`${headers}Content-Length: ${Buffer.byteLength(body)}\r\n`, body);
  const bomb = gzipSync(Buffer.alloc(100_000, 0x20));
  const cases: [string, Buffer, number, string][] = [
    ['plain', sized('Content-Type: application/json\r\n', BODY), 200, '"outputs"'],
    ['gzip', sized('Content-Encoding: gzip\r\n', gzipSync(BODY)), 200, '"outputs"'],
    ['zlib deflate', sized('Content-Encoding: deflate\r\n', deflateSync(BODY)), 200, '"outputs"'],
    ['raw deflate', sized('Content-Encoding: deflate\r\n', deflateRawSync(BODY)), 200, '"outputs"'],
    ['text/plain', sized('Content-Type: text/plain\r\n', BODY), 415, 'Content-Type must be'],
    ['br', sized('Content-Encoding: br\r\n', BODY), 415, 'Content-Encoding must be gzip, deflate or identity'],
    ['declared over', sized('', Buffer.alloc(2000, 0x20)), 413, "larger than the server's limit (--body-limit 1 KiB)"],
    [
      'chunked over',
      request('Transfer-Encoding: chunked\r\n', `7d0\r\n${' '.repeat(2000)}\r\n0\r\n\r\n`),
      413,
      "larger than the server's limit",
    ],
    ['gzip bomb', sized('Content-Encoding: gzip\r\n', bomb), 413, 'inflates (Content-Encoding: gzip)'],
    ['not gzip', sized('Content-Encoding: gzip\r\n', BODY), 400, 'not valid gzip (Content-Encoding)'],
    ['1-byte deflate', sized('Content-Encoding: deflate\r\n', 'x'), 400, 'not valid deflate'],
    ['empty deflate', sized('Content-Type: application/json\r\nContent-Encoding: deflate\r\n', ''), 400, 'not valid'],
    ['announced far over', request('Content-Length: 5000000\r\n'), 413, "larger than the server's limit"],
  ];
  for (const [name, bytes, status, text] of cases) {
    const answer = await exchange(port, bytes);
    expect(answer.match(/HTTP\/1\.1 \d{3} /g), name).toEqual([`HTTP/1.1 ${status} `]);
    expect(answer, name).toContain(text);
    if (status !== 200) expect(answer, name).toMatch(/\r\nconnection: close\r\n/i);
  }
  // Every answer had its onResponse, and the reader took its listeners off each request
  // (the announced-far-over one never read: Node's own end listener stays).
  expect(left.length).toBe(cases.length);
  expect(left.slice(0, -1)).toEqual(Array(cases.length - 1).fill(0));
});
