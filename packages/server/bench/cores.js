// How an ONNX model's split of the cores serves: the default MLP behind `batched-fn serve`, REST binary,
// 1-row requests from wrk (one thread, 64 connections, a Lua script posting a pre-built body), against
// the model's own ceiling measured in this process: one session, batch 64, an intra-op thread per core,
// ONNX Runtime's default options ("ORT alone").
//
// Every split's server is started first and left idle while another is measured (intra-op threads do
// not spin, so an idle server costs nothing). Each round then measures ORT alone and every server in
// turn, BENCH_SECONDS each: a ratio is taken against the same round's anchor, seconds apart, because
// these 2-core machines drift within a minute and other processes come and go. Per split: the median
// ratio, served rows/s, mean batch (the statistics extension's inference_count / execution_count) and
// how busy the sessions were (its compute_infer time over the wall time, per session).
//
// BENCH_SPLITS (1x2,2x1,1x1,2x2: workers x threads), BENCH_ROUNDS (5), BENCH_SECONDS (2), BENCH_CLIENTS (64),
// BENCH_SERVE_ARGS (more `serve` flags for every server, split on spaces: `--max-delay 2`), BENCH_SERVER_STDERR
// (1: the servers' stderr on this one's, to debug them).
// Run it under `flock /tmp/bfn-bench.lock` where other benchmarks share the machine; it needs wrk
// (scripts/install-test-deps.sh).
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { ensureMlpModel } from '../dist/index.js';
import { restBody } from '../dist/cli/bench/payloads.js';

const SPLITS = (process.env.BENCH_SPLITS ?? '1x2,2x1,1x1,2x2').split(',').map((s) => s.split('x').map(Number));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 2);
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 64);
const BATCH = 64;
const BIN = fileURLToPath(new URL('../bin/batched-fn.js', import.meta.url));
try {
  execFileSync('wrk', ['--version'], { stdio: 'ignore' });
} catch (error) {
  // wrk prints its version and exits 1; only a missing binary is an error.
  if (error.code === 'ENOENT') {
    console.error('bench/cores.js needs wrk (scripts/install-test-deps.sh, or apt-get install wrk)');
    process.exit(2);
  }
}

const model = ensureMlpModel();
const scratch = mkdtempSync(join(tmpdir(), 'bfn-cores-'));
const row = Array.from({ length: 256 }, (_, i) => ((i * 37) % 100) / 100);
const { body, headers } = restBody([{ name: 'input', shape: [1, 256], datatype: 'FP32', data: row }], 'binary');
writeFileSync(join(scratch, 'body.bin'), body);
writeFileSync(
  join(scratch, 'post.lua'),
  [
    `local f = io.open("${join(scratch, 'body.bin')}", "rb")`,
    'wrk.body = f:read("*a")',
    'f:close()',
    'wrk.method = "POST"',
    'wrk.headers["Content-Type"] = "application/octet-stream"',
    `wrk.headers["Inference-Header-Content-Length"] = "${headers['inference-header-content-length']}"`,
  ].join('\n'),
);

const cores = availableParallelism();
const session = await ort.InferenceSession.create(model, { intraOpNumThreads: cores, interOpNumThreads: 1 });
const feeds = { input: new ort.Tensor('float32', new Float32Array(BATCH * 256).fill(0.1), [BATCH, 256]) };
for (let i = 0; i < 5; i++) await session.run(feeds);
async function alone() {
  let runs = 0;
  const started = performance.now();
  while (performance.now() - started < SECONDS * 1000) {
    await session.run(feeds);
    runs++;
  }
  return (runs * BATCH) / ((performance.now() - started) / 1000);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const wrk = (port, seconds) =>
  new Promise((resolve) => {
    const child = spawn('wrk', [
      '-t1',
      `-c${CLIENTS}`,
      `-d${seconds}s`,
      '-s',
      join(scratch, 'post.lua'),
      `http://127.0.0.1:${port}/v2/models/mlp/infer`,
    ]);
    let out = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.on('exit', () => resolve(out));
  });
const stats = async (port) =>
  (await (await fetch(`http://127.0.0.1:${port}/v2/models/mlp/stats`)).json()).model_stats.find(
    (m) => m.name === 'mlp',
  );

const servers = [];
try {
  for (const [i, [workers, threads]] of SPLITS.entries()) {
    const port = 18_600 + i;
    const args = [
      'serve',
      '--model',
      model,
      '--name',
      'mlp',
      '--port',
      String(port),
      '--no-grpc',
      '--dashboard',
      'off',
      ...(process.env.BENCH_SERVE_ARGS ?? '').split(' ').filter((arg) => arg !== ''),
    ];
    const child = spawn(process.execPath, [BIN, ...args, '--workers', String(workers), '--threads', String(threads)], {
      stdio: ['ignore', 'ignore', process.env.BENCH_SERVER_STDERR ? 'inherit' : 'ignore'],
    });
    servers.push({ label: `${workers} x ${threads}`, workers, port, child, rounds: [] });
    for (let k = 0; k < 300; k++) {
      if (
        await fetch(`http://127.0.0.1:${port}/v2/models/mlp/ready`).then(
          (r) => r.ok,
          () => false,
        )
      )
        break;
      await sleep(100);
    }
    await wrk(port, 1); // warm-up, not counted
  }
  const anchors = [];
  for (let round = 0; round < ROUNDS; round++) {
    const anchor = await alone();
    anchors.push(anchor);
    for (const server of servers) {
      const before = await stats(server.port);
      const out = await wrk(server.port, SECONDS);
      const after = await stats(server.port);
      const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? Number.NaN);
      const errors = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
      const batch = (after.inference_count - before.inference_count) / (after.execution_count - before.execution_count);
      const inferNs = Number(after.inference_stats.compute_infer.ns) - Number(before.inference_stats.compute_infer.ns);
      const busy = inferNs / 1e9 / SECONDS / server.workers;
      server.rounds.push({ rps, ratio: rps / anchor, batch, busy, errors });
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(`ORT alone (batch ${BATCH}, ${cores} threads) per round: ${anchors.map(Math.round).join(', ')} rows/s`);
  console.table(
    servers.map((s) => ({
      'workers x threads': s.label,
      'rows/s (median)': Math.round(median(s.rounds.map((r) => r.rps))),
      'x ORT alone (median)': median(s.rounds.map((r) => r.ratio)).toFixed(2),
      'per round': s.rounds.map((r) => r.ratio.toFixed(2)).join(' '),
      'mean batch': median(s.rounds.map((r) => r.batch)).toFixed(1),
      'sessions busy': `${Math.round(median(s.rounds.map((r) => r.busy)) * 100)} %`,
      errors: s.rounds.reduce((n, r) => n + r.errors, 0),
    })),
  );
} finally {
  for (const server of servers) server.child.kill('SIGTERM');
  await session.release();
  rmSync(scratch, { recursive: true, force: true });
}
