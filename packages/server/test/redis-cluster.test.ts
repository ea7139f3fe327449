import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, test } from 'vitest';
import * as ort from 'onnxruntime-node';
import { ensureMlpModel } from '@batched-fn/server';
import { TestRedis } from '../../redis/test/redis-server.js';
import { jsonRequest, postJson, TEST_CACHE } from './helpers.js';

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

function start(args: string[], readyPattern: RegExp): Promise<Proc & { match: RegExpExecArray }> {
  const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
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
  start(['worker', '--redis', redis.url, '--cache-dir', TEST_CACHE, '--max-delay', '5', '--threads', '1', '--claim-idle', '500', '--prefix', name, ...extra], /worker ready/);
const frontend = (name: string) => start(['serve', '--redis', redis.url, '--port', '0', '--prefix', name], / on (http:\/\/127\.0\.0\.1:\d+)/);

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
      const response = await postJson(`${urls[i % urls.length]}/v2/models/mlp/infer`, jsonRequest('input', [1, 256], 'FP32', row(i)));
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
    response.body.outputs[0].data.forEach((v: number, j: number) => expect(v).toBeCloseTo(expected[j] as number, 4));
  }
  // Metadata comes from the signature the workers published.
  expect(((await (await fetch(`${urls[0]}/v2/models/mlp`)).json()) as { inputs: unknown }).inputs).toEqual([{ name: 'input', datatype: 'FP32', shape: [-1, 256] }]);
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

test('kill -9 of a worker mid-batch: every request is still answered, and each exactly once', async () => {
  // Small batches keep both workers busy for the whole run, so the one killed holds a batch when it dies.
  const workers = await Promise.all([worker('kill', ['--max-batch-size', '4']), worker('kill', ['--max-batch-size', '4'])]);
  const front = await frontend('kill');
  const url = front.match[1] as string;
  let answered = 0;
  let killed = false;
  const results = await Promise.all(
    Array.from({ length: 300 }, async (_, i) => {
      const response = await postJson(`${url}/v2/models/mlp/infer`, jsonRequest('input', [1, 256], 'FP32', row(i)));
      if (++answered === 100 && !killed) {
        killed = true;
        workers[0]?.child.kill('SIGKILL');
      }
      return { i, response };
    }),
  );
  expect(killed).toBe(true);
  expect(results.map((r) => r.response.status)).toEqual(Array(300).fill(200));
  for (const { i, response } of results.slice(0, 20)) {
    const expected = await direct(i);
    response.body.outputs[0].data.forEach((v: number, j: number) => expect(v).toBeCloseTo(expected[j] as number, 4));
  }
  const metrics = await (await fetch(`${url}/metrics`)).text();
  expect(metrics).toContain('batched_fn_requests_total{model="mlp",status="200"} 300');
  workers[1]?.child.kill('SIGTERM');
  expect(await workers[1]?.exit).toBe(0);
  const survivor = JSON.parse(/stats (\{.*\})/.exec(workers[1]?.output() ?? '')?.[1] ?? '{}');
  // The survivor took over what the dead worker held: proof the kill landed mid-batch.
  expect(survivor.reclaimed).toBeGreaterThan(0);
  front.child.kill('SIGTERM');
  expect(await front.exit).toBe(0);
});
