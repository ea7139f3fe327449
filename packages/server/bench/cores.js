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
// First, ORT alone's CPU per row at batches of 32, 64 and 128 (1 s each): the MLP reads its weights once a
// batch, so a row costs more in smaller batches.
// Where the rows go, as CPU per served row (/proc for the server's threads, the shell's `times` for wrk,
// this process's own for ORT alone): ORT alone's, the served model's threads (the sessions' and V8's
// helpers), the server's main thread and wrk. Served rows/s can reach ORT alone's only as far as the
// machine's cores, spent at these costs, allow: "if never idle" is cores / (server + wrk CPU per row)
// against ORT alone, and "cores busy" how much of that the served run used.
//
// BENCH_SPLITS (1x2,2x1,1x1,2x2: workers x threads), BENCH_ROUNDS (5), BENCH_SECONDS (2), BENCH_CLIENTS (64),
// BENCH_SERVE_ARGS (more `serve` flags for every server, split on spaces: `--max-delay 2`), BENCH_SERVER_STDERR
// (1: the servers' stderr on this one's, to debug them).
// Run it under `flock /tmp/bfn-bench.lock` where other benchmarks share the machine; it needs wrk
// (scripts/install-test-deps.sh).
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
const feedsOf = (rows) => ({ input: new ort.Tensor('float32', new Float32Array(rows * 256).fill(0.1), [rows, 256]) });
for (let i = 0; i < 5; i++) await session.run(feedsOf(BATCH));
/** ORT alone: its rows/s, and its CPU per row (this process does nothing else meanwhile). */
async function alone(rows = BATCH, seconds = SECONDS) {
  const feeds = feedsOf(rows);
  let runs = 0;
  const started = performance.now();
  const cpuBefore = process.cpuUsage();
  while (performance.now() - started < seconds * 1000) {
    await session.run(feeds);
    runs++;
  }
  const cpu = process.cpuUsage(cpuBefore);
  return {
    rowsPerSecond: (runs * rows) / ((performance.now() - started) / 1000),
    cpuPerRow: (cpu.user + cpu.system) / (runs * rows),
  };
}
// What a row costs the model by batch size: the MLP reads all its weights (about 71 MB) once a batch, so
// smaller batches (two cohorts of 32 taking turns, say) cost more per row.
const byBatch = [];
for (const rows of [32, BATCH, 2 * BATCH]) byBatch.push(`${rows}: ${(await alone(rows, 1)).cpuPerRow.toFixed(0)}`);
console.log(`ORT alone, CPU per row (µs) by batch size: ${byBatch.join(', ')}`);

const TICK_US = 1e6 / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
/** utime + stime in µs of a process, or of one thread of it (the main thread's tid is the pid). */
function cpuUs(pid, tid) {
  const stat = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * TICK_US;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
/** wrk's output, and the CPU it spent in µs (the shell's `times`: its children's user and system time). */
const wrk = (port, seconds) =>
  new Promise((resolve) => {
    const args = ['-t1', `-c${CLIENTS}`, `-d${seconds}s`, '-s', join(scratch, 'post.lua')];
    const child = spawn('sh', ['-c', 'wrk "$@"; times', 'sh', ...args, `http://127.0.0.1:${port}/v2/models/mlp/infer`]);
    let out = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.on('exit', () => {
      // `times` prints the shell's user and system time, then its children's: "0m1.234s 0m0.567s".
      const children = out.trim().split('\n').at(-1) ?? '';
      const parts = [...children.matchAll(/(\d+)m([\d.]+)s/g)];
      const cpu = parts.reduce((sum, [, m, sec]) => sum + (Number(m) * 60 + Number(sec)) * 1e6, 0);
      resolve({ out, cpu: parts.length === 2 ? cpu : Number.NaN });
    });
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
      const pid = server.child.pid;
      const cpuBefore = { all: cpuUs(pid), main: cpuUs(pid, pid) };
      const { out, cpu: wrkCpu } = await wrk(server.port, SECONDS);
      const cpu = { all: cpuUs(pid) - cpuBefore.all, main: cpuUs(pid, pid) - cpuBefore.main };
      const after = await stats(server.port);
      const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? Number.NaN);
      const errors = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
      const rows = after.inference_count - before.inference_count;
      const batch = rows / (after.execution_count - before.execution_count);
      const inferNs = Number(after.inference_stats.compute_infer.ns) - Number(before.inference_stats.compute_infer.ns);
      const busy = inferNs / 1e9 / SECONDS / server.workers;
      const perRow = { model: (cpu.all - cpu.main) / rows, main: cpu.main / rows, wrk: wrkCpu / rows };
      const neverIdle = (cores * 1e6) / (perRow.model + perRow.main + perRow.wrk) / anchor.rowsPerSecond;
      const coresBusy = (cpu.all + wrkCpu) / (cores * SECONDS * 1e6);
      server.rounds.push({ rps, ratio: rps / anchor.rowsPerSecond, batch, busy, errors, perRow, neverIdle, coresBusy });
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const us = (xs) => median(xs).toFixed(0);
  console.log(
    `ORT alone (batch ${BATCH}, ${cores} threads) per round: ${anchors.map((a) => Math.round(a.rowsPerSecond)).join(', ')} rows/s, ` +
      `${us(anchors.map((a) => a.cpuPerRow))} µs CPU per row (median)`,
  );
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
  console.log('CPU per served row (µs, medians), and what the cores allow at those costs:');
  console.table(
    servers.map((s) => ({
      'workers x threads': s.label,
      'model and V8 threads': us(s.rounds.map((r) => r.perRow.model)),
      'main thread': us(s.rounds.map((r) => r.perRow.main)),
      wrk: us(s.rounds.map((r) => r.perRow.wrk)),
      'x ORT alone if never idle': median(s.rounds.map((r) => r.neverIdle)).toFixed(2),
      'cores busy': `${Math.round(median(s.rounds.map((r) => r.coresBusy)) * 100)} %`,
    })),
  );
} finally {
  for (const server of servers) server.child.kill('SIGTERM');
  await session.release();
  rmSync(scratch, { recursive: true, force: true });
}
