// REST JSON, REST binary and gRPC raw against one server, in one run: req/s, and the server main
// thread's CPU per request (from /proc/<pid>/task/<pid>/stat, the thread that parses, validates,
// batches and answers; the model runs in worker threads). 64 concurrent 1-row clients, load from
// a separate process (`batched-fn bench`), on the default MLP and on a tiny 256→16 model, where
// the protocol's own cost shows. Rounds alternate the protocols' order. 2 cores are shared.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureMlpModel } from '../dist/index.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const CLIENTS = 64;
const BIN = fileURLToPath(new URL('../bin/batched-fn.js', import.meta.url));
const TICK_US = 1e6 / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
// `bare`: the protocol stacks alone (bench/bare-server.js), answering at once: each protocol's ceiling here.
const ALL_MODELS = {
  mlp: ensureMlpModel(),
  tiny: ensureMlpModel({ inputs: 256, hidden: [], classes: 16, seed: 1 }),
  bare: undefined,
};
// BENCH_MODELS=tiny,bare runs a subset (the ceiling shares below need the model and bare).
const MODELS = Object.fromEntries(
  Object.entries(ALL_MODELS).filter(([name]) =>
    (process.env.BENCH_MODELS ?? 'mlp,tiny,bare').split(',').includes(name),
  ),
);
const PROTOCOLS = ['json', 'binary', 'grpc'];

async function serve(path, name) {
  const args =
    path === undefined
      ? [fileURLToPath(new URL('bare-server.js', import.meta.url))]
      : [BIN, 'serve', '--model', path, '--name', name, '--port', '0', '--grpc-port', '0', '--threads', '1'];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
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

/** utime + stime of one thread (the main thread's tid is the pid), or of the whole process, in µs. */
function cpuUs(pid, thread) {
  const stat = readFileSync(thread ? `/proc/${pid}/task/${pid}/stat` : `/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * TICK_US;
}

const answered = async (url, name) => {
  if (name === undefined) return 0;
  const text = await (await fetch(`${url}/metrics`)).text();
  return [
    ...text.matchAll(
      new RegExp(`^batched_fn_requests_total\\{model="${name}",protocol="\\w+",status="200"\\} (\\d+)`, 'gm'),
    ),
  ].reduce((sum, m) => sum + Number(m[1]), 0);
};

function load(server, name, protocol, seconds) {
  const out = mkdtempSync(join(tmpdir(), 'bfn-proto-'));
  const flags = protocol === 'json' ? [] : protocol === 'binary' ? ['--binary'] : ['--grpc', '--grpc-url', server.grpc];
  execFileSync(
    process.execPath,
    [
      BIN,
      'bench',
      '--url',
      server.url,
      '--model',
      name,
      '--concurrency',
      String(CLIENTS),
      '--duration',
      String(seconds),
      '--out',
      out,
      ...flags,
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  return JSON.parse(readFileSync(join(out, 'bench.json'), 'utf8'))[0].results[0];
}

const rows = [];
for (const [name, path] of Object.entries(MODELS)) {
  const server = await serve(path, name);
  const metricsName = name === 'bare' ? 'tiny' : name;
  for (const protocol of PROTOCOLS) load(server, metricsName, protocol, 1); // warm-up: JIT, sessions, connections
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? PROTOCOLS : [...PROTOCOLS].reverse();
    for (const protocol of order) {
      const [mainBefore, allBefore, countBefore] = [
        cpuUs(server.pid, true),
        cpuUs(server.pid, false),
        await answered(server.url, metricsName),
      ];
      const result = load(server, metricsName, protocol, SECONDS);
      const [mainAfter, allAfter, countAfter] = [
        cpuUs(server.pid, true),
        cpuUs(server.pid, false),
        await answered(server.url, metricsName),
      ];
      // The bare servers keep no metrics: their count is the load generator's.
      const requests = name === 'bare' ? Math.round(result.requestsPerSecond * SECONDS) : countAfter - countBefore;
      rows.push({
        model: name,
        round,
        protocol,
        'req/s': Math.round(result.requestsPerSecond),
        'p50 ms': result.p50,
        'p99 ms': result.p99,
        'mean batch':
          typeof result.meanBatch === 'number' && !Number.isNaN(result.meanBatch)
            ? Number(result.meanBatch.toFixed(1))
            : '-',
        'main µs/req': Math.round((mainAfter - mainBefore) / requests),
        'process µs/req': Math.round((allAfter - allBefore) / requests),
        errors: result.errors + result.non2xx,
      });
      process.stderr.write(`${JSON.stringify(rows.at(-1))}\n`);
    }
  }
  await server.stop();
}
console.table(rows);
const mean = (name, protocol, key) => {
  const of = rows.filter((r) => r.model === name && r.protocol === protocol);
  return of.reduce((sum, r) => sum + r[key], 0) / of.length;
};
for (const name of Object.keys(MODELS)) {
  const m = (protocol, key) => mean(name, protocol, key);
  process.stdout.write(
    `${name}: req/s binary/json ${(m('binary', 'req/s') / m('json', 'req/s')).toFixed(2)}x, grpc/json ${(m('grpc', 'req/s') / m('json', 'req/s')).toFixed(2)}x, grpc/binary ${(m('grpc', 'req/s') / m('binary', 'req/s')).toFixed(2)}x; ` +
      `main-thread µs/req json ${m('json', 'main µs/req').toFixed(0)}, binary ${m('binary', 'main µs/req').toFixed(0)}, grpc ${m('grpc', 'main µs/req').toFixed(0)}\n`,
  );
}
for (const name of ['mlp', 'tiny'].filter((n) => n in MODELS && 'bare' in MODELS)) {
  const share = (protocol) => ((100 * mean(name, protocol, 'req/s')) / mean('bare', protocol, 'req/s')).toFixed(0);
  process.stdout.write(
    `${name} against its protocol's bare ceiling: json ${share('json')} %, binary ${share('binary')} %, grpc ${share('grpc')} %\n`,
  );
}
