// The main thread's CPU per request, by stage, from a `BENCH_PROFILE=<dir> node bench/protocols.js` run:
// `node bench/profile-stages.js <dir>`. Each profile sample (V8's --cpu-prof, on the monotonic clock the
// bench's windows use) inside a timed run counts for the stage of its innermost frame that belongs to
// one (natives and builtins count for their caller): fastify's send called from one of our hooks is
// fastify's, a prom-client call made from metrics.ts is metrics. A frame that several stages match
// counts for the first. The table is µs per answered request; `idle` is left out.
//
// V8 samples by wall clock: time the main thread spends preempted (by a worker thread it has just
// woken, on a machine with 2 cores) counts for whatever it was running, postMessage above all.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

// Several runs' directories may be given: their windows add up (time and requests), per column.
const dirs = process.argv.slice(2);
if (dirs.length === 0) throw new Error('usage: node bench/profile-stages.js <BENCH_PROFILE dir>...');

// Our build: dist/, or a copy of it beside it (BENCH_BASELINE's).
const ours = (path) => {
  const pattern = new RegExp(`/packages/server/[^/]*dist/${path}`);
  return (frame) => pattern.test(frame.url);
};
const pkg = (name) => (frame) => frame.url.includes(`/node_modules/${name}/`);
const any =
  (...tests) =>
  (frame) =>
    tests.some((test) => test(frame));
const protobuf = any(pkg('protobufjs'), pkg('@protobufjs'), pkg('@grpc/proto-loader'));
/** In priority order: a sample counts for the first stage one of its frames matches. */
const STAGES = [
  [
    'metrics, statistics, dashboard',
    any(pkg('prom-client'), ours('metrics/'), ours('dashboard/'), ours('protocol/statistics')),
  ],
  ['otel', ours('otel/')],
  // protobufjs generates its codecs with `new Function`: their frames have no url.
  // The server's ModelInfer codecs are its own (grpc/infer-*-wire.js); the bare stack's are protobufjs's.
  [
    'protobuf decode',
    (f) =>
      ours('grpc/infer-request-wire')(f) ||
      ((protobuf(f) || f.url === '') && /decode|toObject|deserial/i.test(f.functionName)),
  ],
  [
    'protobuf encode',
    (f) =>
      ours('grpc/infer-response-wire')(f) ||
      protobuf(f) ||
      (f.url === '' && /encode|fromObject|serial/i.test(f.functionName)),
  ],
  ['gRPC wire scan', ours('grpc/wire-scan')],
  ['gRPC stream guards', ours('grpc/guards')],
  ['REST body read, scan', any(ours('rest/request-body'), ours('rest/body-scan'))],
  [
    'decode',
    any(
      ours('grpc/decode'),
      ours('grpc/proto'),
      ours('protocol/decode'),
      ours('protocol/tensor-data'),
      ours('rest/raw-request'),
      ours('protocol/shared-memory'),
      ours('protocol/schedule-policy'),
    ),
  ],
  ['encode', any(ours('grpc/encode'), ours('protocol/encode'), ours('protocol/bytes-data'))],
  ['batcher: worker hand-off', (f) => f.url.includes('/packages/batched-fn/dist/executor/')],
  ['batcher: intake, queue, settle', (f) => f.url.includes('/packages/batched-fn/dist/')],
  ['served model (formats/, model/)', any(ours('formats/'), ours('model/'))],
  ['infer front', ours('protocol/infer-front')],
  ['transport glue (grpc/, rest/, server)', any(ours('grpc/'), ours('rest/'), ours('server.js'), ours('protocol/'))],
  ['@grpc/grpc-js', pkg('@grpc/grpc-js')],
  ['fastify', any(pkg('fastify'), pkg('find-my-way'), pkg('@fastify'), pkg('avvio'), pkg('light-my-request'))],
  ['node: http2', (f) => f.url.startsWith('node:internal/http2')],
  ['node: http, net, streams', (f) => /^node:(_http|net|internal\/(streams|http|stream_base|net))/.test(f.url)],
  ['GC', (f) => f.functionName === '(garbage collector)'],
  ['other (microtasks, timers, natives)', () => true],
];

const windows = dirs.flatMap((dir) =>
  JSON.parse(readFileSync(join(dir, 'windows.json'), 'utf8')).map((window) => ({ ...window, dir })),
);
const table = {};
for (const window of windows) {
  const dir = window.dir;
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  // The main thread's profile: CPU.<date>.<time>.<pid>.<thread id 0>.<seq>.cpuprofile
  const file = files.find((f) => f.split('.')[3] === String(window.pid) && f.split('.')[4] === '0');
  if (file === undefined) throw new Error(`no main-thread profile of pid ${window.pid} in ${dir}`);
  const profile = JSON.parse(readFileSync(join(dir, file), 'utf8'));
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const stageOf = new Map();
  const stage = (id) => {
    if (stageOf.has(id)) return stageOf.get(id);
    const frames = [];
    for (let at = id; at !== undefined; at = parent.get(at)) frames.push(byId.get(at).callFrame);
    let name = frames[0].functionName === '(idle)' ? 'idle' : undefined;
    for (let i = 0; name === undefined && i < frames.length; i++)
      name = STAGES.slice(0, -1).find(([, test]) => test(frames[i]))?.[0];
    name ??= STAGES.at(-1)[0];
    stageOf.set(id, name);
    return name;
  };
  const us = {};
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i];
    if (t < window.startUs || t > window.endUs) continue;
    // A sample stands for the time until the next one.
    const delta = profile.timeDeltas[i + 1] ?? 0;
    const name = stage(profile.samples[i]);
    us[name] = (us[name] ?? 0) + delta;
  }
  const column = `${window.model} ${window.protocol}`;
  table.requests ??= {};
  table.requests[column] = (table.requests[column] ?? 0) + window.requests;
  for (const [name, value] of Object.entries(us)) {
    table[name] ??= {};
    table[name][column] = (table[name][column] ?? 0) + value;
  }
}
const columns = Object.keys(table.requests);
const rows = {};
for (const [name] of [...STAGES, ['idle']]) {
  if (table[name] === undefined) continue;
  rows[name] = Object.fromEntries(
    columns.map((c) => [c, Number(((table[name][c] ?? 0) / table.requests[c]).toFixed(1))]),
  );
}
rows['total (not idle)'] = Object.fromEntries(
  columns.map((c) => [
    c,
    Number(
      Object.entries(rows)
        .filter(([name]) => name !== 'idle')
        .reduce((sum, [, row]) => sum + row[c], 0)
        .toFixed(1),
    ),
  ]),
);
console.table(rows);
