// REST JSON, REST binary and gRPC raw against one server, in one run, with the load from C tools in
// another process: wrk (one thread, 64 connections) for REST, h2load (64 streams on one connection,
// as tritonclient multiplexes them) for gRPC. A Node load generator costs more CPU per request than
// the server's own protocol path (`bench --grpc`'s node:http2 client: ~44 µs a call) and shares the
// 2 cores, so these figures must come from wrk and h2load (scripts/install-test-deps.sh installs them).
//
// Per row: req/s, and the server main thread's CPU per request (from /proc/<pid>/task/<pid>/stat, the
// thread that parses, validates, batches and answers; the model runs in worker threads), the whole
// server process's, and the load generator's (wrk or h2load: they share the same 2 cores); how busy
// the main thread was, and how many cores the server and its load generator used together. Models: the
// default MLP, a tiny 256→16 model where the protocol's own cost shows, and `bare`: the protocol stacks
// alone (bench/bare-server.js), each protocol's ceiling here, and `held`: the same stacks holding every
// answer until the next tick of a 1 ms timer, as a batching server holds its calls through a batch (what
// that alone costs a transport: the calls' HTTP/2, grpc-js and socket objects outlive a scavenge, and
// the answers leave in bursts). All servers run at once; each round takes
// every protocol on every server in turn, the orders alternating from round to round.
//
// BENCH_SECONDS (8), BENCH_ROUNDS (2), BENCH_MODELS (mlp,tiny,bare,held), BENCH_PROTOCOLS (json,binary,grpc).
// BENCH_BASELINE=<dist dir>: each model also runs as `<model>@base`, served from that build (a copy of
// dist/ made before a change, kept beside dist/ so its imports resolve), for before/after in one run.
// BENCH_PROFILE=<dir>: the servers run with --cpu-prof into <dir>, and each timed run's window (monotonic
// clock, as the profile's timestamps) and request count go to <dir>/windows.json, for
// bench/profile-stages.js, which splits the main thread's time per request by stage.
// Run it under `flock /tmp/bfn-bench.lock` where other benchmarks share the machine.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { loadSync } from '@grpc/proto-loader';
import { ensureMlpModel } from '../dist/index.js';
import { exampleInputs, grpcRequest, restBody } from '../dist/cli/bench/payloads.js';
import { PROTO_OPTIONS, PROTO_PATH } from '../dist/grpc/proto.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const WARMUP_SECONDS = 2;
const PROFILE = process.env.BENCH_PROFILE;
const windows = [];
const CLIENTS = 64;
const METHOD = '/inference.GRPCInferenceService/ModelInfer';
const BIN = fileURLToPath(new URL('../bin/batched-fn.js', import.meta.url));
const TICK_US = 1e6 / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
for (const tool of ['wrk', 'h2load'])
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
  } catch {
    throw new Error(`${tool} is missing: run scripts/install-test-deps.sh`);
  }

const ALL_MODELS = {
  mlp: () => ensureMlpModel(),
  tiny: () => ensureMlpModel({ inputs: 256, hidden: [], classes: 16, seed: 1 }),
  bare: () => undefined,
  held: () => undefined,
};
const pick = (env, all) => (process.env[env] ?? all.join(',')).split(',').filter((x) => all.includes(x.split('@')[0]));
const BASELINE = process.env.BENCH_BASELINE;
/** The protocol stacks alone (bench/bare-server.js), by how long they hold an answer (ms). */
const STACKS = { bare: 0, held: 1 };
const MODELS = pick('BENCH_MODELS', Object.keys(ALL_MODELS)).flatMap((m) =>
  BASELINE === undefined || m in STACKS || m.includes('@') ? [m] : [`${m}@base`, m],
);
const PROTOCOLS = pick('BENCH_PROTOCOLS', ['json', 'binary', 'grpc']);
const work = mkdtempSync(join(tmpdir(), 'bfn-proto-'));
// protobufjs, through proto-loader, from the shipped proto: the codec of the server's own clients.
const ModelInfer = loadSync(PROTO_PATH, PROTO_OPTIONS)['inference.GRPCInferenceService'].ModelInfer;

async function serve(label) {
  const [name, base] = label.split('@');
  const path = ALL_MODELS[name]();
  // A launcher file, not `node -e`: worker threads inherit the process's exec flags (--input-type among them).
  const launcher = join(work, 'baseline-cli.mjs');
  if (base !== undefined)
    writeFileSync(
      launcher,
      `import { main } from ${JSON.stringify(pathToFileURL(join(BASELINE, 'cli/cli.js')).href)};\n` +
        'await main(process.argv.slice(2));\n',
    );
  const cli = base === undefined ? [BIN] : [launcher];
  const args =
    path === undefined
      ? [fileURLToPath(new URL('bare-server.js', import.meta.url)), String(STACKS[name])]
      : [...cli, 'serve', '--model', path, '--name', name, '--port', '0', '--grpc-port', '0', '--threads', '1'];
  const profile = PROFILE === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${PROFILE}`, '--cpu-prof-interval=250'];
  const child = spawn(process.execPath, [...profile, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (chunk) => (out += chunk));
  while (!/gRPC: grpc:\/\/(\S+)/.test(out)) {
    if (child.exitCode !== null) throw new Error(out);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return {
    pid: child.pid,
    url: / on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)[1],
    grpc: /gRPC: grpc:\/\/(\S+)/.exec(out)[1],
    stop: () =>
      new Promise((resolve) => {
        child.once('exit', resolve);
        child.kill('SIGTERM');
      }),
  };
}

/** The fields of a /proc stat file after the command's name (utime is [11], stime [12], cutime [13], cstime [14]). */
function statFields(path) {
  const stat = readFileSync(path, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** utime + stime of one thread (the main thread's tid is the pid), or of the whole process, in µs. */
function cpuUs(pid, thread) {
  const fields = statFields(thread ? `/proc/${pid}/task/${pid}/stat` : `/proc/${pid}/stat`);
  return (Number(fields[11]) + Number(fields[12])) * TICK_US;
}

/**
 * CPU of this process's children that have ended and been waited for, in µs: wrk and h2load run
 * through execFileSync, so the change across one timed run is that load generator's CPU.
 */
function loadGeneratorUs() {
  const fields = statFields('/proc/self/stat');
  return (Number(fields[13]) + Number(fields[14])) * TICK_US;
}

/** The request bodies of one model, as files the load generators send (the bare server takes the tiny model's). */
async function payloads(server, model) {
  const inputs = await exampleInputs(server.url, model, 1);
  const files = {};
  for (const protocol of ['json', 'binary']) {
    const { body, headers } = restBody(inputs, protocol);
    const file = join(work, `${model}-${protocol}.body`);
    writeFileSync(file, body);
    const lua = join(work, `${model}-${protocol}.lua`);
    // Lua's long brackets hold the path verbatim; the body is read once, as bytes.
    writeFileSync(
      lua,
      [
        'wrk.method = "POST"',
        `local f = assert(io.open([==[${file}]==], "rb"))`,
        'wrk.body = f:read("*a")',
        'f:close()',
        ...Object.entries(headers).map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`),
      ].join('\n'),
    );
    files[protocol] = { lua, body, headers };
  }
  const message = ModelInfer.requestSerialize(grpcRequest(model, inputs));
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  files.grpc = { file: join(work, `${model}-grpc.body`) };
  writeFileSync(files.grpc.file, Buffer.concat([prefix, message]));
  return files;
}

/** One gRPC call with the h2load body, outside the timing: its trailers' grpc-status and its outputs. */
function grpcOnce(target, file) {
  return new Promise((resolve, reject) => {
    const session = connect(`http://${target}`);
    session.on('error', reject);
    const stream = session.request({
      ':method': 'POST',
      ':path': METHOD,
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    const chunks = [];
    let status;
    let message;
    stream.on('data', (chunk) => chunks.push(chunk));
    // An error comes trailers-only: its status is in the response headers.
    stream.on('response', (headers) => {
      status = headers['grpc-status'];
      message = headers['grpc-message'];
    });
    stream.on('trailers', (trailers) => {
      status = trailers['grpc-status'];
      message = trailers['grpc-message'];
    });
    stream.on('close', () => {
      session.close();
      const body = Buffer.concat(chunks);
      if (String(status) !== '0' || body.length < 5)
        return reject(new Error(`gRPC answered grpc-status ${status}: ${decodeURI(String(message))}`));
      resolve(ModelInfer.responseDeserialize(body.subarray(5)));
    });
    stream.end(readFileSync(file));
  });
}

/**
 * Checks once that each body is answered right: REST JSON and binary 200 with the same numbers, and
 * gRPC grpc-status 0 with the same bytes (h2load counts HTTP 200, which a gRPC error also is).
 */
async function verify(server, model, files, bare) {
  const rest = {};
  for (const protocol of ['json', 'binary']) {
    const response = await fetch(`${server.url}/v2/models/${model}/infer`, {
      method: 'POST',
      body: files[protocol].body,
      headers: files[protocol].headers,
    });
    if (response.status !== 200)
      throw new Error(`REST ${protocol} answered ${response.status}: ${await response.text()}`);
    const bytes = Buffer.from(await response.arrayBuffer());
    const length = Number(response.headers.get('inference-header-content-length') ?? bytes.length);
    rest[protocol] = { header: JSON.parse(bytes.subarray(0, length).toString()), raw: bytes.subarray(length) };
  }
  const grpc = await grpcOnce(server.grpc, files.grpc.file);
  if (bare) return;
  const json = rest.json.header.outputs[0];
  const raw = rest.binary.raw;
  const fromGrpc = grpc.raw_output_contents[0];
  const asFloats = (b) => Array.from(new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)));
  const same = (a, b) => a.length === b.length && a.every((x, i) => Math.abs(x - b[i]) < 1e-5);
  if (!same(asFloats(raw), json.data) || !same(asFloats(Buffer.from(fromGrpc)), json.data))
    throw new Error(`${model}: REST JSON, REST binary and gRPC answered different outputs`);
}

/** A duration as wrk prints it (`812.00us`, `3.10ms`, `1.02s`), in ms. */
function ms(text) {
  const [, value, unit] = /([\d.]+)(us|ms|s)/.exec(text) ?? [];
  return Number(value) * ({ us: 1e-3, ms: 1, s: 1000 }[unit] ?? Number.NaN);
}

function wrk(url, lua, seconds) {
  const out = execFileSync('wrk', ['-t1', `-c${CLIENTS}`, `-d${seconds}s`, '--latency', '-s', lua, url], {
    encoding: 'utf8',
  });
  const requests = Number(/(\d+) requests in/.exec(out)?.[1]);
  const errors = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    requests,
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]),
    p50: ms(/ 50%\s+(\S+)/.exec(out)?.[1] ?? ''),
    p99: ms(/ 99%\s+(\S+)/.exec(out)?.[1] ?? ''),
    errors: errors + (socket === null ? 0 : socket.slice(1).reduce((a, b) => a + Number(b), 0)),
  };
}

function h2load(target, file, seconds) {
  const out = execFileSync(
    'h2load',
    [
      '-c1',
      `-m${CLIENTS}`,
      '-D',
      String(seconds),
      '-d',
      file,
      '-H',
      'content-type: application/grpc',
      '-H',
      'te: trailers',
      `http://${target}${METHOD}`,
    ],
    { encoding: 'utf8' },
  );
  const twoXX = Number(/status codes: (\d+) 2xx/.exec(out)?.[1]);
  const [, failed, errored] = /(\d+) failed, (\d+) errored/.exec(out) ?? [];
  const [, x3, x4, x5] = /2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out) ?? [];
  return {
    requests: twoXX,
    rps: Number(/finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(out)?.[1]),
    // h2load prints the mean and spread of its request times, not percentiles.
    p50: Number.NaN,
    p99: Number.NaN,
    errors: [failed, errored, x3, x4, x5].reduce((sum, n) => sum + Number(n ?? 0), 0),
  };
}

function load(server, model, files, protocol, seconds) {
  if (protocol === 'grpc') return h2load(server.grpc, files.grpc.file, seconds);
  return wrk(`${server.url}/v2/models/${model}/infer`, files[protocol].lua, seconds);
}

/** Rows answered and batches run by the model so far (from /metrics), for the mean batch size. */
async function batches(server, model) {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const sum = (metric) =>
    [...text.matchAll(new RegExp(`^${metric}\\{[^}]*model="${model}"[^}]*\\} ([\\d.e+]+)`, 'gm'))].reduce(
      (total, m) => total + Number(m[1]),
      0,
    );
  return { rows: sum('batched_fn_batch_size_sum'), batches: sum('batched_fn_batch_size_count') };
}

// Every server runs from the start, and each round measures each protocol on each server in turn
// (orders alternating), so what else runs on the machine weighs on all of them alike.
const rows = [];
/** Each timed run's requests and CPU totals (µs), unrounded, for the per-model figures below. */
const totals = [];
const servers = [];
try {
  for (const name of MODELS) {
    const server = await serve(name);
    servers.push(server);
    // The bare stacks answer as for the tiny model, and take its requests.
    server.name = name;
    server.model = name in STACKS ? 'tiny' : name.split('@')[0];
    server.files = await payloads(server, server.model);
    await verify(server, server.model, server.files, name in STACKS);
    // JIT, sessions, connections.
    for (const protocol of PROTOCOLS) load(server, server.model, server.files, protocol, WARMUP_SECONDS);
  }
  for (let round = 0; round < ROUNDS; round++) {
    const flip = (list) => (round % 2 === 0 ? list : [...list].reverse());
    for (const protocol of flip(PROTOCOLS)) {
      for (const server of flip(servers)) {
        const { name, model, files } = server;
        const before = [cpuUs(server.pid, true), cpuUs(server.pid, false), await batches(server, model)];
        const loadBefore = loadGeneratorUs();
        const start = process.hrtime.bigint();
        const result = load(server, model, files, protocol, SECONDS);
        const end = process.hrtime.bigint();
        const loadUs = loadGeneratorUs() - loadBefore;
        const after = [cpuUs(server.pid, true), cpuUs(server.pid, false), await batches(server, model)];
        windows.push({
          pid: server.pid,
          model: name,
          protocol,
          startUs: Number(start / 1000n),
          endUs: Number(end / 1000n),
          requests: result.requests,
        });
        const batchCount = after[2].batches - before[2].batches;
        const cpu = { main: after[0] - before[0], process: after[1] - before[1], load: loadUs };
        totals.push({ model: name, protocol, requests: result.requests, ...cpu });
        const seconds = Number(end - start) / 1e9;
        rows.push({
          model: name,
          round,
          protocol,
          'req/s': Math.round(result.rps),
          'p50 ms': result.p50,
          'p99 ms': result.p99,
          'mean batch': batchCount > 0 ? Number(((after[2].rows - before[2].rows) / batchCount).toFixed(1)) : '-',
          'main µs/req': Math.round(cpu.main / result.requests),
          'process µs/req': Math.round(cpu.process / result.requests),
          'load µs/req': Math.round(cpu.load / result.requests),
          // Of one core: near 1, the main thread is what limits the server.
          'main busy': Number((cpu.main / 1e6 / seconds).toFixed(2)),
          // Of the machine's cores, by the server and its load generator together.
          'cores used': Number(((cpu.process + cpu.load) / 1e6 / seconds).toFixed(2)),
          errors: result.errors,
        });
        process.stderr.write(`${JSON.stringify(rows.at(-1))}\n`);
      }
    }
  }
} finally {
  for (const server of servers) await server.stop();
  rmSync(work, { recursive: true, force: true });
}
if (PROFILE !== undefined) writeFileSync(join(PROFILE, 'windows.json'), JSON.stringify(windows, null, 1));
console.table(rows);
const mean = (name, protocol, key) => {
  const of = rows.filter((r) => r.model === name && r.protocol === protocol);
  return of.length === 0 ? Number.NaN : of.reduce((sum, r) => sum + r[key], 0) / of.length;
};
const ratio = (a, b) => (a / b).toFixed(2);
for (const name of MODELS) {
  const m = (protocol, key = 'req/s') => mean(name, protocol, key);
  process.stdout.write(
    `${name}: binary/json ${ratio(m('binary'), m('json'))}x, grpc/binary ${ratio(m('grpc'), m('binary'))}x; ` +
      `main-thread µs/req json ${m('json', 'main µs/req').toFixed(0)}, binary ${m('binary', 'main µs/req').toFixed(0)}, ` +
      `grpc ${m('grpc', 'main µs/req').toFixed(0)}\n`,
  );
}
// Against each anchor: `bare` (held included: what holding alone costs), and `held` (the models only).
const ANCHORS = [
  ['bare', "its protocol's bare stack", (n) => n !== 'bare'],
  ['held', 'the bare stack holding answers 1 ms', (n) => !(n in STACKS)],
];
/** A model's main-thread CPU per request over all its runs of a protocol (total CPU over total requests). */
const mainPerRequest = (name, protocol) => {
  const of = totals.filter((t) => t.model === name && t.protocol === protocol);
  return of.reduce((sum, t) => sum + t.main, 0) / of.reduce((sum, t) => sum + t.requests, 0);
};
// Where a server is limited by its main thread ('main busy' near 1 while 'cores used' stays under 2, as in
// every run of docs/benchmarks.md's session 17), the ratio of the main threads' CPU per request is the
// req/s ratio; a server whose main thread idled a share of the time did worse than that ratio says.
for (const [stack, what, compared] of ANCHORS.filter(([stack]) => MODELS.includes(stack)))
  for (const name of MODELS.filter(compared)) {
    const share = (protocol) => ratio(mean(name, protocol, 'req/s'), mean(stack, protocol, 'req/s'));
    const fromMainThreads = (protocol) => ratio(mainPerRequest(stack, protocol), mainPerRequest(name, protocol));
    process.stdout.write(
      `${name} against ${what}: json ${share('json')}x, binary ${share('binary')}x, grpc ${share('grpc')}x ` +
        `(the main threads' CPU per request gives json ${fromMainThreads('json')}x, binary ${fromMainThreads('binary')}x, ` +
        `grpc ${fromMainThreads('grpc')}x)\n`,
    );
  }
if (BASELINE !== undefined)
  for (const name of MODELS.filter((n) => n.endsWith('@base'))) {
    const now = name.split('@')[0];
    const of = (model, protocol, key = 'req/s') => mean(model, protocol, key);
    process.stdout.write(
      `${now} against its baseline: ${PROTOCOLS.map(
        (p) =>
          `${p} ${ratio(of(now, p), of(name, p))}x req/s, ` +
          `main µs/req ${of(name, p, 'main µs/req').toFixed(0)} → ${of(now, p, 'main µs/req').toFixed(0)}`,
      ).join('; ')}\n`,
    );
  }
