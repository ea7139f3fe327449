import { afterEach, expect, test } from 'vitest';
import { type RunningServer, serveModel } from '@batched-fn/server';
import { gatedModel, jsonRequest, postJson } from './helpers.js';

// Attacks from the hardening review, each answered with a clear 4xx (or a bounded /metrics), never a 500 or a crash.

let server: RunningServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function start(options: Parameters<typeof gatedModel>[0] = {}) {
  const gated = gatedModel({ maxBatchSize: 64, channelCap: 100, ...options });
  server = await serveModel(gated.model, gated.metrics, { port: 0 });
  return { ...gated, app: server.app, infer: `${server.url}/v2/models/gated/infer` };
}

const inject = (
  app: RunningServer['app'],
  url: string,
  payload: string | Buffer,
  headers: Record<string, string> = { 'content-type': 'application/json' },
) => app.inject({ method: 'POST', url, payload, headers });

test('10,000 unknown model names leave /metrics the same size: no label value comes from a client', async () => {
  const { app } = await start();
  await inject(app, '/v2/models/nobody-0/infer', '{}');
  const before = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  for (let i = 1; i <= 10_000; i++) {
    const response = await inject(app, `/v2/models/nobody-${i}-${'x'.repeat(i % 50)}/infer`, '{}');
    if (response.statusCode !== 400) throw new Error(`status ${response.statusCode}`);
  }
  const after = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  // The same series in the same order; only counter values (a few more digits) differ.
  const series = (text: string) => text.split('\n').map((line) => line.replace(/ [^ ]+$/, ''));
  expect(series(after)).toEqual(series(before));
  expect(after.length - before.length).toBeLessThan(100);
  expect(after).not.toContain('nobody');
  expect(after).toContain('batched_fn_requests_total{model="(unknown)",protocol="rest",status="400"} 10001');
});

test('a very long model name is refused by the router, and an unknown version is clipped in the error', async () => {
  const { app } = await start();
  const long = await inject(app, `/v2/models/${'n'.repeat(5000)}/infer`, '{}');
  expect(long.statusCode).toBe(414);
  const version = await inject(app, `/v2/models/gated/versions/${'7'.repeat(99)}/infer`, '{}');
  expect(version.statusCode).toBe(404);
  expect(JSON.parse(version.body).error).toBe(
    `Request for unknown model: 'gated' version ${'7'.repeat(99)} is not found (it has 1)`,
  );
});

test.each([
  [
    'a shape far larger than its data',
    jsonRequest('x', [2 ** 33, 2], 'FP32', [1, 1]),
    400,
    /^Input `x` has 2 elements, but its shape needs 17179869184$/,
  ],
  [
    'a first dimension of 2^24 with one row of data',
    jsonRequest('x', [16_777_215, 2], 'FP32', [1, 1]),
    400,
    /^Input `x` has 2 elements, but its shape needs 33554430$/,
  ],
  [
    'more rows than --max-batch-size, honestly sent',
    jsonRequest('x', [65, 2], 'FP32', Array(130).fill(1)),
    413,
    /^ERR_ITEM_TOO_LARGE: Input has size 65, larger than the model's max batch size \(--max-batch-size 64\)$/,
  ],
  // Any nesting is flattened, as Triton reads `data` (triton-rest.test.ts); the element count must still be the shape's.
  [
    'ragged nested data one element short',
    jsonRequest('x', [2, 2], 'FP32', [[1, 2], [3]]),
    400,
    /^Input `x` has 3 elements, but its shape needs 4$/,
  ],
  [
    'data nested deeper than the shape, one element over',
    jsonRequest('x', [1, 2], 'FP32', [[[1], [2], [3]]]),
    400,
    /^Input `x` has more than 2 elements, but its shape needs 2$/,
  ],
  [
    'flat data mixed with rows, one element short',
    jsonRequest('x', [2, 2], 'FP32', [1, 2, [3]]),
    400,
    /^Input `x` has 3 elements, but its shape needs 4$/,
  ],
  [
    'an FP32 value that overflows to Infinity',
    jsonRequest('x', [1, 2], 'FP32', [1, 3.5e38]),
    400,
    /^Input `x`: element 1 \(3\.5e\+38\) overflows FP32$/,
  ],
  [
    'a JSON number beyond FP64',
    '{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,1e400]}]}',
    400,
    /^Input `x`: element 1 \(Infinity\) overflows FP32$/,
  ],
  [
    'an output requested twice',
    JSON.stringify({
      inputs: [{ name: 'x', shape: [1, 2], datatype: 'FP32', data: [1, 1] }],
      outputs: [{ name: 'y' }, { name: 'y' }],
    }),
    400,
    /^\[request id: <id_unknown>\] output 'y' already exists in request$/,
  ],
  [
    'a timeout beyond one timer',
    jsonRequest('x', [1, 2], 'FP32', [1, 1], { parameters: { timeout: 2 ** 31 * 1000 } }),
    400,
    /^parameters.timeout must be an integer number of microseconds from 0 to 2147483647000, got 2147483648000$/,
  ],
])('%s is a clear 4xx', async (_label, body, status, message) => {
  const { app } = await start();
  const response = await inject(app, '/v2/models/gated/infer', body);
  expect(response.statusCode).toBe(status);
  expect(JSON.parse(response.body).error).toMatch(message);
});

test('data nested 100,000 levels is a 400, not a stack overflow', async () => {
  const { app } = await start();
  const deep = `${'['.repeat(100_000)}1${']'.repeat(100_000)}`;
  const response = await inject(
    app,
    '/v2/models/gated/infer',
    `{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":${deep}}]}`,
  );
  expect(response.statusCode).toBe(400);
  // Refused before JSON.parse by the body scan's depth bound (body-scan.ts); within it, the walk of `data`
  // stops at Triton's depth of 100 (tensor-data.ts).
  expect(JSON.parse(response.body).error).toBe(
    'Request body is nested more than 128 levels deep: JSON nesting depth exceeds maximum allowed limit',
  );
});

test('a shape (or any value an error quotes) nested 10,000 levels is a 400, not a 500 from JSON.stringify overflowing the stack', async () => {
  const { app } = await start();
  const deep = `${'['.repeat(10_000)}1${']'.repeat(10_000)}`;
  for (const body of [
    `{"inputs":[{"name":"x","shape":${deep},"datatype":"FP32","data":[1,2]}]}`,
    `{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}],"parameters":{"timeout":${deep}}}`,
  ]) {
    const response = await inject(app, '/v2/models/gated/infer', body);
    expect(response.statusCode).toBe(400);
    expect(JSON.parse(response.body).error).toBe(
      'Request body is nested more than 128 levels deep: JSON nesting depth exceeds maximum allowed limit',
    );
  }
});

test('the binary path checks sizes before allocating: a huge shape with 8 bytes is a 400', async () => {
  const { app } = await start();
  const header = Buffer.from(
    JSON.stringify({
      inputs: [{ name: 'x', shape: [2 ** 33, 2], datatype: 'FP32', parameters: { binary_data_size: 8 } }],
    }),
  );
  const response = await inject(app, '/v2/models/gated/infer', Buffer.concat([header, Buffer.alloc(8)]), {
    'content-type': 'application/octet-stream',
    'inference-header-content-length': String(header.length),
  });
  expect(response.statusCode).toBe(400);
  expect(JSON.parse(response.body).error).toBe(
    'Input `x` has 8 bytes of binary data, but 17179869184 FP32 elements need 68719476736',
  );
});

test.each(['0x10', '16.0', ' 16', '1e1', '-0', '+16'])(
  'Inference-Header-Content-Length %j is refused: only plain decimal integers',
  async (length) => {
    const { app } = await start();
    const response = await inject(app, '/v2/models/gated/infer', jsonRequest('x', [1, 2], 'FP32', [1, 1]), {
      'content-type': 'application/json',
      'inference-header-content-length': length,
    });
    expect(response.statusCode).toBe(400);
    expect(JSON.parse(response.body).error).toMatch(
      /^Inference-Header-Content-Length must be a decimal integer from 0 to the body size/,
    );
  },
);

test.each([['text/plain'], ['application/x-www-form-urlencoded'], ['multipart/form-data; boundary=x']])(
  'a %s body (sendable cross-origin without a preflight) is refused with 415',
  async (type) => {
    const { app, running } = await start();
    const response = await inject(app, '/v2/models/gated/infer', jsonRequest('x', [1, 2], 'FP32', [1, 1]), {
      'content-type': type,
    });
    expect(response.statusCode).toBe(415);
    expect(JSON.parse(response.body).error).toBe(
      `Content-Type must be application/json or application/octet-stream (the binary tensor extension), or none, got ${JSON.stringify(type)}`,
    );
    expect(running()).toBe(0);
  },
);

test('an infer on a version the model does not have is a 404', async () => {
  const { app } = await start();
  const response = await inject(app, '/v2/models/gated/versions/7/infer', jsonRequest('x', [1, 2], 'FP32', [1, 1]));
  expect(response.statusCode).toBe(404);
  expect(JSON.parse(response.body).error).toBe("Request for unknown model: 'gated' version 7 is not found (it has 1)");
});

test('a hung model: --batch-timeout answers its callers 500 with ERR_BATCH_TIMEOUT, and the next batch runs', async () => {
  const gated = await start({ batchTimeout: 100 });
  const hung = await postJson(gated.infer, jsonRequest('x', [1, 2], 'FP32', [1, 1]));
  expect(hung.status).toBe(500);
  expect(hung.body.error).toBe('ERR_BATCH_TIMEOUT: The batch holding this call ran longer than batchTimeout=100 ms');
  const next = postJson(gated.infer, jsonRequest('x', [1, 2], 'FP32', [1, 1]));
  while (gated.running() < 2) await new Promise((resolve) => setTimeout(resolve, 2));
  gated.release();
  gated.release();
  expect((await next).status).toBe(200);
});
