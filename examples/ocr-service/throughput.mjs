// @ts-check
// file: examples/ocr-service/throughput.mjs
// Images per second and latency of the OCR service under closed-loop load, in one run, three ways:
//   (a) the served `ocr` model, batching as prepare.js configures it;
//   (b) @gutenye/ocr-node with the same number of detect() calls in flight, in a process of its own;
//   (c) the served `ocr` model with batching off (max_batch_size 1, no dynamic_batching, for both ONNX models).
// Each server and each load runs in its own process: the load (REST binary requests over keep-alive sockets) does
// not share a thread with what it measures. It stops by itself after the given seconds per configuration.
//   node examples/ocr-service/throughput.mjs [--seconds 40] [--clients 16] [--configs abc]
//     [--set ocrInstances=4 --set recRows=2 --set ortThreads=2 ...]
// --set changes one of prepare.js's SERVICE_DEFAULTS (ortThreads: ONNX Runtime threads per session) for (a) and (c),
// which then run from a temporary copy of the repository;
// --configs picks which of (a), (b), (c) run.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { MODELS_DIR, SERVICE_DEFAULTS, prepareRepository } from './prepare.js';
import { prepareTestImages } from './test-images.mjs';
import { binaryBody } from './rest-body.mjs';

const SELF = fileURLToPath(import.meta.url);
const CLI = fileURLToPath(new URL('../../packages/server/bin/batched-fn.js', import.meta.url));

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '40' },
    clients: { type: 'string', default: '16' },
    warmup: { type: 'string', default: '5' },
    configs: { type: 'string', default: 'abc' },
    set: { type: 'string', multiple: true, default: [] },
    // The roles of the child processes.
    load: { type: 'string' },
    'ocr-node': { type: 'boolean', default: false },
  },
});

/** @param {string} name @param {string | undefined} value @param {number} min @param {number} max */
function integer(name, value, min, max) {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new RangeError(`Expected \`--${name}\` to be an integer from ${min} to ${max}, got \`${value}\``);
  }
  return n;
}
const SECONDS = integer('seconds', args.seconds, 1, 3600);
const CLIENTS = integer('clients', args.clients, 1, 1024);
const WARMUP = integer('warmup', args.warmup, 0, 600);
const CONFIGS = new Set(args.configs);
if (![...CONFIGS].every((c) => 'abc'.includes(c)))
  throw new RangeError(`Expected \`--configs\` of a, b, c, got \`${args.configs}\``);
/** The service settings --set changes: `key=value`, a number or true/false. */
const SETTINGS = Object.fromEntries(
  (args.set ?? []).map((pair) => {
    const [key = '', value = ''] = pair.split('=');
    if (!Object.hasOwn(SERVICE_DEFAULTS, key)) {
      throw new RangeError(
        `Expected \`--set\` to name one of ${Object.keys(SERVICE_DEFAULTS).join(', ')}, got \`${key}\``,
      );
    }
    return [key, value === 'true' ? true : value === 'false' ? false : Number(value)];
  }),
);

/**
 * What one load run measured.
 * @typedef {object} LoadResult
 * @property {number} images answered (200) within the measured time
 * @property {number} failures
 * @property {number} seconds measured
 * @property {number[]} latencies ms, sorted
 * @property {number} [cpuMs] CPU time (user + system, every thread) of the process that did the OCR, over the
 *   measured window: on a machine shared with other work, CPU per image moves much less than images per second
 */

/** @param {number[]} sorted @param {number} q */
const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;

/**
 * Runs `CLIENTS` closed loops for `seconds`: each sends an image, waits for the answer, sends the next.
 * @param {(index: number) => Promise<boolean>} once one request (true: answered)
 * @param {number} count how many distinct images to cycle through
 * @param {number} seconds
 * @returns {Promise<LoadResult>}
 */
async function closedLoop(once, count, seconds) {
  /** @type {number[]} */
  const latencies = [];
  let failures = 0;
  let next = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (performance.now() < end) {
        const index = next++ % count;
        const sent = performance.now();
        const ok = await once(index).catch(() => false);
        // A request still in flight at the end is not counted: only whole requests inside the window are.
        if (performance.now() > end) break;
        if (ok) latencies.push(performance.now() - sent);
        else failures++;
      }
    }),
  );
  return { images: latencies.length, failures, seconds, latencies: latencies.sort((a, b) => a - b) };
}

/** The load child: `--load URL`; prints its LoadResult as one JSON line. */
async function loadChild(/** @type {string} */ url) {
  const { dir, images } = await prepareTestImages();
  const bodies = images.map((image) => binaryBody(readFileSync(join(dir, image.file))));
  const agent = new Agent({ keepAlive: true, maxSockets: CLIENTS });
  const target = new URL('/v2/models/ocr/infer', url);
  /** @param {number} index */
  const once = (index) =>
    new Promise((resolve, reject) => {
      const { header, body } = /** @type {{ header: number, body: Buffer }} */ (bodies[index]);
      const req = request(
        target,
        {
          method: 'POST',
          agent,
          headers: {
            'content-type': 'application/octet-stream',
            'inference-header-content-length': String(header),
            'content-length': String(body.length),
          },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode === 200));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  const result = await closedLoop(once, bodies.length, SECONDS);
  agent.destroy();
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

/** The ocr-node child: CLIENTS detect() calls in flight in this process; prints its LoadResult. */
async function ocrNodeChild() {
  const { dir, images } = await prepareTestImages();
  const files = images.map((image) => join(dir, image.file));
  const { default: Ocr } = await import('@gutenye/ocr-node');
  const ocr = await Ocr.create();
  for (const file of files) await ocr.detect(file); // warm up
  const cpu = process.cpuUsage();
  const result = await closedLoop(
    async (index) => {
      await ocr.detect(/** @type {string} */ (files[index]));
      return true;
    },
    files.length,
    SECONDS,
  );
  const used = process.cpuUsage(cpu);
  process.stdout.write(`${JSON.stringify({ ...result, cpuMs: (used.user + used.system) / 1000 })}\n`);
}

/**
 * Runs `node args...` and answers its last stdout line as JSON.
 * @param {string[]} argv
 * @returns {Promise<LoadResult>}
 */
function runChild(argv) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      const last = out.trim().split('\n').at(-1) ?? '';
      if (code !== 0) reject(new Error(`${argv.join(' ')} exited with code ${code}`));
      else resolve(JSON.parse(last));
    });
  });
}

/**
 * Starts `batched-fn serve` on a repository, on a free port; resolves once it listens.
 * @param {string} repository
 * @returns {Promise<{ url: string, pid: number | undefined, stop: () => Promise<void> }>}
 */
function startServer(repository) {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [CLI, 'serve', '--model-repository', repository, '--host', '127.0.0.1', '--port', '0'],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ORT_DISABLE_TELEMETRY: '1' } },
    );
    let out = '';
    const stop = () =>
      new Promise((done) => {
        if (child.exitCode !== null) return done(undefined);
        child.once('exit', () => done(undefined));
        child.kill('SIGTERM');
      }).then(() => undefined);
    const timer = setTimeout(() => {
      void stop();
      reject(new Error(`the server did not start within 60 s:\n${out}`));
    }, 60_000);
    const onData = (/** @type {Buffer} */ chunk) => {
      out += chunk;
      const match = /serving 3 models on (http:\/\/\S+)/.exec(out);
      if (match !== null) {
        clearTimeout(timer);
        resolve({ url: /** @type {string} */ (match[1]), pid: child.pid, stop });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited (code ${code}) before it listened:\n${out}`));
    });
  });
}

/**
 * A process's CPU time so far (user + system, all its threads), from /proc (Linux; USER_HZ is 100 there).
 * @param {number | undefined} pid
 * @returns {number | undefined} ms, or undefined where /proc cannot say
 */
function cpuMsOf(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}

/** @param {string} url @param {string} model */
async function counts(url, model) {
  const answer = /** @type {{ model_stats: { inference_count: number, execution_count: number }[] }} */ (
    await (await fetch(new URL(`/v2/models/${model}/stats`, url))).json()
  );
  const [stats] = answer.model_stats;
  return { inferences: Number(stats?.inference_count ?? 0), executions: Number(stats?.execution_count ?? 0) };
}

/**
 * One served configuration: start it, warm it up, measure, read the batch sizes of the measured window.
 * @param {string} label @param {string} repository
 */
async function measureServed(label, repository) {
  const server = await startServer(repository);
  try {
    if (WARMUP > 0)
      await runChild([SELF, '--load', server.url, '--seconds', String(WARMUP), '--clients', String(CLIENTS)]);
    const models = ['ocr-detect', 'ocr-recognize'];
    const before = await Promise.all(models.map((m) => counts(server.url, m)));
    const cpuBefore = cpuMsOf(server.pid);
    const result = await runChild([
      SELF,
      '--load',
      server.url,
      '--seconds',
      String(SECONDS),
      '--clients',
      String(CLIENTS),
    ]);
    const cpuAfter = cpuMsOf(server.pid);
    if (cpuBefore !== undefined && cpuAfter !== undefined) result.cpuMs = cpuAfter - cpuBefore;
    const after = await Promise.all(models.map((m) => counts(server.url, m)));
    /** @type {Record<string, number>} */
    const batch = {};
    models.forEach((m, i) => {
      const inferences = (after[i]?.inferences ?? 0) - (before[i]?.inferences ?? 0);
      const executions = (after[i]?.executions ?? 0) - (before[i]?.executions ?? 0);
      batch[m] = executions === 0 ? Number.NaN : inferences / executions;
    });
    return { label, result, batch };
  } finally {
    await server.stop();
  }
}

/** @param {{ label: string, result: LoadResult, batch?: Record<string, number> }} row */
function line(row) {
  const { result } = row;
  const rate = result.images / result.seconds;
  const batch =
    row.batch === undefined
      ? '-'
      : Object.entries(row.batch)
          .map(([m, size]) => `${m} ${size.toFixed(2)}`)
          .join(', ');
  const ms = (/** @type {number} */ q) => `${quantile(result.latencies, q).toFixed(0)} ms`.padStart(8);
  const failed = `${result.failures} failed`.padStart(10);
  const perImage = result.cpuMs === undefined || result.images === 0 ? undefined : result.cpuMs / result.images;
  // What the CPU per image allows on this machine's cores with nothing else running: an estimate, not a measurement.
  const cpu =
    perImage === undefined
      ? ''
      : `  CPU ${perImage.toFixed(0)} ms/img (${((cpus().length * 1000) / perImage).toFixed(2)} img/s CPU-bound)`;
  const speed = `${rate.toFixed(2).padStart(6)} img/s  p50 ${ms(0.5)}  p99 ${ms(0.99)}`;
  return `${row.label.padEnd(34)} ${speed}${failed}${cpu}  mean batch: ${batch}`;
}

async function main() {
  await prepareTestImages();
  prepareRepository(MODELS_DIR);
  const temporary = mkdtempSync(join(tmpdir(), 'ocr-throughput-'));
  try {
    const tuned = Object.keys(SETTINGS).length > 0;
    const batchedDir = tuned ? join(temporary, 'batched') : MODELS_DIR;
    if (tuned) prepareRepository(batchedDir, SETTINGS);
    const unbatchedDir = join(temporary, 'unbatched');
    prepareRepository(unbatchedDir, { ...SETTINGS, batching: false });
    process.stdout.write(
      `${CLIENTS} closed-loop clients, ${SECONDS} s per configuration (after ${WARMUP} s of warm-up), ` +
        `${cpus().length} CPUs, ONNX Runtime threads per session: ${{ ...SERVICE_DEFAULTS, ...SETTINGS }.ortThreads} (ocr-node: its own default)\n` +
        `service settings: ${JSON.stringify({ ...SERVICE_DEFAULTS, ...SETTINGS })}\n`,
    );
    const rate = (/** @type {LoadResult} */ r) => r.images / r.seconds;
    /** @type {Record<string, LoadResult>} */
    const results = {};
    if (CONFIGS.has('a')) {
      const row = await measureServed('(a) ocr served, batching', batchedDir);
      results.a = row.result;
      process.stdout.write(`${line(row)}\n`);
    }
    if (CONFIGS.has('b')) {
      const row = {
        label: '(b) @gutenye/ocr-node, in process',
        result: await runChild([SELF, '--ocr-node', '--seconds', String(SECONDS), '--clients', String(CLIENTS)]),
      };
      results.b = row.result;
      process.stdout.write(`${line(row)}\n`);
    }
    if (CONFIGS.has('c')) {
      const row = await measureServed('(c) ocr served, batching off', unbatchedDir);
      results.c = row.result;
      process.stdout.write(`${line(row)}\n`);
    }
    if (results.a !== undefined && results.b !== undefined)
      process.stdout.write(`ours / ocr-node: ${(rate(results.a) / rate(results.b)).toFixed(2)}x\n`);
    if (results.a !== undefined && results.c !== undefined)
      process.stdout.write(`batching on / off: ${(rate(results.a) / rate(results.c)).toFixed(2)}x\n`);
  } finally {
    rmSync(temporary, { recursive: true, force: true });
  }
}

if (args.load !== undefined) await loadChild(args.load);
else if (args['ocr-node']) await ocrNodeChild();
else await main();
