// Continuous against static batching on the server: charlm, 32 concurrent streams with max_tokens
// uniform in 1..128, load from this process against two servers (one per mode) in their own
// processes, run one after the other in the same session. The ideal ratio comes from a plain
// simulation with the step-cost curve measured on this machine.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runGenerateLoad } from '../dist/cli/bench/generate-load.js';
import { barChart } from '../../batched-fn/bench/svg-bars.js';
import { measureStepCost } from './step-cost.js';

const STREAMS = 32;
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const BIN = fileURLToPath(new URL('../bin/batched-fn.js', import.meta.url));

async function stepCost() {
  const cost = await measureStepCost([1, 32]);
  const b = (cost[32] - cost[1]) / 31;
  return { a: cost[1] - b, b };
}

/** Tokens per ms of a closed loop of STREAMS clients, lengths uniform 1..128, for a step cost a + b·N. */
function simulate(mode, { a, b }, max = 16) {
  let seed = 7;
  const length = () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return 1 + Math.floor((seed / 4294967296) * 128);
  };
  let waiting = STREAMS;
  let active = [];
  let time = 0;
  let tokens = 0;
  while (time < 60_000) {
    if (mode === 'continuous' || active.length === 0)
      while (active.length < max && waiting > 0) {
        active.push(length());
        waiting--;
      }
    time += a + b * active.length;
    tokens += active.length;
    const before = active.length;
    active = active.map((l) => l - 1).filter((l) => l > 0);
    waiting += before - active.length; // a finished client opens its next stream at once
  }
  return tokens / time;
}

async function serve(batching) {
  const child = spawn(
    process.execPath,
    [BIN, 'serve', '--port', '0', '--grpc-port', '0', '--threads', '1', '--batching', batching, '--max-active', '16'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  child.stdout.on('data', (chunk) => (out += chunk));
  while (!/ on (http:\/\/127\.0\.0\.1:\d+)/.test(out)) await new Promise((resolve) => setTimeout(resolve, 20));
  return {
    url: / on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)[1],
    stop: () =>
      new Promise((resolve) => {
        child.once('exit', resolve);
        child.kill('SIGTERM');
      }),
  };
}

const curve = await stepCost();
const results = {};
for (const batching of ['static', 'continuous']) {
  const server = await serve(batching);
  await runGenerateLoad({ url: server.url, model: 'charlm', streams: STREAMS, durationSeconds: 2 });
  results[batching] = await runGenerateLoad({
    url: server.url,
    model: 'charlm',
    streams: STREAMS,
    durationSeconds: SECONDS,
  });
  await server.stop();
}
const ideal = simulate('continuous', curve) / simulate('static', curve);
console.log(
  `\ncharlm over HTTP, ${STREAMS} concurrent streams, max_tokens uniform 1..128, --max-active 16, ${SECONDS} s per mode; step cost c(N) = ${curve.a.toFixed(3)} + ${curve.b.toFixed(4)}·N ms`,
);
console.table(
  ['static', 'continuous'].map((mode) => ({
    mode,
    'tokens/s': Math.round(results[mode].tokensPerSecond),
    'TTFT p50 ms': results[mode].ttftP50.toFixed(1),
    'TTFT p99 ms': results[mode].ttftP99.toFixed(1),
    'inter-token p99 ms': results[mode].interTokenP99.toFixed(1),
    streams: results[mode].completed,
    errors: results[mode].errors,
  })),
);
console.log(
  `continuous / static tokens/s = ${(results.continuous.tokensPerSecond / results.static.tokensPerSecond).toFixed(2)} (ideal from the step-cost curve: ${ideal.toFixed(2)}); TTFT p99 ${results.continuous.ttftP99.toFixed(1)} against ${results.static.ttftP99.toFixed(1)} ms`,
);
const out = process.env.BENCH_CHART ?? fileURLToPath(new URL('../../../docs/generate.svg', import.meta.url));
writeFileSync(
  out,
  barChart({
    title: `charlm, ${STREAMS} streams: continuous against static batching`,
    groups: ['tokens/s ÷ 10', 'TTFT p99 (ms)', 'inter-token p99 (ms)'],
    series: ['static', 'continuous'],
    values: [
      [results.static.tokensPerSecond / 10, results.continuous.tokensPerSecond / 10],
      [results.static.ttftP99, results.continuous.ttftP99],
      [results.static.interTokenP99, results.continuous.interTokenP99],
    ],
    unit: '',
  }),
);
console.log(`chart: ${out}`);
