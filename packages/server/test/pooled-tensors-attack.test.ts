import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Fastify from 'fastify';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { batchedFn } from 'batched-fn';
import {
  type InferItem,
  type InferResult,
  kservePlugin,
  type RunningServer,
  type ServedModel,
  ServerMetrics,
  startServer,
} from '@batched-fn/server';
import { grpcClient, rawOf } from './grpc-client.js';
import { postJson } from './helpers.js';
import { scratchDir } from './scratch.js';

// An attack pass on decoded request tensors under 4 KB being views into Node's shared Buffer pool
// (protocol/tensor-data.ts decodedArray). What must hold on every path: the pool (or any buffer other
// requests share) is never transferred (Node 21+ refuses with a DataCloneError; Node 20 silently clones
// it), and no model sees other requests' bytes through `.buffer`. Each probe model answers, per row,
// how many bytes stand behind its input: exactly the input's own, never the 8 KB pool.
let server: RunningServer | undefined;
let url = '';

/** x FP32 [-1, 4] → y = x, and `behind` = x.data.buffer.byteLength for each row. */
const PROBE = `export const inputs = [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }];
export const outputs = [
  { name: 'y', datatype: 'FP32', shape: [-1, 4] },
  { name: 'behind', datatype: 'INT32', shape: [-1, 1] },
];
export function handler(requests) {
  return requests.map((r) => {
    const x = r.inputs.x;
    return {
      y: { data: Float32Array.from(x.data) },
      behind: { data: Array.from({ length: x.shape[0] }, () => x.data.buffer.byteLength) },
    };
  });
}
`;

/** A BYTES input beside x: a batch that cannot be stacked crosses as it is (infer-codec.ts withOwnBuffers). */
const PROBE_WITH_TEXT = `export const inputs = [
  { name: 'x', datatype: 'FP32', shape: [-1, 4] },
  { name: 't', datatype: 'BYTES', shape: [-1, 1] },
];
export const outputs = [{ name: 'behind', datatype: 'INT32', shape: [-1, 2] }];
export function handler(requests) {
  return requests.map((r) => ({
    behind: {
      data: Array.from({ length: r.inputs.x.shape[0] }, () => [
        r.inputs.x.data.buffer.byteLength,
        r.inputs.t.data[0].buffer.byteLength,
      ]).flat(),
    },
  }));
}
`;

/** UINT8 x [-1, 4] → y = x (the target of the Buffer caller below). */
const ECHO8 = `export const inputs = [{ name: 'x', datatype: 'UINT8', shape: [-1, 4] }];
export const outputs = [{ name: 'y', datatype: 'UINT8', shape: [-1, 4] }];
export function handler(requests) { return requests.map((r) => ({ y: { data: Uint8Array.from(r.inputs.x.data) } })); }
`;

/** Forwards its own (small) input to `probe` with models.infer, and answers what the probe saw. */
const FORWARDER = `export const calls = ['probe'];
export const inputs = [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }];
export const outputs = [{ name: 'behind', datatype: 'INT32', shape: [-1, 1] }];
export async function context(config, { models }) { return { models }; }
export async function handler(requests, { models }) {
  return Promise.all(requests.map(async (r) => {
    const out = await models.infer('probe', { x: r.inputs.x });
    return { behind: { data: out.behind.data } };
  }));
}
`;

/**
 * Calls echo8 with a Node Buffer as a UINT8 tensor's data (a Uint8Array, so models.infer takes it). A small
 * Buffer is a view into the WORKER's Buffer pool; ownedForTransfer's \`data.slice()\` on a Buffer is a view too.
 */
const BUFFER_CALLER = `export const calls = ['echo8'];
export const inputs = [{ name: 'x', datatype: 'UINT8', shape: [-1, 4] }];
export const outputs = [{ name: 'y', datatype: 'UINT8', shape: [-1, 4] }];
export async function context(config, { models }) { return { models }; }
export async function handler(requests, { models }) {
  return Promise.all(requests.map(async (r) => {
    const out = await models.infer('echo8', {
      x: { datatype: 'UINT8', shape: r.inputs.x.shape, data: Buffer.from(r.inputs.x.data) },
    });
    return { y: { data: Uint8Array.from(out.y.data) } };
  }));
}
`;

/**
 * Answers one array for two outputs, beside a BYTES output: the results cannot be stacked, so they cross as
 * they are, and the clone keeps the two outputs one array on the main thread.
 */
const TWIN = `export const inputs = [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }];
export const outputs = [
  { name: 'a', datatype: 'FP32', shape: [-1, 4] },
  { name: 'b', datatype: 'FP32', shape: [-1, 4] },
  { name: 't', datatype: 'BYTES', shape: [-1, 1] },
];
export function handler(requests) {
  return requests.map((r) => {
    const same = Float32Array.from(r.inputs.x.data);
    return { a: { data: same }, b: { data: same }, t: { data: Array(r.inputs.x.shape[0]).fill('t') } };
  });
}
`;

beforeAll(async () => {
  const repo = scratchDir('bfn-pooled-attack-');
  const put = (path: string, content: string): void => {
    mkdirSync(join(repo, path, '..'), { recursive: true });
    writeFileSync(join(repo, path), content);
  };
  const config = JSON.stringify({ maxBatchSize: 16, maxDelay: 30 });
  put('probe/model.mjs', PROBE);
  put('probe/config.json', config);
  // Padded up to 4 rows: the zero rows join as one more request (served-batcher.ts zeroPad).
  put(
    'padded/model.mjs',
    PROBE.replace(
      "{ name: 'behind', datatype: 'INT32', shape: [-1, 1] },",
      "{ name: 'behind', datatype: 'INT32', shape: [-1, 1] },\n  { name: 'rows', datatype: 'INT32', shape: [-1, 1] },",
    ).replace(
      'behind: { data:',
      'rows: { data: Array(x.shape[0]).fill(requests.reduce((n, q) => n + q.inputs.x.shape[0], 0)) },\n' +
        '      behind: { data:',
    ),
  );
  put('padded/config.json', JSON.stringify({ maxBatchSize: 4, maxDelay: 0, pad: true, preferredBatchSizes: [4] }));
  put('textprobe/model.mjs', PROBE_WITH_TEXT);
  put('textprobe/config.json', JSON.stringify({ maxBatchSize: 16, maxDelay: 30, parameters: { binary: true } }));
  put('echo8/model.mjs', ECHO8);
  put('echo8/config.json', config);
  put('forwarder/model.mjs', FORWARDER);
  put('forwarder/config.json', config);
  put('buffercaller/model.mjs', BUFFER_CALLER);
  put('buffercaller/config.json', config);
  // An ensemble whose only step is the probe: the ensemble's request tensors reach the step through ensemble-flow.
  put(
    'viaensemble/config.json',
    JSON.stringify({
      platform: 'ensemble',
      max_batch_size: 16,
      input: [{ name: 'x', data_type: 'TYPE_FP32', dims: [4] }],
      output: [{ name: 'behind', data_type: 'TYPE_INT32', dims: [1] }],
      ensemble_scheduling: {
        step: [{ model_name: 'probe', input_map: { x: 'x' }, output_map: { behind: 'behind' } }],
      },
    }),
  );
  put('twin/model.mjs', TWIN);
  put('twin/config.json', config);
  put('probe2/model.mjs', PROBE);
  put('probe2/config.json', config);
  // One array as two ensemble tensors, each read by one step of its own model.
  put(
    'twins/config.json',
    JSON.stringify({
      platform: 'ensemble',
      max_batch_size: 16,
      input: [{ name: 'x', data_type: 'TYPE_FP32', dims: [4] }],
      output: [
        { name: 'y1', data_type: 'TYPE_FP32', dims: [4] },
        { name: 'y2', data_type: 'TYPE_FP32', dims: [4] },
      ],
      ensemble_scheduling: {
        step: [
          { model_name: 'twin', input_map: { x: 'x' }, output_map: { a: 'a', b: 'b', t: 't' } },
          { model_name: 'probe', input_map: { x: 'a' }, output_map: { y: 'y1' } },
          { model_name: 'probe2', input_map: { x: 'b' }, output_map: { y: 'y2' } },
        ],
      },
    }),
  );
  // One array as an ensemble output and as another step's input.
  put(
    'twinout/config.json',
    JSON.stringify({
      platform: 'ensemble',
      max_batch_size: 16,
      input: [{ name: 'x', data_type: 'TYPE_FP32', dims: [4] }],
      output: [
        { name: 'a', data_type: 'TYPE_FP32', dims: [4] },
        { name: 'y2', data_type: 'TYPE_FP32', dims: [4] },
      ],
      ensemble_scheduling: {
        step: [
          { model_name: 'twin', input_map: { x: 'x' }, output_map: { a: 'a', b: 'b', t: 't' } },
          { model_name: 'probe2', input_map: { x: 'b' }, output_map: { y: 'y2' } },
        ],
      },
    }),
  );
  server = await startServer({
    modelRepository: repo,
    modelControl: 'explicit',
    loadModel: '*',
    port: 0,
    host: '127.0.0.1',
    grpcPort: 0,
    workers: 1,
  });
  url = server.url;
});

afterAll(async () => {
  await server?.close();
});

const rowsOf = (rows: number, offset = 0): number[] => Array.from({ length: rows * 4 }, (_, i) => offset + i + 0.5);

const inferJson = async (model: string, rows: number, offset = 0, extra: object[] = []) => {
  const r = await postJson(
    `${url}/v2/models/${model}/infer`,
    JSON.stringify({
      inputs: [{ name: 'x', datatype: 'FP32', shape: [rows, 4], data: rowsOf(rows, offset) }, ...extra],
    }),
  );
  if (r.status !== 200) throw new Error(`${r.status} ${JSON.stringify(r.body)}`);
  return Object.fromEntries(r.body.outputs.map((o: { name: string; data: unknown }) => [o.name, o.data]));
};

/** The main thread's pool still works: a Buffer allocated before keeps its bytes, a new one is usable. */
function poolIntact(before: Buffer): void {
  expect([...before]).toEqual([1, 2, 3, 4]);
  const after = Buffer.from([5, 6, 7]);
  expect(after.buffer.byteLength).toBeGreaterThan(0);
  expect([...after]).toEqual([5, 6, 7]);
}

test('REST JSON: a small request, alone and batched (stacked), reaches the model in a buffer of its own', async () => {
  const before = Buffer.from([1, 2, 3, 4]);
  const alone = await inferJson('probe', 1);
  expect(alone.y).toEqual(rowsOf(1));
  expect(alone.behind).toEqual([16]);
  const batched = await Promise.all([1, 2, 3, 1, 2].map((rows, i) => inferJson('probe', rows, i * 100)));
  batched.forEach((answer, i) => {
    const rows = [1, 2, 3, 1, 2][i] as number;
    expect(answer.y).toEqual(rowsOf(rows, i * 100));
    // Stacked (copy) then split by ownBuffersCodec: each request's rows alone behind its tensor.
    expect(answer.behind).toEqual(Array(rows).fill(16 * rows));
  });
  poolIntact(before);
});

test('REST binary extension: a small raw tensor is copied into the pool and still crosses as its own', async () => {
  const before = Buffer.from([1, 2, 3, 4]);
  const values = Float32Array.from(rowsOf(2));
  const header = Buffer.from(
    JSON.stringify({
      inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 4], parameters: { binary_data_size: values.byteLength } }],
      outputs: [{ name: 'behind', parameters: { binary_data: false } }],
    }),
  );
  const response = await fetch(`${url}/v2/models/probe/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) },
    body: Buffer.concat([header, rawOf(values)]),
  });
  expect(response.status).toBe(200);
  const body = JSON.parse(await response.text());
  expect(body.outputs[0].data).toEqual([32, 32]);
  poolIntact(before);
});

test('gRPC typed contents and raw_input_contents: small tensors reach the model in buffers of their own', async () => {
  const before = Buffer.from([1, 2, 3, 4]);
  const client = grpcClient(server?.grpcUrl as string);
  try {
    const base = { model_name: 'probe', outputs: [{ name: 'behind' }] };
    const typed = await client.call('ModelInfer', {
      ...base,
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: rowsOf(1) } }],
    });
    const raw = await client.call('ModelInfer', {
      ...base,
      inputs: [{ name: 'x', datatype: 'FP32', shape: [3, 4] }],
      raw_input_contents: [rawOf(Float32Array.from(rowsOf(3)))],
    });
    const ints = (answer: { raw_output_contents: Buffer[] }) =>
      Array.from(new Int32Array(Uint8Array.from(answer.raw_output_contents[0] as Buffer).buffer));
    expect(ints(typed)).toEqual([16]);
    expect(ints(raw)).toEqual([48, 48, 48]);
  } finally {
    client.close();
  }
  poolIntact(before);
});

test('a batch crossing as it is (a BYTES input): its pooled FP32 input copied, its BYTES buffer its own', async () => {
  const before = Buffer.from([1, 2, 3, 4]);
  const text = (rows: number) => ({ name: 't', datatype: 'BYTES', shape: [rows, 1], data: Array(rows).fill('hi') });
  const alone = await inferJson('textprobe', 1, 0, [text(1)]);
  // bytesFromBinary/packedBytes: the BYTES buffer holds this tensor's elements only ('hi' = 2 bytes).
  expect(alone.behind).toEqual([16, 2]);
  const batched = await Promise.all([1, 2, 1].map((rows, i) => inferJson('textprobe', rows, i, [text(rows)])));
  expect(batched.map((a) => a.behind)).toEqual([
    [16, 2],
    [32, 4, 32, 4],
    [16, 2],
  ]);
  poolIntact(before);
});

test('a padded batch (zero rows appended as a request): the small request still sees its own bytes alone', async () => {
  const before = Buffer.from([1, 2, 3, 4]);
  const answer = await inferJson('padded', 1, 7);
  expect(answer.y).toEqual(rowsOf(1, 7));
  expect(answer.behind).toEqual([16]);
  // The batch that ran was padded: 4 rows, 3 of them the padding request's.
  expect(answer.rows).toEqual([4]);
  poolIntact(before);
});

test('an ensemble hands its small request tensor to its step as a copy of its own (ensemble-flow take)', async () => {
  const before = Buffer.from([1, 2, 3, 4]);
  expect((await inferJson('viaensemble', 2)).behind).toEqual([32, 32]);
  const batched = await Promise.all([1, 3].map((rows) => inferJson('viaensemble', rows)));
  expect(batched.map((a) => (a.behind as number[])[0])).toEqual([16, 48]);
  poolIntact(before);
});

test("a JS model forwarding its small input with models.infer: the target sees that input's bytes alone", async () => {
  const before = Buffer.from([1, 2, 3, 4]);
  expect((await inferJson('forwarder', 1)).behind).toEqual([16]);
  const batched = await Promise.all([1, 2, 1].map((rows) => inferJson('forwarder', rows)));
  expect(batched.map((a) => a.behind)).toEqual([[16], [32, 32], [16]]);
  poolIntact(before);
});

// Failed on Node 21+ before the fix (Node 20 silently clones an untransferable buffer). In the worker,
// model-calls.worker.ts hands the inputs to ownedForTransfer(wire, 'shared') (model-calls-wire.ts): a typed
// array that is not its whole buffer is copied. It was copied with `data.slice()`, which on a Buffer is
// `subarray()`: a view into the worker's Buffer pool, whose ArrayBuffer then went in the transfer list.
// On Node 22 that was a DataCloneError, and the calling model's request failed (copiedArray now).
test("models.infer with a small Node Buffer as a UINT8 tensor's data: the call is answered", async () => {
  const r = await postJson(
    `${url}/v2/models/buffercaller/infer`,
    JSON.stringify({ inputs: [{ name: 'x', datatype: 'UINT8', shape: [1, 4], data: [1, 2, 3, 4] }] }),
  );
  expect(`${r.status} ${r.status === 200 ? '' : JSON.stringify(r.body)}`).toBe('200 ');
  expect(r.body.outputs[0].data).toEqual([1, 2, 3, 4]);
});

// kservePlugin takes any ServedModel (a public type). A model whose `infer` runs in process (an inline
// batchedFn, as test/helpers.ts gatedModel) got a small request's tensor as a view into the main thread's
// Buffer pool: `.buffer` held 8 KB of other requests' and other code's bytes, and moving it (as a custom
// worker-backed model may) handed over the pool. Only models that say `takesSharedViews` get views now.
test('a custom in-process ServedModel (kservePlugin) sees only its request tensor behind .buffer', async () => {
  const seen: number[] = [];
  const batcher = batchedFn<InferItem, InferResult>({
    handler: async (batch) =>
      batch.map((item) => {
        const data = item.inputs.x?.data as Float32Array;
        seen.push(data.buffer.byteLength);
        return { y: { datatype: 'FP32', shape: [item.rows, 4], data: Float32Array.from(data) } };
      }),
    maxBatchSize: 4,
    maxDelay: 0,
    size: (item) => item.rows,
    name: 'inline',
  });
  const model: ServedModel = {
    name: 'inline',
    version: '1',
    platform: 'test',
    signature: {
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 4] }],
    },
    maxBatchSize: 4,
    batcher,
    infer: (item, callOptions) => batcher(item, callOptions),
  };
  const app = Fastify();
  try {
    await app.register(kservePlugin, { models: [model], metrics: new ServerMetrics({ defaultMetrics: false }) });
    const answer = await app.inject({
      method: 'POST',
      url: '/v2/models/inline/infer',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: rowsOf(1) }] }),
    });
    expect(answer.statusCode).toBe(200);
    expect(seen).toEqual([16]);
  } finally {
    await app.close();
    await batcher.close();
  }
});

// Two ensemble tensors that are one array (a step answered it for two outputs) each had one reader, so
// each went to its step as it was: the first step's batch of one handed the buffer to its thread, and the
// second step's input was then a detached array. ensemble-flow's take copies a buffer it already handed on.
test('one array answered for two outputs reaches two steps: each step gets it whole', async () => {
  const answer = await inferJson('twins', 1);
  expect(answer.y1).toEqual(rowsOf(1));
  expect(answer.y2).toEqual(rowsOf(1));
});

// The same, with one of the two tensors an ensemble output: the answer reads it after the steps, so the step
// reading the other one may not take their shared buffer as it is.
test('one array answered as an ensemble output and as a step input: the answer gets it whole', async () => {
  const answer = await inferJson('twinout', 1);
  expect(answer.a).toEqual(rowsOf(1));
  expect(answer.y2).toEqual(rowsOf(1));
});
