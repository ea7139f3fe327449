import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { serialize } from 'node:v8';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, test } from 'vitest';
import * as ort from 'onnxruntime-node';
import { ensureMlpModel } from '@batched-fn/server';
import { TestRedis } from '../../redis/test/redis-server.js';
import { dashboardSnapshots, jsonRequest, postJson, TEST_CACHE } from './helpers.js';
import { startOtlpReceiver } from './otlp-receiver.js';

// Real processes: one redis-server, two HTTP frontends and two model workers, all on loopback.
const bin = fileURLToPath(new URL('../bin/batched-fn.js', import.meta.url));
const redis = new TestRedis();
const children: ChildProcess[] = [];
let session: ort.InferenceSession;

interface Proc {
  child: ChildProcess;
  output: () => string;
  exit: Promise<number | null>;
}

function start(
  args: string[],
  readyPattern: RegExp,
  env: Record<string, string> = {},
): Promise<Proc & { match: RegExpExecArray }> {
  const child = spawn(process.execPath, [bin, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  children.push(child);
  let out = '';
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      out += chunk;
      const match = readyPattern.exec(out);
      if (match) resolve({ child, output: () => out, exit, match });
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (chunk: Buffer) => (out += chunk));
    child.once('exit', (code) => reject(new Error(`batched-fn ${args.join(' ')} exited with ${code}:\n${out}`)));
  });
}

const worker = (name: string, extra: string[] = []) =>
  start(
    [
      'worker',
      '--redis',
      redis.url,
      '--cache-dir',
      TEST_CACHE,
      '--max-delay',
      '5',
      '--threads',
      '1',
      '--claim-idle',
      '500',
      '--prefix',
      name,
      ...extra,
    ],
    /worker ready/,
  );
const frontend = (name: string) =>
  start(
    ['serve', '--redis', redis.url, '--port', '0', '--grpc-port', '0', '--prefix', name],
    / on (http:\/\/127\.0\.0\.1:\d+)/,
  );

beforeAll(async () => {
  await redis.start();
  session = await ort.InferenceSession.create(ensureMlpModel(undefined, TEST_CACHE), { intraOpNumThreads: 1 });
});
afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await redis.stop();
  await session?.release();
});

const row = (seed: number): number[] => Array.from({ length: 256 }, (_, i) => Math.sin(i * 0.1 + seed));

async function direct(seed: number): Promise<number[]> {
  const out = await session.run({ input: new ort.Tensor('float32', Float32Array.from(row(seed)), [1, 256]) });
  return Array.from((out.probabilities as ort.Tensor).data as Float32Array);
}

async function sendAll(urls: string[], count: number) {
  return Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const response = await postJson(
        `${urls[i % urls.length]}/v2/models/mlp/infer`,
        jsonRequest('input', [1, 256], 'FP32', row(i)),
      );
      return { i, response };
    }),
  );
}

test('2 HTTP frontends and 2 workers: every request is answered correctly, and batches mix both frontends', async () => {
  const workers = await Promise.all([worker('mix'), worker('mix')]);
  const frontends = await Promise.all([frontend('mix'), frontend('mix')]);
  const urls = frontends.map((f) => f.match[1] as string);
  const results = await sendAll(urls, 80);
  for (const { i, response } of results) {
    expect(response.status).toBe(200);
    const expected = await direct(i);
    response.body.outputs[0].data.forEach((v: number, j: number) => {
      expect(v).toBeCloseTo(expected[j] as number, 4);
    });
  }
  // Metadata comes from the signature the workers published.
  expect(((await (await fetch(`${urls[0]}/v2/models/mlp`)).json()) as { inputs: unknown }).inputs).toEqual([
    { name: 'input', datatype: 'FP32', shape: [-1, 256] },
  ]);
  for (const w of workers) w.child.kill('SIGTERM');
  const codes = await Promise.all(workers.map((w) => w.exit));
  expect(codes).toEqual([0, 0]);
  const stats = workers.map((w) => JSON.parse(/stats (\{.*\})/.exec(w.output())?.[1] ?? '{}'));
  expect(stats.reduce((sum, s) => sum + s.entries, 0)).toBe(80);
  // A batch holding requests from both frontends sends two replies.
  expect(stats.reduce((sum, s) => sum + s.replies, 0)).toBeGreaterThan(stats.reduce((sum, s) => sum + s.batches, 0));
  for (const f of frontends) f.child.kill('SIGTERM');
  expect(await Promise.all(frontends.map((f) => f.exit))).toEqual([0, 0]);
});

test('kill -9 of a worker holding a batch: every request is still answered, and each exactly once', async () => {
  const survivor = await worker('kill', ['--max-batch-size', '4']);
  const front = await frontend('kill');
  const url = front.match[1] as string;
  const client = redis.client();
  const stream = 'kill:mlp:requests';
  const pendingOf = async (pid: number | undefined): Promise<number> => {
    const [, , , consumers] = (await client.xpending(stream, 'workers')) as [
      number,
      string,
      string,
      [string, string][] | null,
    ];
    return Number(consumers?.find(([name]) => name.includes(`-${pid}-`))?.[1] ?? 0);
  };
  // Steady load until a worker has died holding entries.
  let loading = true;
  const responses: { i: number; status: number; data: number[] }[] = [];
  const clients = Array.from({ length: 16 }, async (_, c) => {
    for (let k = 0; loading; k++) {
      const i = c * 100_000 + k;
      const response = await postJson(`${url}/v2/models/mlp/infer`, jsonRequest('input', [1, 256], 'FP32', row(i)));
      responses.push({ i, status: response.status, data: response.body.outputs?.[0]?.data ?? [] });
    }
  });
  // The kill races the victim finishing its batch; retry with a fresh victim until it dies holding some.
  let orphaned = 0;
  for (let attempt = 0; attempt < 5 && orphaned === 0; attempt++) {
    const victim = await worker('kill', ['--max-batch-size', '4']);
    while ((await pendingOf(victim.child.pid)) === 0) await new Promise((resolve) => setTimeout(resolve, 1));
    victim.child.kill('SIGKILL');
    await victim.exit;
    orphaned = await pendingOf(victim.child.pid);
  }
  expect(orphaned).toBeGreaterThan(0);
  await new Promise((resolve) => setTimeout(resolve, 1500)); // past the 500 ms claim-idle: the orphans must be reclaimed
  loading = false;
  await Promise.all(clients);
  expect(responses.length).toBeGreaterThan(100);
  expect(responses.filter((r) => r.status !== 200)).toEqual([]);
  for (const { i, data } of responses.slice(0, 10)) {
    const expected = await direct(i);
    data.forEach((v, j) => {
      expect(v).toBeCloseTo(expected[j] as number, 4);
    });
  }
  const metrics = await (await fetch(`${url}/metrics`)).text();
  expect(metrics).toContain(`batched_fn_requests_total{model="mlp",protocol="rest",status="200"} ${responses.length}`);
  survivor.child.kill('SIGTERM');
  expect(await survivor.exit).toBe(0);
  const stats = JSON.parse(/stats (\{.*\})/.exec(survivor.output())?.[1] ?? '{}');
  // The survivor took over exactly what the dead worker held, and answered it.
  expect(stats.reclaimed).toBeGreaterThanOrEqual(orphaned);
  client.disconnect();
  front.child.kill('SIGTERM');
  expect(await front.exit).toBe(0);
});

test('through Redis the HTTP statuses stay the same: 503 with Retry-After at the queue cap, 504 at the deadline, 400 for bad input', async () => {
  // A worker registers the model and leaves: its signature stays, and nothing consumes the stream.
  const registered = await worker('statuses');
  registered.child.kill('SIGTERM');
  expect(await registered.exit).toBe(0);
  const front = await start(
    ['serve', '--redis', redis.url, '--port', '0', '--grpc-port', '0', '--prefix', 'statuses', '--queue-cap', '2'],
    / on (http:\/\/127\.0\.0\.1:\d+)/,
  );
  const url = `${front.match[1]}/v2/models/mlp/infer`;
  const body = (extra: Record<string, unknown> = {}) => jsonRequest('input', [1, 256], 'FP32', row(1), extra);
  const deadline = await postJson(url, body({ parameters: { timeout: 100 } }));
  expect(deadline.status).toBe(504);
  expect(deadline.body.error).toMatch(/^ERR_TIMEOUT/);
  const held = [postJson(url, body()), postJson(url, body())];
  await new Promise((resolve) => setTimeout(resolve, 200));
  const shed = await postJson(url, body());
  expect(shed.status).toBe(503);
  expect(shed.headers.get('retry-after')).toBe('1');
  expect(shed.body.error).toMatch(/^ERR_QUEUE_FULL/);
  const bad = await postJson(url, jsonRequest('input', [1, 3], 'FP32', [1, 2, 3]));
  expect(bad).toMatchObject({
    status: 400,
    body: { error: 'Input `input`: dimension 1 is 3, the model expects 256 (shape [-1,256])' },
  });
  // A worker arrives and answers the two that waited.
  const late = await worker('statuses');
  expect((await Promise.all(held)).map((r) => r.status)).toEqual([200, 200]);
  late.child.kill('SIGTERM');
  front.child.kill('SIGTERM');
  expect(await front.exit).toBe(0);
});

test('a lying stream entry next to real traffic fails alone with a 400; no real caller is shifted; a second SIGTERM does not kill the worker', async () => {
  const w = await worker('hostile', ['--max-delay', '20']);
  const front = await frontend('hostile');
  const url = front.match[1] as string;
  const client = redis.client();
  const replyKey = `hostile:reply:${randomUUID()}`;
  const short = { rows: 1, inputs: { input: { datatype: 'FP32', shape: [1, 256], data: new Float32Array(100) } } };
  const long = { rows: 1, inputs: { input: { datatype: 'FP32', shape: [1, 256], data: new Float32Array(400) } } };
  const real = sendAll([url], 48);
  for (const [id, item] of [
    ['evil:1', short],
    ['evil:2', long],
  ] as const) {
    await client.xadd('hostile:mlp:requests', '*', 'i', id, 'r', replyKey, 'd', '0', 'n', '1', 'p', serialize(item));
  }
  for (const { i, response } of await real) {
    expect(response.status).toBe(200);
    const expected = await direct(i);
    response.body.outputs[0].data.forEach((v: number, j: number) => {
      expect(v).toBeCloseTo(expected[j] as number, 4);
    });
  }
  while ((await client.xlen(replyKey)) < 1) await new Promise((resolve) => setTimeout(resolve, 10));
  w.child.kill('SIGTERM');
  while (!w.output().includes('SIGTERM: draining...')) await new Promise((resolve) => setTimeout(resolve, 2));
  w.child.kill('SIGTERM');
  expect(await w.exit).toBe(0);
  expect(w.output()).toContain('SIGTERM: already draining');
  const stats = JSON.parse(/stats (\{.*\})/.exec(w.output())?.[1] ?? '{}');
  expect(stats.invalid).toBe(2);
  client.disconnect();
  front.child.kill('SIGTERM');
  expect(await front.exit).toBe(0);
});

test('behind --redis the dashboard shows the frontend view: rates, batches the workers ran, queue, and no local threads', async () => {
  const w = await worker('dash');
  const front = await frontend('dash');
  const url = front.match[1] as string;
  let running = true;
  const clients = Array.from({ length: 16 }, async (_, c) => {
    for (let k = 0; running; k++)
      await postJson(`${url}/v2/models/mlp/infer`, jsonRequest('input', [1, 256], 'FP32', row(c + k)));
  });
  const snapshots = await dashboardSnapshots(url, 3);
  running = false;
  await Promise.all(clients);
  const mlp = snapshots[2].models.find((m: any) => m.name === 'mlp');
  expect(mlp.reqPerSecond).toBeGreaterThan(0);
  expect(mlp.meanBatch).toBeGreaterThan(1);
  expect(mlp.workers).toEqual([]);
  expect(mlp.queueCap).toBeNull(); // the frontend's queue has no cap unless --queue-cap gives one
  expect(mlp.queueDepth).toBeGreaterThanOrEqual(0);
  w.child.kill('SIGTERM');
  front.child.kill('SIGTERM');
  expect(await Promise.all([w.exit, front.exit])).toEqual([0, 0]);
});

test("with --otel on both sides the trace context travels in the stream entry: the worker's batch span links to the frontend's request spans", async () => {
  const receiver = await startOtlpReceiver();
  const env = {
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
    OTEL_BSP_SCHEDULE_DELAY: '100',
  };
  const w = await start(
    [
      'worker',
      '--redis',
      redis.url,
      '--cache-dir',
      TEST_CACHE,
      '--max-delay',
      '50',
      '--threads',
      '1',
      '--prefix',
      'traced',
      '--otel',
    ],
    /worker ready/,
    { ...env, OTEL_SERVICE_NAME: 'model-worker' },
  );
  const front = await start(
    ['serve', '--redis', redis.url, '--port', '0', '--grpc-port', '0', '--prefix', 'traced', '--otel'],
    / on (http:\/\/127\.0\.0\.1:\d+)/,
    { ...env, OTEL_SERVICE_NAME: 'frontend' },
  );
  const url = front.match[1] as string;
  const results = await Promise.all(
    Array.from({ length: 8 }, (_, i) =>
      postJson(`${url}/v2/models/mlp/infer`, jsonRequest('input', [1, 256], 'FP32', row(i))),
    ),
  );
  expect(results.map((r) => r.status)).toEqual(Array(8).fill(200));
  const requests = () =>
    receiver.spans.filter((s) => s.serviceName === 'frontend' && s.name === 'POST /v2/models/:name/infer');
  const batches = () => receiver.spans.filter((s) => s.serviceName === 'model-worker' && s.name === 'batch mlp');
  const deadline = Date.now() + 10_000;
  while (requests().length < 8 || batches().reduce((n, s) => n + s.links.length, 0) < 8) {
    if (Date.now() > deadline)
      throw new Error(
        `spans never arrived: ${JSON.stringify(receiver.spans.map((s) => [s.serviceName, s.name, s.links.length]))}`,
      );
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const linked = batches()
    .flatMap((b) => b.links.map((l) => `${l.traceId}/${l.spanId}`))
    .sort();
  expect(linked).toEqual(
    requests()
      .map((s) => `${s.traceId}/${s.spanId}`)
      .sort(),
  );
  w.child.kill('SIGTERM');
  front.child.kill('SIGTERM');
  expect(await Promise.all([w.exit, front.exit])).toEqual([0, 0]);
  await receiver.close();
});
