// First, before any onnxruntime session: see formats/ort-environment.ts.
import '../formats/ort-environment.js';
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DEMO_FLAGS, toolParseOptions } from './tool-flags.js';
import { withoutFlagVariables } from './env-flags.js';
import { flagRows } from './flags.js';
import * as ort from 'onnxruntime-node';
import { bench } from './bench/command.js';
import type { Series } from './bench/chart.js';
import { intFlag, listFlag, stringFlag } from './cli-args.js';
import { DEFAULT_MODEL, defaultCacheDir, ensureMlpModel } from '../builtin/default-model.js';
import { SETTING_DEFAULTS } from '../settings/settings.js';

const BIN = fileURLToPath(new URL('../../bin/batched-fn.js', import.meta.url));

/** Starts `batched-fn serve` in its own process and resolves with its URL once it listens. */
function startServe(args: string[]): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--grpc-port', '0', ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
    // The demo's servers are set by its own flags: a user's BATCHED_FN_ variables must not change them.
    env: withoutFlagVariables(flagRows('serve')),
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk;
      const match = / on (http:\/\/\S+) /.exec(out);
      if (match) resolve({ url: match[1] as string, child });
    });
    child.once('exit', (code) => reject(new Error(`batched-fn serve ${args.join(' ')} exited with ${code}:\n${out}`)));
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  await new Promise((resolve) => {
    child.once('exit', resolve);
    child.kill('SIGTERM');
  });
}

/**
 * The model's own ceiling: rows per second when it always gets full batches, measured here directly,
 * one session with every core as its intra-op threads (however the server splits them).
 */
async function modelCeiling(path: string, batch: number, threads: number): Promise<number> {
  const session = await ort.InferenceSession.create(path, { intraOpNumThreads: threads, interOpNumThreads: 1 });
  const feeds = {
    input: new ort.Tensor('float32', new Float32Array(batch * DEFAULT_MODEL.inputs).fill(0.1), [
      batch,
      DEFAULT_MODEL.inputs,
    ]),
  };
  for (let i = 0; i < 5; i++) await session.run(feeds);
  const runs = 40;
  const started = performance.now();
  for (let i = 0; i < runs; i++) await session.run(feeds);
  const seconds = (performance.now() - started) / 1000;
  await session.release();
  return (runs * batch) / seconds;
}

/**
 * `npm run demo`: the same model served batched and unbatched, plus the same
 * server around a trivial model (the HTTP ceiling), each loaded from this
 * separate process; prints the ratios and writes one chart of all three.
 */
export async function runDemo(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: toolParseOptions(DEMO_FLAGS), strict: true });
  const duration = intFlag(values, 'duration', 1) ?? DEMO_FLAGS.duration.default;
  const concurrency = listFlag(values, 'concurrency') ?? [...DEMO_FLAGS.concurrency.default];
  const out = stringFlag(values, 'out') ?? DEMO_FLAGS.out.default;
  const cacheDir = stringFlag(values, 'cache-dir') ?? defaultCacheDir();
  const modelPath = ensureMlpModel(DEFAULT_MODEL, cacheDir);
  // Same input and output as the default model, but a single 256x16 layer: what HTTP and JSON alone allow.
  const trivialPath = ensureMlpModel({ ...DEFAULT_MODEL, hidden: [] }, cacheDir);
  const common = ['--cache-dir', cacheDir];
  const servers = [
    {
      label: `batched (max batch ${SETTING_DEFAULTS.maxBatchSize}, max delay ${SETTING_DEFAULTS.maxDelay})`,
      args: common,
    },
    { label: 'unbatched (max batch 1)', args: [...common, '--max-batch-size', '1'] },
    { label: 'HTTP ceiling (trivial model, batched)', args: [...common, '--model', trivialPath, '--name', 'mlp'] },
  ];
  // This machine's speed drifts by tens of percent over minutes, so the ceiling is taken before and after the sweeps.
  const ceilingBefore = await modelCeiling(modelPath, SETTING_DEFAULTS.maxBatchSize, availableParallelism());
  const series: Series[] = [];
  for (const server of servers) {
    process.stderr.write(`\n== ${server.label}\n`);
    const running = await startServe(server.args);
    try {
      const [result] = await bench({ url: running.url, model: 'mlp', concurrency, duration, rows: 1 });
      series.push({ results: (result as Series).results, label: server.label });
    } finally {
      await stop(running.child);
    }
  }
  const ceilingAfter = await modelCeiling(modelPath, SETTING_DEFAULTS.maxBatchSize, availableParallelism());
  const ceiling = (ceilingBefore + ceilingAfter) / 2;
  const at = (index: number, c: number): number =>
    series[index]?.results.find((r) => r.concurrency === c)?.requestsPerSecond ?? Number.NaN;
  const reference = concurrency.includes(64) ? 64 : (concurrency.at(-1) as number);
  const batched = at(0, reference);
  const unbatched = at(1, reference);
  const http = at(2, reference);
  const limit = Math.min(ceiling, http);
  const summary = {
    concurrency: reference,
    batchedRps: Math.round(batched),
    unbatchedRps: Math.round(unbatched),
    speedup: batched / unbatched,
    modelCeilingRps: Math.round(ceiling),
    modelCeilingBeforeAfter: [Math.round(ceilingBefore), Math.round(ceilingAfter)],
    httpCeilingRps: Math.round(http),
    shareOfCeiling: batched / limit,
  };
  process.stdout.write(
    `\nAt ${reference} concurrent 1-row JSON requests:\n` +
      `  batched ${summary.batchedRps} req/s, unbatched ${summary.unbatchedRps} req/s: ${summary.speedup.toFixed(1)}x\n` +
      `  model ceiling (${SETTING_DEFAULTS.maxBatchSize} rows per session.run) ${summary.modelCeilingRps} rows/s (${Math.round(ceilingBefore)} before, ${Math.round(ceilingAfter)} after), HTTP ceiling (trivial model) ${summary.httpCeilingRps} req/s\n` +
      `  batched reaches ${(100 * summary.shareOfCeiling).toFixed(0)} % of the smaller ceiling\n`,
  );
  const { renderChart } = await import('./bench/chart.js');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(out, { recursive: true });
  // The chart compares batched with unbatched against what the model alone can do; the HTTP ceiling (often
  // several times higher) would flatten that gap, so it is printed and kept in demo.json, not drawn.
  writeFileSync(
    join(out, 'demo.svg'),
    renderChart(series.slice(0, 2), 'Default MLP (17.9 M parameters), 1-row JSON requests', [
      {
        label: `model ceiling ${summary.modelCeilingRps} rows/s (${SETTING_DEFAULTS.maxBatchSize} rows per session.run)`,
        requestsPerSecond: ceiling,
      },
    ]),
  );
  writeFileSync(join(out, 'demo.json'), `${JSON.stringify({ summary, series }, null, 2)}\n`);
  process.stdout.write(`Wrote ${join(out, 'demo.svg')} and demo.json\n`);
}
