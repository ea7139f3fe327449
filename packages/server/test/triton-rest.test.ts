import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateRawSync, deflateSync, gzipSync } from 'node:zlib';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { type RunningServer, SERVE_DEFAULTS, startServer } from '@batched-fn/server';
import { SETTING_DEFAULTS as FLAG_DEFAULTS } from '../dist/settings/settings.js';
import { grpcClient, rawOf } from './grpc-client.js';

// Issue #20 on the REST face: what tritonclient.http sends (no Content-Type, compressed bodies,
// whole bodies before reading), Triton's raw binary request, `data` nesting, Triton's error texts,
// and --http-restricted-api; with the CSRF protection the old 415 gave, kept by other means.

const TRITON_MODELS = new URL('./fixtures/triton-models/', import.meta.url).pathname;
const MIB = 1024 * 1024;

/** Single-input models for the raw binary request, beside Triton's `simple`. */
const MODELS: Record<string, string> = {
  identity_fp32: `export const inputs = [{ name: 'INPUT0', datatype: 'FP32', shape: [-1, -1] }];
export const outputs = [{ name: 'OUTPUT0', datatype: 'FP32', shape: [-1, -1] }];
export const handler = (requests) => requests.map(({ inputs: { INPUT0 } }) => ({ OUTPUT0: { shape: INPUT0.shape, data: INPUT0.data } }));`,
  identity_bytes: `export const inputs = [{ name: 'INPUT0', datatype: 'BYTES', shape: [-1, 1] }];
export const outputs = [{ name: 'OUTPUT0', datatype: 'BYTES', shape: [-1, 1] }];
export const handler = (requests) => requests.map(({ inputs: { INPUT0 } }) => ({ OUTPUT0: { shape: INPUT0.shape, data: INPUT0.data } }));`,
  bytes_wide: `export const inputs = [{ name: 'INPUT0', datatype: 'BYTES', shape: [-1, 2] }];
export const outputs = [{ name: 'OUTPUT0', datatype: 'BYTES', shape: [-1, 2] }];
export const handler = (requests) => requests.map(({ inputs: { INPUT0 } }) => ({ OUTPUT0: { data: INPUT0.data } }));`,
  two_variable: `export const inputs = [{ name: 'INPUT0', datatype: 'FP32', shape: [-1, -1, -1] }];
export const outputs = [{ name: 'OUTPUT0', datatype: 'FP32', shape: [-1, 1] }];
export const handler = (requests) => requests.map(({ rows }) => ({ OUTPUT0: { data: new Float32Array(rows) } }));`,
};

let repository: string;
let server: RunningServer;
const others: RunningServer[] = [];

beforeAll(async () => {
  repository = mkdtempSync(join(tmpdir(), 'bfn-triton-rest-'));
  cpSync(join(TRITON_MODELS, 'simple'), join(repository, 'simple'), { recursive: true });
  for (const [name, source] of Object.entries(MODELS)) {
    mkdirSync(join(repository, name));
    writeFileSync(join(repository, name, 'model.mjs'), source);
  }
  server = await startServer({ modelRepository: repository, port: 0, modelControl: 'explicit', dashboard: 'off' });
});

afterAll(async () => {
  await Promise.all([server?.close(), ...others.map((s) => s.close())]);
  rmSync(repository, { recursive: true, force: true });
});

/** Another server, closed after the file. */
async function serve(options: Parameters<typeof startServer>[0]): Promise<RunningServer> {
  const started = await startServer({ port: 0, dashboard: 'off', ...options });
  others.push(started);
  return started;
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  json: any;
}

/**
 * One request with these headers: a body goes as application/json unless the headers say otherwise
 * or `bare` (exactly the headers given: fetch would add a Content-Type to a string body).
 */
function send(
  base: string,
  path: string,
  options: { method?: string; headers?: Record<string, string>; body?: Buffer | string; bare?: boolean } = {},
): Promise<Answer> {
  const url = new URL(path, base);
  const given = options.headers ?? {};
  const headers =
    options.bare === true || options.body === undefined || 'content-type' in given
      ? given
      : { 'content-type': 'application/json', ...given };
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: options.method ?? 'POST',
        headers,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const body = Buffer.concat(chunks);
          let json: unknown;
          try {
            json = JSON.parse(body.toString('utf8'));
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json });
        });
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

const ints = (from: number, count = 16) => Array.from({ length: count }, (_, i) => from + i);
/** Triton's `simple` request: INPUT0 = 0..15, INPUT1 = 1s. */
const simpleBody = (data0: unknown = ints(0), extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    inputs: [
      { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: data0 },
      { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data: Array(16).fill(1) },
    ],
    ...extra,
  });
const sums = ints(1);

// ---- 1. No Content-Type; cross-site browser requests; --cors ----

test('a request without Content-Type is read as JSON (tritonclient.http infer, load_model, unload_model)', async () => {
  const infer = await send(server.url, '/v2/models/simple/infer', { body: Buffer.from(simpleBody()), bare: true });
  expect(infer.status).toBe(200);
  expect(infer.json.outputs[0]).toEqual({ name: 'OUTPUT0', datatype: 'INT32', shape: [1, 16], data: sums });
  // tritonclient's load_model and unload_model send `{}` with no Content-Type either.
  expect((await send(server.url, '/v2/repository/models/simple/unload', { body: '{}', bare: true })).status).toBe(200);
  expect((await send(server.url, '/v2/repository/models/simple/load', { body: '{}', bare: true })).status).toBe(200);
  expect(
    (await send(server.url, '/v2/repository/index', { body: '{"ready":true}', bare: true })).json.map(
      (m: any) => m.name,
    ),
  ).toContain('simple');
});

test('without Content-Type, Inference-Header-Content-Length makes it the binary extension', async () => {
  const header = Buffer.from(
    JSON.stringify({
      inputs: [
        { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], parameters: { binary_data_size: 64 } },
        { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data: Array(16).fill(1) },
      ],
    }),
  );
  const answer = await send(server.url, '/v2/models/simple/infer', {
    headers: { 'inference-header-content-length': String(header.length) },
    body: Buffer.concat([header, rawOf(Int32Array.from(ints(0)))]),
    bare: true,
  });
  expect(answer.status).toBe(200);
  expect(answer.json.outputs[0].data).toEqual(sums);
});

test('a cross-site browser request is refused with 403 (a foreign Origin, Origin null, Sec-Fetch-Site: cross-site) on every POST route, before anything runs', async () => {
  const port = new URL(server.url).port;
  const json = { 'content-type': 'application/json' };
  const foreign = await send(server.url, '/v2/models/simple/infer', {
    headers: { ...json, origin: 'https://evil.example' },
    body: simpleBody(),
  });
  expect(foreign.status).toBe(403);
  expect(foreign.json).toEqual({
    error:
      'Cross-origin request refused: Origin "https://evil.example" is not this server\'s own; start the server with --cors https://evil.example to let that site call it',
  });
  // Another port of the same host is another origin (a dev server on localhost:3000, say).
  expect(
    (
      await send(server.url, '/v2/models/simple/infer', {
        headers: { ...json, origin: 'http://127.0.0.1:3000' },
        body: simpleBody(),
      })
    ).status,
  ).toBe(403);
  const sandboxed = await send(server.url, '/v2/models/simple/infer', {
    headers: { ...json, origin: 'null' },
    body: simpleBody(),
  });
  expect(sandboxed.json).toEqual({
    error:
      'Cross-origin request refused: Origin "null" is not this server\'s own; start the server with --cors ORIGIN to let that site call it',
  });
  const site = await send(server.url, '/v2/models/simple/infer', {
    headers: { ...json, 'sec-fetch-site': 'cross-site' },
    body: simpleBody(),
  });
  expect(site).toMatchObject({
    status: 403,
    json: {
      error:
        'Cross-site request refused (Sec-Fetch-Site: cross-site); start the server with --cors ORIGIN to let that site call it',
    },
  });
  // Every POST route, the repository's (which would unload a model) and generate's included.
  for (const path of [
    '/v2/repository/models/simple/unload',
    '/v2/repository/models/simple/load',
    '/v2/repository/index',
    '/v2/models/simple/generate',
  ]) {
    expect((await send(server.url, path, { headers: { origin: 'https://evil.example' }, body: '{}' })).status).toBe(
      403,
    );
  }
  expect((await send(server.url, '/v2/models/simple/ready', { method: 'GET' })).status).toBe(200);
  // The server's own pages (same origin), same-site fetches and clients that are not browsers pass.
  expect(
    (
      await send(server.url, '/v2/models/simple/infer', {
        headers: { ...json, origin: `http://127.0.0.1:${port}`, 'sec-fetch-site': 'same-origin' },
        body: simpleBody(),
      })
    ).status,
  ).toBe(200);
  expect(
    (
      await send(server.url, '/v2/models/simple/infer', {
        headers: { ...json, origin: `http://localhost:${port}`, host: `localhost:${port}` },
        body: simpleBody(),
      })
    ).status,
  ).toBe(200);
  // GETs are not refused: a page cannot read their answers without CORS.
  expect((await send(server.url, '/v2', { method: 'GET', headers: { origin: 'https://evil.example' } })).status).toBe(
    200,
  );
});

test("--cors ORIGIN lets that site in: CORS headers on its answers, its preflights answered; other origins' preflights are 403", async () => {
  const cors = await serve({
    modelRepository: TRITON_MODELS,
    cors: ['https://app.example.com', 'http://localhost:3000/'],
  });
  const allowed = await send(cors.url, '/v2/models/simple/infer', {
    headers: { 'content-type': 'application/json', origin: 'https://app.example.com', 'sec-fetch-site': 'cross-site' },
    body: simpleBody(),
  });
  expect(allowed.status).toBe(200);
  expect(allowed.headers['access-control-allow-origin']).toBe('https://app.example.com');
  expect(allowed.headers['access-control-expose-headers']).toBe('Inference-Header-Content-Length, Retry-After');
  expect(allowed.headers.vary).toBe('Origin');
  expect(
    (
      await send(cors.url, '/v2/models/simple/infer', {
        headers: { origin: 'http://localhost:3000' },
        body: simpleBody(),
      })
    ).status,
  ).toBe(200);
  const preflight = await send(cors.url, '/v2/models/simple/infer', {
    method: 'OPTIONS',
    headers: {
      origin: 'https://app.example.com',
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'content-type, inference-header-content-length',
    },
  });
  expect(preflight.status).toBe(204);
  expect(preflight.headers).toMatchObject({
    'access-control-allow-origin': 'https://app.example.com',
    'access-control-allow-methods': 'GET, HEAD, POST, OPTIONS',
    'access-control-allow-headers': 'content-type, inference-header-content-length',
    'access-control-max-age': '600',
  });
  const stranger = await send(cors.url, '/v2/models/simple/infer', {
    method: 'OPTIONS',
    headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
  });
  expect(stranger).toMatchObject({
    status: 403,
    json: {
      error:
        'Cross-origin request refused: Origin "https://evil.example" is not let in; start the server with --cors https://evil.example to let that site call it',
    },
  });
  expect(stranger.headers['access-control-allow-origin']).toBeUndefined();
  expect(
    (
      await send(cors.url, '/v2/models/simple/infer', {
        headers: { origin: 'https://evil.example' },
        body: simpleBody(),
      })
    ).status,
  ).toBe(403);
  await expect(startServer({ port: 0, modelRepository: TRITON_MODELS, cors: 'app.example.com' })).rejects.toThrow(
    new RangeError(
      'Expected `cors` origins like https://app.example.com (http or https, a host and an optional port, no path), got "app.example.com"',
    ),
  );
});

test('text/plain and form bodies stay 415, whatever their origin', async () => {
  for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
    const answer = await send(server.url, '/v2/models/simple/infer', {
      headers: { 'content-type': type },
      body: simpleBody(),
    });
    expect(answer).toMatchObject({
      status: 415,
      json: {
        error: `Content-Type must be application/json or application/octet-stream (the binary tensor extension), or none, got ${JSON.stringify(type)}`,
      },
    });
  }
});

// ---- 2. Compressed requests ----

test('gzip and deflate requests (tritonclient request_compression_algorithm) are inflated; raw deflate too', async () => {
  for (const [coding, body] of [
    ['gzip', gzipSync(simpleBody())],
    ['deflate', deflateSync(simpleBody())],
    ['deflate', deflateRawSync(simpleBody())],
    ['identity', Buffer.from(simpleBody())],
  ] as const) {
    const answer = await send(server.url, '/v2/models/simple/infer', { headers: { 'content-encoding': coding }, body });
    expect(answer.status, coding).toBe(200);
    expect(answer.json.outputs[0].data).toEqual(sums);
  }
  // And with the binary extension: the header length counts inflated bytes.
  const header = Buffer.from(
    JSON.stringify({
      inputs: [
        { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], parameters: { binary_data_size: 64 } },
        { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], parameters: { binary_data_size: 64 } },
      ],
    }),
  );
  const plain = Buffer.concat([header, rawOf(Int32Array.from(ints(0))), rawOf(new Int32Array(16).fill(1))]);
  const binary = await send(server.url, '/v2/models/simple/infer', {
    headers: { 'content-encoding': 'gzip', 'inference-header-content-length': String(header.length) },
    body: gzipSync(plain),
  });
  expect(binary.json.outputs[0].data).toEqual(sums);
});

test('a gzip bomb is a 413 naming the limit: inflation stops at the limit, and the server stays small', async () => {
  const small = await serve({ modelRepository: TRITON_MODELS, bodyLimit: MIB });
  // 512 MiB of spaces (valid JSON whitespace) in 539 KB of gzip: 512 gzip members of 1 MiB each.
  const member = gzipSync(Buffer.alloc(MIB, 0x20), { level: 9 });
  const bomb = Buffer.concat(Array(512).fill(member));
  const rss = process.memoryUsage().rss;
  const started = performance.now();
  const answer = await send(small.url, '/v2/models/simple/infer', {
    headers: { 'content-encoding': 'gzip' },
    body: bomb,
  });
  const ms = performance.now() - started;
  expect(answer.status).toBe(413);
  expect(answer.json).toEqual({
    error:
      "Request body inflates (Content-Encoding: gzip) to more than the server's limit (--body-limit 1 MiB); stopped there",
  });
  expect(answer.headers.connection).toBe('close');
  // Inflating all of it would take seconds and half a GiB; stopping at the limit takes milliseconds.
  expect(ms).toBeLessThan(2_000);
  expect(process.memoryUsage().rss - rss).toBeLessThan(200 * MIB);
  console.log(
    `gzip bomb (${bomb.length} bytes -> 512 MiB): 413 in ${ms.toFixed(0)} ms, RSS +${((process.memoryUsage().rss - rss) / MIB).toFixed(0)} MiB`,
  );
  // A body within the limit once inflated is served.
  expect(
    (
      await send(small.url, '/v2/models/simple/infer', {
        headers: { 'content-encoding': 'gzip' },
        body: gzipSync(simpleBody()),
      })
    ).status,
  ).toBe(200);
});

test('an unknown Content-Encoding is 415 with Accept-Encoding; a corrupt gzip body is 400', async () => {
  const br = await send(server.url, '/v2/models/simple/infer', {
    headers: { 'content-encoding': 'br' },
    body: simpleBody(),
  });
  expect(br).toMatchObject({
    status: 415,
    json: { error: 'Content-Encoding must be gzip, deflate or identity, got "br"' },
  });
  expect(br.headers['accept-encoding']).toBe('gzip, deflate');
  const corrupt = await send(server.url, '/v2/models/simple/infer', {
    headers: { 'content-encoding': 'gzip' },
    body: Buffer.from(simpleBody()),
  });
  expect(corrupt).toMatchObject({
    status: 400,
    json: { error: 'Request body is not valid gzip (Content-Encoding): incorrect header check' },
  });
  const truncated = await send(server.url, '/v2/models/simple/infer', {
    headers: { 'content-encoding': 'gzip' },
    body: gzipSync(simpleBody()).subarray(0, 40),
  });
  expect(truncated).toMatchObject({
    status: 400,
    json: { error: 'Request body is not valid gzip (Content-Encoding): unexpected end of file' },
  });
});

// ---- 3. Body limits ----

test('the default --body-limit is 64 MiB, one setting for REST bodies and gRPC messages', async () => {
  expect(FLAG_DEFAULTS.bodyLimit).toBe(64 * MIB);
  expect(SERVE_DEFAULTS.bodyLimit).toBe(64 * MIB);
  // A batch of 64 x 3 x 224 x 224 FP32 images fits (38.5 MB of raw tensor, binary extension).
  const images = 64 * 3 * 224 * 224;
  const header = Buffer.from(
    JSON.stringify({
      inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, images], parameters: { binary_data_size: images * 4 } }],
      outputs: [{ name: 'OUTPUT0', parameters: { binary_data: true } }],
    }),
  );
  const answer = await send(server.url, '/v2/models/identity_fp32/infer', {
    headers: { 'inference-header-content-length': String(header.length) },
    body: Buffer.concat([header, Buffer.alloc(images * 4)]),
  });
  expect(answer.status).toBe(200);
  expect(answer.body.length - Number(answer.headers['inference-header-content-length'])).toBe(images * 4);
  // gRPC's message limit is the same setting: 1 MiB here refuses a 1.5 MiB message, as REST refuses a 1.5 MiB body.
  const limited = await serve({ modelRepository: TRITON_MODELS, bodyLimit: MIB, grpcPort: 0 });
  const client = grpcClient(limited.grpcUrl as string);
  try {
    const rows = Math.ceil((1.5 * MIB) / 128);
    const big = {
      model_name: 'simple',
      inputs: [
        { name: 'INPUT0', datatype: 'INT32', shape: [rows, 16] },
        { name: 'INPUT1', datatype: 'INT32', shape: [rows, 16] },
      ],
      raw_input_contents: [Buffer.alloc(rows * 64), Buffer.alloc(rows * 64)],
    };
    expect((await client.fails('ModelInfer', big)).code).toBe(status.RESOURCE_EXHAUSTED);
    const ok = {
      model_name: 'simple',
      inputs: big.inputs.map((i) => ({ ...i, shape: [1, 16] })),
      raw_input_contents: [Buffer.alloc(64), Buffer.alloc(64)],
    };
    expect((await client.call('ModelInfer', ok)).model_name).toBe('simple');
    expect(
      (
        await send(limited.url, '/v2/models/simple/infer', {
          headers: { 'content-type': 'application/octet-stream' },
          body: Buffer.alloc(1.5 * MIB),
        })
      ).status,
    ).toBe(413);
  } finally {
    client.close();
  }
});

/**
 * A client that writes its whole request first and only then reads (tritonclient, http.client): the
 * raw answer, once complete (by its Content-Length) or once the server closes the connection.
 */
function writeAllThenRead(
  url: string,
  head: string,
  body: Buffer,
): Promise<{ written: Error | undefined; response: string; readError: Error | undefined; closed: boolean }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname);
    let written: Error | undefined;
    let readError: Error | undefined;
    const chunks: Buffer[] = [];
    const done = (closed: boolean) => {
      socket.destroy();
      resolve({ written, response: Buffer.concat(chunks).toString('latin1'), readError, closed });
    };
    socket.on('error', (error) => {
      readError ??= error;
    });
    socket.once('connect', () => {
      // Not reading while writing: the server's answer waits in the socket until the body is out.
      socket.pause();
      socket.write(head);
      socket.write(body, (error) => {
        written = error ?? undefined;
        socket.on('data', (chunk: Buffer) => {
          chunks.push(chunk);
          const text = Buffer.concat(chunks).toString('latin1');
          const end = text.indexOf('\r\n\r\n');
          const length = /\r\ncontent-length: (\d+)\r\n/i.exec(text.slice(0, end + 2))?.[1];
          if (
            end >= 0 &&
            length !== undefined &&
            text.length >= end + 4 + Number(length) &&
            !/\r\nconnection: close\r\n/i.test(text.slice(0, end + 2))
          )
            done(false);
        });
        socket.resume();
      });
    });
    socket.once('close', () => done(true));
  });
}

test('a client that writes its whole over-limit body before reading reads the 413 (no broken pipe), then the connection closes', async () => {
  // The numbers: a 9 MiB body to an 8 MiB limit (more than loopback's socket buffers hold).
  const small = await serve({ modelRepository: TRITON_MODELS, bodyLimit: 8 * MIB });
  const { port } = new URL(small.url);
  const body = Buffer.alloc(9 * MIB, 0x20);
  const sized = await writeAllThenRead(
    small.url,
    `POST /v2/models/simple/infer HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`,
    body,
  );
  expect(sized.written).toBeUndefined();
  expect(sized.readError).toBeUndefined();
  expect(sized.response).toMatch(/^HTTP\/1\.1 413 /);
  expect(sized.response).toMatch(/\r\nconnection: close\r\n/i);
  expect(sized.closed).toBe(true);
  expect(sized.response.slice(sized.response.indexOf('\r\n\r\n') + 4)).toBe(
    JSON.stringify({ error: "Request body is larger than the server's limit (--body-limit 8 MiB)" }),
  );
  // Chunked (no Content-Length): the limit is found while reading, and the rest is drained the same way.
  const chunked = Buffer.concat([Buffer.from(`${body.length.toString(16)}\r\n`), body, Buffer.from('\r\n0\r\n\r\n')]);
  const streamed = await writeAllThenRead(
    small.url,
    `POST /v2/models/simple/infer HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`,
    chunked,
  );
  expect(streamed.written).toBeUndefined();
  expect(streamed.response).toMatch(/^HTTP\/1\.1 413 /);
  // Refused before reading (a cross-site request, a type not read) the same way.
  const refused = await writeAllThenRead(
    small.url,
    `POST /v2/models/simple/infer HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n`,
    body,
  );
  expect(refused.written).toBeUndefined();
  expect(refused.response).toMatch(/^HTTP\/1\.1 415 /);
  const crossSite = await writeAllThenRead(
    small.url,
    `POST /v2/models/simple/infer HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\nOrigin: https://evil.example\r\nContent-Length: ${body.length}\r\n\r\n`,
    body,
  );
  expect(crossSite.written).toBeUndefined();
  expect(crossSite.response).toMatch(/^HTTP\/1\.1 403 /);
  // Drained whole, it leaves the connection open (keep-alive), as any other answer.
  expect(crossSite.closed).toBe(false);
});

test('a body far past the limit is not read to its end: past twice the limit the connection is closed', async () => {
  const small = await serve({ modelRepository: TRITON_MODELS, bodyLimit: MIB });
  const { port } = new URL(small.url);
  const started = performance.now();
  // 256 MiB announced, and sent: the server stops at 2 MiB and closes, so the client cannot write it all.
  const huge = Buffer.alloc(256 * MIB);
  const result = await writeAllThenRead(
    small.url,
    `POST /v2/models/simple/infer HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n${huge.length.toString(16)}\r\n`,
    huge,
  );
  expect(result.written ?? result.readError).toBeDefined();
  expect(performance.now() - started).toBeLessThan(10_000);
  // Announced past the bound: answered at once, without reading.
  const announced = await writeAllThenRead(
    small.url,
    `POST /v2/models/simple/infer HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\nContent-Length: ${3 * MIB}\r\n\r\n`,
    Buffer.alloc(0),
  );
  expect(announced.response).toMatch(/^HTTP\/1\.1 413 [\s\S]*\r\nconnection: close\r\n/i);
});

// ---- 4. The raw binary request ----

test('the raw binary request: Inference-Header-Content-Length: 0 makes the whole body the one input, batch 1, answered in binary', async () => {
  const input = Float32Array.from({ length: 8 }, (_, i) => i);
  const answer = await send(server.url, '/v2/models/identity_fp32/infer', {
    headers: { 'inference-header-content-length': '0' },
    body: rawOf(input),
  });
  expect(answer.status).toBe(200);
  expect(answer.headers['content-type']).toBe('application/octet-stream');
  const headerLength = Number(answer.headers['inference-header-content-length']);
  expect(JSON.parse(answer.body.subarray(0, headerLength).toString())).toEqual({
    model_name: 'identity_fp32',
    model_version: '1',
    outputs: [{ name: 'OUTPUT0', datatype: 'FP32', shape: [1, 8], parameters: { binary_data_size: 32 } }],
  });
  expect(answer.body.subarray(headerLength)).toEqual(rawOf(input));
  // With a Content-Type, as the extension's example sends it, the same.
  expect(
    (
      await send(server.url, '/v2/models/identity_fp32/infer', {
        headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': '0' },
        body: rawOf(input),
      })
    ).status,
  ).toBe(200);
  // BYTES: the body is the one element; the answer carries Triton's 4-byte length before it.
  const bytes = await send(server.url, '/v2/models/identity_bytes/infer', {
    headers: { 'inference-header-content-length': '0' },
    body: '427',
  });
  expect(bytes.status).toBe(200);
  const bytesHeader = Number(bytes.headers['inference-header-content-length']);
  expect(bytes.body.subarray(bytesHeader)).toEqual(Buffer.from([3, 0, 0, 0, 0x34, 0x32, 0x37]));
});

test.each([
  [
    'a model with two inputs',
    'simple',
    "[request id: <id_unknown>] Raw request must only have 1 input (found 1) to be deduced but got 2 inputs in 'simple' model configuration",
  ],
  [
    'two variable dimensions',
    'two_variable',
    "[request id: <id_unknown>] The shape of the raw input 'INPUT0' can not be deduced because there are more than one variable-sized dimension",
  ],
  [
    'a BYTES input not of shape [1]',
    'bytes_wide',
    "[request id: <id_unknown>] For BYTE datatype raw input 'INPUT0', the model must have input shape [1]",
  ],
  [
    'a body that is not whole elements',
    'identity_fp32',
    'Input `INPUT0` has 10 bytes of binary data, but 2 FP32 elements need 8',
  ],
])("a raw binary request to %s is a 400 in Triton's words", async (_label, model, message) => {
  const answer = await send(server.url, `/v2/models/${model}/infer`, {
    headers: { 'inference-header-content-length': '0' },
    body: Buffer.alloc(10),
  });
  expect(answer).toMatchObject({ status: 400, json: { error: message } });
});

// ---- 5. `data` nesting ----

test('data nested deeper than the shape, ragged, or mixed with values is flattened, as Triton reads it', async () => {
  for (const data of [
    [[ints(0)]],
    [[[...ints(0, 8)]], [ints(8, 8)]],
    [ints(0, 2), ...ints(2, 14)],
    [[[[[[0]]]]], ints(1, 15)],
  ]) {
    const answer = await send(server.url, '/v2/models/simple/infer', { body: simpleBody(data) });
    expect(answer.status, JSON.stringify(data)).toBe(200);
    expect(answer.json.outputs[0].data).toEqual(sums);
  }
  // The element count must still be the shape's.
  expect(
    (await send(server.url, '/v2/models/simple/infer', { body: simpleBody([ints(0, 8), ints(8, 7)]) })).json,
  ).toEqual({ error: 'Input `INPUT0` has 15 elements, but its shape needs 16' });
  expect(
    (await send(server.url, '/v2/models/simple/infer', { body: simpleBody([ints(0, 8), ints(8, 9)]) })).json,
  ).toEqual({ error: 'Input `INPUT0` has more than 16 elements, but its shape needs 16' });
});

test('data nesting is walked without recursion and bounded as Triton bounds it: 99 levels pass, 100 are a 400, 60,000 cost nothing', async () => {
  const nested = (depth: number) => `${'['.repeat(depth)}7${']'.repeat(depth)}`;
  const body = (depth: number) =>
    `{"inputs":[{"name":"INPUT0","datatype":"INT32","shape":[1,1],"data":${nested(depth)}}]}`;
  const post = (depth: number) =>
    send(server.url, '/v2/models/identity_fp32/infer', { body: body(depth).replace('INT32', 'FP32') });
  const ok = await post(99);
  expect(ok.status).toBe(200);
  expect(ok.json.outputs[0].data).toEqual([7]);
  const refusal = {
    error: 'Input `INPUT0`: `data` is nested too deeply: JSON nesting depth exceeds maximum allowed limit (100)',
  };
  expect(await post(100)).toMatchObject({ status: 400, json: refusal });
  // 60,000 levels (under --max-objects arrays): refused by the body scan's depth bound, before JSON.parse builds them.
  const started = performance.now();
  expect(await post(60_000)).toMatchObject({
    status: 400,
    json: {
      error: 'Request body is nested more than 128 levels deep: JSON nesting depth exceeds maximum allowed limit',
    },
  });
  expect(performance.now() - started).toBeLessThan(2_000);
  // 100,000 levels are past --max-objects: refused before parsing.
  expect((await post(100_000)).status).toBe(400);
});

// ---- 6. Triton's error texts ----

test("Triton's error texts where its clients and tests match them, with its statuses", async () => {
  const unknown = await send(server.url, '/v2/models/nope/infer', { body: simpleBody() });
  // Triton's words, then the models this server has (all of them: fewer than 10).
  const names = ((await (await fetch(`${server.url}/v2/models`)).json()) as { models: { name: string }[] }).models
    .map((m) => m.name)
    .join(', ');
  const words = `Request for unknown model: 'nope' is not found (models here: ${names})`;
  expect(unknown).toMatchObject({ status: 400, json: { error: words } });
  expect((await send(server.url, '/v2/models/nope', { method: 'GET' })).json).toEqual({ error: words });
  expect((await send(server.url, '/v2/models/nope/ready', { method: 'GET' })).status).toBe(400);
  const version = await send(server.url, '/v2/models/simple/versions/99/infer', { body: simpleBody() });
  expect(version).toMatchObject({
    status: 404,
    json: { error: "Request for unknown model: 'simple' version 99 is not found (it has 1)" },
  });
  const duplicateOutput = await send(server.url, '/v2/models/simple/infer', {
    body: simpleBody(ints(0), { outputs: [{ name: 'OUTPUT0' }, { name: 'OUTPUT0' }] }),
  });
  expect(duplicateOutput).toMatchObject({
    status: 400,
    json: { error: "[request id: <id_unknown>] output 'OUTPUT0' already exists in request" },
  });
  const input = { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: ints(0) };
  const duplicateInput = await send(server.url, '/v2/models/simple/infer', {
    body: JSON.stringify({ id: 'r7', inputs: [input, input] }),
  });
  expect(duplicateInput).toMatchObject({
    status: 400,
    json: { error: "[request id: r7] input 'INPUT0' already exists in request" },
  });
  // A model that is not loaded: Triton's words first, then its state.
  expect((await send(server.url, '/v2/repository/models/two_variable/unload', { body: '{}' })).status).toBe(200);
  const unloaded = await send(server.url, '/v2/models/two_variable/infer', { body: '{}' });
  expect(unloaded).toMatchObject({
    status: 503,
    json: {
      error: "Request for unknown model: 'two_variable' has no available versions (it is UNAVAILABLE: unloaded)",
    },
  });
  expect((await send(server.url, '/v2/repository/models/two_variable/load', { body: '{}' })).status).toBe(200);
});

test("load and unload while model control is off: Triton's text, 503 on REST and UNAVAILABLE on gRPC", async () => {
  const fixed = await serve({ modelRepository: TRITON_MODELS, grpcPort: 0 });
  const text =
    'explicit model load / unload is not allowed if polling is enabled (model control is off: start the server with --model-control explicit to load and unload models)';
  for (const action of ['load', 'unload']) {
    expect(await send(fixed.url, `/v2/repository/models/simple/${action}`, { body: '{}' })).toMatchObject({
      status: 503,
      json: { error: text },
    });
  }
  const client = grpcClient(fixed.grpcUrl as string);
  try {
    expect(await client.fails('RepositoryModelUnload', { model_name: 'simple' })).toEqual({
      code: status.UNAVAILABLE,
      details: text,
    });
    expect(await client.fails('RepositoryModelLoad', { model_name: 'simple' })).toEqual({
      code: status.UNAVAILABLE,
      details: text,
    });
  } finally {
    client.close();
  }
});

// ---- 7. --http-restricted-api ----

test("--http-restricted-api: a group answers only requests with its header and value; others get Triton's 403 (its http_restricted_api_test)", async () => {
  const restricted = await serve({
    modelRepository: TRITON_MODELS,
    httpRestrictedApi: ['model-repository:admin-key=admin-value', 'metadata,inference:infer-key=infer-value'],
  });
  const infer = { 'infer-key': 'infer-value' };
  // Unrestricted groups need nothing.
  expect((await send(restricted.url, '/v2/models/simple/stats', { method: 'GET' })).status).toBe(200);
  expect((await send(restricted.url, '/v2/models/simple/stats', { method: 'GET', headers: infer })).status).toBe(200);
  expect((await send(restricted.url, '/v2/health/ready', { method: 'GET' })).status).toBe(200);
  // model-repository wants admin-key; with it, the request reaches the model-control answer.
  expect(
    await send(restricted.url, '/v2/repository/models/simple/unload', { headers: infer, body: '{}' }),
  ).toMatchObject({ status: 403, json: { error: "This API is restricted, expecting header 'admin-key'" } });
  expect(
    (
      await send(restricted.url, '/v2/repository/models/simple/unload', {
        headers: { 'admin-key': 'admin-value' },
        body: '{}',
      })
    ).json.error,
  ).toMatch(/^explicit model load \/ unload is not allowed/);
  expect((await send(restricted.url, '/v2/repository/index', { body: '{}' })).status).toBe(403);
  // metadata and inference want infer-key.
  expect(await send(restricted.url, '/v2', { method: 'GET' })).toMatchObject({
    status: 403,
    json: { error: "This API is restricted, expecting header 'infer-key'" },
  });
  expect((await send(restricted.url, '/v2', { method: 'GET', headers: infer })).status).toBe(200);
  expect(
    (await send(restricted.url, '/v2/models/simple', { method: 'GET', headers: { 'infer-key': 'wrong' } })).status,
  ).toBe(403);
  expect(
    (await send(restricted.url, '/v2/models/simple/infer', { headers: { test: '1' }, body: simpleBody() })).status,
  ).toBe(403);
  expect(
    (await send(restricted.url, '/v2/models/simple/infer', { headers: infer, body: simpleBody() })).json.outputs[0]
      .data,
  ).toEqual(sums);
  expect((await send(restricted.url, '/v2/models/simple/generate', { body: '{}' })).status).toBe(403);
  // Outside the protocol's groups: not restricted.
  expect((await send(restricted.url, '/metrics', { method: 'GET' })).status).toBe(200);
});

test("every REST route is filed in Triton's groups (its http_server.cc)", async () => {
  const { restGroupOf } = await import('../dist/rest/rest-guards.js');
  expect(
    Object.fromEntries(
      [
        '/v2',
        '/v2/health/live',
        '/v2/health/ready',
        '/v2/models/:name',
        '/v2/models/:name/versions/:version',
        '/v2/models/:name/ready',
        '/v2/models/:name/versions/:version/ready',
        '/v2/models/:name/infer',
        '/v2/models/:name/versions/:version/infer',
        '/v2/models/:name/generate',
        '/v2/models/:name/generate_stream',
        '/v2/models/:name/config',
        '/v2/models/stats',
        '/v2/models/:name/stats',
        '/v2/models/:name/versions/:version/stats',
        '/v2/repository/index',
        '/v2/repository/models/:name/load',
        '/v2/repository/models/:name/unload',
        '/v2/systemsharedmemory/status',
        '/v2/systemsharedmemory/region/:name/register',
        '/v2/cudasharedmemory/region/:name/unregister',
        '/v2/trace/setting',
        '/v2/models/:name/trace/setting',
        '/v2/logging',
        '/metrics',
        '/dashboard',
      ].map((path) => [path, restGroupOf(path as string) ?? null]),
    ),
  ).toEqual({
    '/v2': 'metadata',
    '/v2/health/live': 'health',
    '/v2/health/ready': 'health',
    '/v2/models/:name': 'metadata',
    '/v2/models/:name/versions/:version': 'metadata',
    '/v2/models/:name/ready': 'health',
    '/v2/models/:name/versions/:version/ready': 'health',
    '/v2/models/:name/infer': 'inference',
    '/v2/models/:name/versions/:version/infer': 'inference',
    '/v2/models/:name/generate': 'inference',
    '/v2/models/:name/generate_stream': 'inference',
    '/v2/models/:name/config': 'model-config',
    '/v2/models/stats': 'statistics',
    '/v2/models/:name/stats': 'statistics',
    '/v2/models/:name/versions/:version/stats': 'statistics',
    '/v2/repository/index': 'model-repository',
    '/v2/repository/models/:name/load': 'model-repository',
    '/v2/repository/models/:name/unload': 'model-repository',
    '/v2/systemsharedmemory/status': 'shared-memory',
    '/v2/systemsharedmemory/region/:name/register': 'shared-memory',
    '/v2/cudasharedmemory/region/:name/unregister': 'shared-memory',
    '/v2/trace/setting': 'trace',
    '/v2/models/:name/trace/setting': 'trace',
    '/v2/logging': 'logging',
    '/metrics': null,
    '/dashboard': null,
  });
});

test("a malformed --http-restricted-api is refused at start, in Triton's words", async () => {
  const start = (value: string | string[]) =>
    startServer({ port: 0, modelRepository: TRITON_MODELS, httpRestrictedApi: value });
  await expect(start('inference')).rejects.toThrow(
    new RangeError("--http-restricted-api option format is '<apis>:<key>=<value>'. Got inference"),
  );
  await expect(start('inference,magic:k=v')).rejects.toThrow(/^unknown restricted api 'magic'/);
  await expect(start(['inference:a=1', 'inference:b=2'])).rejects.toThrow(
    /^restricted api 'inference' can not be specified in multiple config groups/,
  );
});
