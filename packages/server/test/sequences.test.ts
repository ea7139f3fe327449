import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, expect, test } from 'vitest';
import { type RunningServer, startServer } from '@batched-fn/server';
import { floatsOf, grpcClient } from './grpc-client.js';
import { postJson } from './helpers.js';
import { messages } from './triton-helpers.js';

// Triton's sequence batcher (issue #23): a stateful JS model (examples/sequence-model's running
// normalizer) gets each request with its sequence's state, kept in one worker thread between
// requests. Checked: interleaved sequences over REST, gRPC ModelInfer and ModelStreamInfer answer
// exactly what each sequence run alone answers, in batches of several sequences; the control
// parameters' errors (no id, unknown id), restart, idle expiry, the cap, a crashed worker, unload.

const EXAMPLE = fileURLToPath(new URL('../../../examples/sequence-model/repository/normalizer/', import.meta.url));
const FEATURES = 8;
let repo = '';
let server: RunningServer | undefined;
const closers: (() => unknown)[] = [];

beforeAll(() => {
  repo = mkdtempSync(join(tmpdir(), 'bfn-sequences-'));
  cpSync(EXAMPLE, join(repo, 'norm'), { recursive: true });
  // The same model with a way to crash its thread, one worker, two sequences at most.
  mkdirSync(join(repo, 'small'));
  writeFileSync(
    join(repo, 'small', 'model.mjs'),
    `import { handler as normalize } from ${JSON.stringify(pathToFileURL(join(EXAMPLE, 'model.mjs')).href)};
export { inputs, outputs } from ${JSON.stringify(pathToFileURL(join(EXAMPLE, 'model.mjs')).href)};
export function handler(requests, ctx) {
  if (requests.some((r) => r.inputs.frames.data[0] === -999)) process.exit(5);
  return normalize(requests, ctx);
}
`,
  );
  writeFileSync(
    join(repo, 'small', 'config.json'),
    JSON.stringify({
      workers: 1,
      maxDelay: 0,
      maxSequences: 2,
      sequence_batching: { max_sequence_idle_microseconds: 600_000_000 },
    }),
  );
  mkdirSync(join(repo, 'idle'));
  cpSync(join(EXAMPLE, 'model.mjs'), join(repo, 'idle', 'model.mjs'));
  writeFileSync(
    join(repo, 'idle', 'config.json'),
    JSON.stringify({ workers: 1, maxDelay: 0, sequence_batching: { max_sequence_idle_microseconds: 300_000 } }),
  );
  // Triton's layout: the same model under a config.pbtxt's sequence_batching.
  mkdirSync(join(repo, 'tseq', '1'), { recursive: true });
  cpSync(join(EXAMPLE, 'model.mjs'), join(repo, 'tseq', '1', 'model.mjs'));
  writeFileSync(
    join(repo, 'tseq', 'config.pbtxt'),
    `backend: "js"
max_batch_size: 16
input [ { name: "frames" data_type: TYPE_FP32 dims: [ 8 ] } ]
output [ { name: "normalized" data_type: TYPE_FP32 dims: [ 8 ] }, { name: "mean" data_type: TYPE_FP32 dims: [ 8 ] } ]
sequence_batching { max_sequence_idle_microseconds: 0 oldest { max_queue_delay_microseconds: 1000 } }
instance_group [ { kind: KIND_CPU, count: 2 } ]
`,
  );
  // For the crash: idle for as long as a busy machine may take to restart the thread.
  mkdirSync(join(repo, 'crashy'));
  cpSync(join(repo, 'small', 'model.mjs'), join(repo, 'crashy', 'model.mjs'));
  writeFileSync(
    join(repo, 'crashy', 'config.json'),
    JSON.stringify({ workers: 1, maxDelay: 0, sequence_batching: { max_sequence_idle_microseconds: 600_000_000 } }),
  );
});
afterAll(() => rmSync(repo, { recursive: true, force: true }));
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
  await server?.close();
  server = undefined;
});

async function start(extra: object = {}): Promise<RunningServer> {
  server = await startServer({ modelRepository: repo, port: 0, grpcPort: 0, dashboard: 'off', ...extra });
  return server;
}

/** Frames of sequence `s`, chunk `k`: two rows of exact float32 values. */
function chunk(s: number, k: number): number[] {
  return Array.from(
    Float32Array.from({ length: 2 * FEATURES }, (_, i) => Math.sin(s * 7.1 + k * 3.3 + i) * 4 + s / 10),
  );
}

/** What each sequence answers when it runs alone: the example's handler in this thread. */
async function alone(sequences: number, chunks: number): Promise<number[][][]> {
  const { handler } = (await import(pathToFileURL(join(EXAMPLE, 'model.mjs')).href)) as {
    handler: (requests: unknown[]) => { normalized: { data: Float32Array } }[];
  };
  return Array.from({ length: sequences }, (_, s) => {
    const state = {};
    return Array.from({ length: chunks }, (_, k) => {
      const [answer] = handler([{ inputs: { frames: { data: Float32Array.from(chunk(s, k)) } }, sequence: { state } }]);
      return Array.from(answer?.normalized.data ?? []);
    });
  });
}

const restBody = (frames: number[], parameters: object) =>
  JSON.stringify({
    inputs: [{ name: 'frames', datatype: 'FP32', shape: [frames.length / FEATURES, FEATURES], data: frames }],
    parameters,
  });

async function rest(model: string, frames: number[], parameters: object) {
  const response = await postJson(`${server?.url}/v2/models/${model}/infer`, restBody(frames, parameters));
  return response;
}

const normalized = (body: { outputs: { name: string; data: number[] }[] }) =>
  body.outputs.find((o) => o.name === 'normalized')?.data;

async function stats(model: string): Promise<{ inference_count: number; execution_count: number }> {
  const body = (await (await fetch(`${server?.url}/v2/models/${model}/stats`)).json()) as {
    model_stats: { inference_count: number; execution_count: number }[];
  };
  return body.model_stats[0] as { inference_count: number; execution_count: number };
}

const grpcRequest = (model: string, frames: number[], id: object, start: boolean, end: boolean) => ({
  model_name: model,
  inputs: [
    {
      name: 'frames',
      datatype: 'FP32',
      shape: [frames.length / FEATURES, FEATURES],
      contents: { fp32_contents: frames },
    },
  ],
  parameters: { sequence_id: id, sequence_start: { bool_param: start }, sequence_end: { bool_param: end } },
});

test('64 interleaved sequences over REST and gRPC ModelInfer answer exactly what each answers alone, several sequences per batch', async () => {
  const { grpcUrl } = await start();
  const client = grpcClient(grpcUrl as string);
  closers.push(() => client.close());
  const CHUNKS = 5;
  const expected = await alone(64, CHUNKS);
  const got: number[][][] = Array.from({ length: 64 }, () => []);
  // Each sequence sends its next chunk once the last is answered (as a client must, over REST); the
  // 64 sequences run at once: even ones over REST, odd ones over gRPC with uint64 ids past 2^53.
  await Promise.all(
    Array.from({ length: 64 }, async (_, s) => {
      for (let k = 0; k < CHUNKS; k++) {
        const frames = chunk(s, k);
        const [start, end] = [k === 0, k === CHUNKS - 1];
        if (s % 2 === 0) {
          const { status, body } = await rest('norm', frames, {
            sequence_id: 1000 + s,
            sequence_start: start,
            sequence_end: end,
          });
          expect(status).toBe(200);
          got[s]?.push(normalized(body) as number[]);
        } else {
          const id = { uint64_param: (2n ** 64n - 1n - BigInt(s)).toString() };
          const answer = await client.call('ModelInfer', grpcRequest('norm', frames, id, start, end));
          const index = answer.outputs.findIndex((o: { name: string }) => o.name === 'normalized');
          got[s]?.push(Array.from(floatsOf(answer.raw_output_contents[index])));
        }
      }
    }),
  );
  expect(got).toEqual(expected);
  const { inference_count, execution_count } = await stats('norm');
  expect(inference_count).toBe(64 * CHUNKS * 2);
  expect(execution_count).toBeLessThan(64 * CHUNKS);
  // Every sequence ended: a request to one is for an unknown sequence.
  const after = await rest('norm', chunk(0, 0), { sequence_id: 1000 });
  expect(after.status).toBe(400);
  expect(after.body.error).toMatch(/^No live sequence 1000 of model norm/);
});

test('ModelStreamInfer: 16 sequences written interleaved on one stream, chunks back to back, answer as alone', async () => {
  const { grpcUrl } = await start();
  const client = grpcClient(grpcUrl as string);
  closers.push(() => client.close());
  const CHUNKS = 4;
  const expected = await alone(16, CHUNKS);
  const stream = client.raw.ModelStreamInfer();
  closers.push(() => stream.end());
  const answers = messages(stream);
  // Every chunk of every sequence is written at once: a sequence's later chunks wait in the
  // batcher, in order, for its earlier ones (one per sequence per batch).
  for (let k = 0; k < CHUNKS; k++)
    for (let s = 0; s < 16; s++)
      stream.write({
        ...grpcRequest('norm', chunk(s, k), { string_param: `utterance-${s}` }, k === 0, k === CHUNKS - 1),
        id: `${s}:${k}`,
      });
  const got: number[][][] = Array.from({ length: 16 }, () => []);
  for (let i = 0; i < 16 * CHUNKS; i++) {
    const { error_message, infer_response } = await answers.next();
    expect(error_message).toBe('');
    const [s, k] = String(infer_response.id).split(':').map(Number) as [number, number];
    const index = infer_response.outputs.findIndex((o: { name: string }) => o.name === 'normalized');
    (got[s] as number[][])[k] = Array.from(floatsOf(infer_response.raw_output_contents[index]));
  }
  expect(got).toEqual(expected);
  const { inference_count, execution_count } = await stats('norm');
  expect(inference_count).toBe(16 * CHUNKS * 2);
  // At most one request per sequence in a batch: never fewer batches than chunks of one sequence.
  expect(execution_count).toBeGreaterThanOrEqual(CHUNKS);
  expect(execution_count).toBeLessThan(16 * CHUNKS);
});

test('sequence_id absent or 0 is a 400 (gRPC INVALID_ARGUMENT); a bad id or flag too; an unknown id without start is a 400', async () => {
  const { grpcUrl } = await start();
  const client = grpcClient(grpcUrl as string);
  closers.push(() => client.close());
  const frames = chunk(1, 1);
  const missing = await rest('norm', frames, {});
  expect(missing.status).toBe(400);
  expect(missing.body.error).toBe(
    'This is a sequence model: every request needs a `sequence_id` parameter other than 0 (a uint64 or a string)',
  );
  expect((await rest('norm', frames, { sequence_id: 0, sequence_start: true })).status).toBe(400);
  const lossy = await rest('norm', frames, { sequence_id: 2 ** 60, sequence_start: true });
  expect(lossy.status).toBe(400);
  expect(lossy.body.error).toMatch(/above 2\^53, as a decimal string/);
  const flag = await rest('norm', frames, { sequence_id: 5, sequence_start: 'yes' });
  expect(flag.body.error).toBe('Expected `sequence_start` to be true or false, got "yes"');
  const unknown = await rest('norm', frames, { sequence_id: 77 });
  expect(unknown.status).toBe(400);
  expect(unknown.body.error).toMatch(/^No live sequence 77 of model norm: it was never started, has ended/);
  const grpcMissing = await client.fails('ModelInfer', {
    model_name: 'norm',
    inputs: [{ name: 'frames', datatype: 'FP32', shape: [2, FEATURES], contents: { fp32_contents: frames } }],
  });
  expect(grpcMissing.code).toBe(3);
  const grpcZero = await client.fails('ModelInfer', grpcRequest('norm', frames, { int64_param: 0 }, true, false));
  expect(grpcZero.code).toBe(3);
  // A decimal string is the same sequence as the number: exact past 2^53.
  expect((await rest('norm', frames, { sequence_id: '18446744073709551615', sequence_start: true })).status).toBe(200);
  const exact = await client.call(
    'ModelInfer',
    grpcRequest('norm', frames, { uint64_param: '18446744073709551615' }, false, true),
  );
  expect(exact.outputs).toHaveLength(2);
});

test('a second sequence_start on a live id restarts it with a fresh state', async () => {
  await start();
  const [first, second] = [chunk(3, 0), chunk(3, 1)];
  expect((await rest('norm', first, { sequence_id: 'r', sequence_start: true })).status).toBe(200);
  expect((await rest('norm', second, { sequence_id: 'r' })).status).toBe(200);
  const restarted = await rest('norm', second, { sequence_id: 'r', sequence_start: true });
  const fresh = await rest('norm', second, { sequence_id: 'fresh', sequence_start: true });
  expect(normalized(restarted.body)).toEqual(normalized(fresh.body));
  const continued = await rest('norm', first, { sequence_id: 'r', sequence_end: true });
  const freshContinued = await rest('norm', first, { sequence_id: 'fresh', sequence_end: true });
  expect(normalized(continued.body)).toEqual(normalized(freshContinued.body));
});

test('a sequence idle past max_sequence_idle_microseconds is freed: its next request is a 400', async () => {
  await start();
  expect((await rest('idle', chunk(1, 0), { sequence_id: 1, sequence_start: true })).status).toBe(200);
  expect((await rest('idle', chunk(1, 1), { sequence_id: 1 })).status).toBe(200);
  await new Promise((resolve) => setTimeout(resolve, 450));
  const expired = await rest('idle', chunk(1, 2), { sequence_id: 1 });
  expect(expired.status).toBe(400);
  expect(expired.body.error).toMatch(/^No live sequence 1 of model idle: .* freed after 300000 µs idle/);
});

test('the cap on live sequences answers 503 with Retry-After (gRPC RESOURCE_EXHAUSTED); an end frees a place', async () => {
  const { grpcUrl } = await start();
  const client = grpcClient(grpcUrl as string);
  closers.push(() => client.close());
  expect((await rest('small', chunk(1, 0), { sequence_id: 1, sequence_start: true })).status).toBe(200);
  expect((await rest('small', chunk(2, 0), { sequence_id: 2, sequence_start: true })).status).toBe(200);
  const full = await rest('small', chunk(3, 0), { sequence_id: 3, sequence_start: true });
  expect(full.status).toBe(503);
  expect(full.headers.get('retry-after')).toBe('1');
  expect(full.body.error).toBe('Model small holds its most live sequences (2, `maxSequences`); end one or retry later');
  const grpcFull = await client.fails('ModelInfer', grpcRequest('small', chunk(3, 0), { int64_param: 3 }, true, false));
  expect(grpcFull.code).toBe(8);
  // A restart of a live sequence takes no new place.
  expect((await rest('small', chunk(2, 0), { sequence_id: 2, sequence_start: true })).status).toBe(200);
  expect((await rest('small', chunk(1, 1), { sequence_id: 1, sequence_end: true })).status).toBe(200);
  expect((await rest('small', chunk(3, 0), { sequence_id: 3, sequence_start: true })).status).toBe(200);
});

test('/metrics counts the sequences each stateful model holds: up with starts, down with ends', async () => {
  const { url } = await start();
  const held = async (): Promise<string | undefined> =>
    /^batched_fn_held_sequences\{model="small"\} (\d+)$/m.exec(await (await fetch(`${url}/metrics`)).text())?.[1];
  expect(await held()).toBe('0');
  expect((await rest('small', chunk(1, 0), { sequence_id: 1, sequence_start: true })).status).toBe(200);
  expect((await rest('small', chunk(2, 0), { sequence_id: 2, sequence_start: true })).status).toBe(200);
  expect(await held()).toBe('2');
  expect((await rest('small', chunk(1, 1), { sequence_id: 1, sequence_end: true })).status).toBe(200);
  expect(await held()).toBe('1');
});

test("a crashed worker fails its sequences' next requests (their state is lost) and serves new sequences", async () => {
  await start();
  expect((await rest('crashy', chunk(1, 0), { sequence_id: 1, sequence_start: true })).status).toBe(200);
  expect((await rest('crashy', chunk(2, 0), { sequence_id: 2, sequence_start: true })).status).toBe(200);
  const crash = chunk(2, 1);
  crash[0] = -999;
  const crashed = await rest('crashy', crash, { sequence_id: 2 });
  expect(crashed.status).toBe(500);
  expect(crashed.body.error).toMatch(/ERR_WORKER_EXITED/);
  // Sequence 1 was not in the crashed batch, but its state was in that thread.
  const lost = await rest('crashy', chunk(1, 1), { sequence_id: 1 });
  expect(lost.status).toBe(400);
  expect(lost.body.error).toBe(
    'Sequence 1 lost its state: the worker thread holding it exited; start it again with `sequence_start`',
  );
  const lostAgain = await rest('crashy', chunk(2, 2), { sequence_id: 2 });
  expect(lostAgain.body.error).toBe(
    'Sequence 2 of model crashy lost its state: the worker thread holding it exited; start it again with `sequence_start`',
  );
  // Started again, it runs from a fresh state, as a new sequence does.
  const again = await rest('crashy', chunk(1, 0), { sequence_id: 1, sequence_start: true });
  expect(again.status).toBe(200);
  const [, expected] = await alone(2, 1);
  expect(normalized(again.body)).toEqual(expected?.[0]);
});

test('unloading a model with live sequences frees their states: after a reload they are unknown', async () => {
  const { url } = await start({ modelControl: 'explicit', loadModel: ['norm'] });
  expect((await rest('norm', chunk(1, 0), { sequence_id: 9, sequence_start: true })).status).toBe(200);
  expect((await fetch(`${url}/v2/repository/models/norm/unload`, { method: 'POST' })).status).toBe(200);
  const gone = await rest('norm', chunk(1, 1), { sequence_id: 9 });
  expect([404, 503]).toContain(gone.status);
  expect((await fetch(`${url}/v2/repository/models/norm/load`, { method: 'POST' })).status).toBe(200);
  const unknown = await rest('norm', chunk(1, 1), { sequence_id: 9 });
  expect(unknown.status).toBe(400);
  expect(unknown.body.error).toMatch(/^No live sequence 9 of model norm/);
});

test('sequence_batching in config.json is checked at load', async () => {
  mkdirSync(join(repo, 'badseq'), { recursive: true });
  cpSync(join(EXAMPLE, 'model.mjs'), join(repo, 'badseq', 'model.mjs'));
  writeFileSync(join(repo, 'badseq', 'config.json'), JSON.stringify({ sequence_batching: { max_idle: 5 } }));
  try {
    const { url } = await start();
    const index = (await (await fetch(`${url}/v2/repository/index`, { method: 'POST' })).json()) as {
      name: string;
      reason: string;
    }[];
    expect(index.find((m) => m.name === 'badseq')?.reason).toMatch(
      /config\.json: Unknown key `sequence_batching.max_idle`; known keys are `max_sequence_idle_microseconds`/,
    );
  } finally {
    rmSync(join(repo, 'badseq'), { recursive: true, force: true });
  }
});

test("a Triton-layout model with config.pbtxt's sequence_batching serves sequences the same way", async () => {
  await start();
  const expected = await alone(5, 3);
  const got = await Promise.all(
    [0, 1, 2, 3, 4].map(async (s) => {
      const answers: number[][] = [];
      for (let k = 0; k < 3; k++) {
        const { status, body } = await rest('tseq', chunk(s, k), {
          sequence_id: `t${s}`,
          sequence_start: k === 0,
          sequence_end: k === 2,
        });
        expect(status).toBe(200);
        answers.push(normalized(body) as number[]);
      }
      return answers;
    }),
  );
  expect(got).toEqual(expected);
  expect((await rest('tseq', chunk(0, 0), {})).status).toBe(400);
});

test('examples/sequence-model/throughput.ts runs: batched runs hold several sequences, single runs one', async () => {
  const script = new URL('../../../examples/dist/sequence-model/throughput.js', import.meta.url).href;
  const { throughput } = (await import(script)) as {
    throughput: (seconds: number) => Promise<Record<string, { perSecond: number; perRun: number }>>;
  };
  const results = await throughput(1);
  expect(results.single?.perRun).toBe(1);
  expect(results.batched?.perRun).toBeGreaterThan(1);
});
