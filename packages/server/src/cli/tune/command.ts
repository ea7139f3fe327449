import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { TUNE_FLAGS, toolParseOptions } from '../tool-flags.js';
import { intFlag, listFlag, stringFlag, UsageError } from '../cli-args.js';
import { runLoad } from '../bench/load.js';
import { exampleInputs, restBody } from '../bench/payloads.js';
import { batchSizeTotals } from '../bench/scrape.js';
import { ensureMlpModel } from '../../builtin/default-model.js';
import { bestWithin, type Measured, renderTuneSvg, tableRows } from './report.js';
import {
  checkTarget,
  killCandidatesNow,
  startCandidate,
  stopCandidates,
  targetName,
  type TuneTarget,
} from './server-process.js';
import { type Candidate, coarseGrid, defaultCandidate, keyOf, modelConfig, neighbours, serveFlags } from './space.js';
import { measurePoint, STABILITY, type Window } from './stability.js';

export interface TuneOptions {
  target: TuneTarget;
  budgetMs: number;
  concurrency: number[];
  /** Length of one measurement window, in seconds. */
  duration: number;
  out: string;
  maxCandidates: number;
  maxWindows: number;
  cores: number;
  cacheDir?: string | undefined;
  /** Progress lines (a bar with the time left); default stderr. */
  progress?: (line: string, done: boolean) => void;
}

export interface TuneResult {
  measured: Measured[];
  recommended: Measured | undefined;
  defaults: Measured | undefined;
  seconds: number;
}

/** One window: closed-loop load for `duration` seconds; the server's mean batch from its /metrics. */
async function window(url: string, name: string, body: string, concurrency: number, duration: number): Promise<Window> {
  const before = await batchSizeTotals(url, name);
  const result = await runLoad({
    url: `${url}/v2/models/${name}/infer`,
    body,
    concurrency,
    durationSeconds: duration,
    progress: false,
  });
  const after = await batchSizeTotals(url, name);
  const batches = after.count - before.count;
  return {
    throughput: result.requestsPerSecond,
    p50: result.p50,
    p99: result.p99,
    errors: result.errors + result.non2xx,
    meanBatch: batches > 0 ? (after.sum - before.sum) / batches : Number.NaN,
  };
}

async function evaluate(candidate: Candidate, options: TuneOptions): Promise<Measured> {
  const started = performance.now();
  const server = await startCandidate(options.target, candidate, options.cacheDir);
  try {
    const name = targetName(options.target);
    const body = restBody(await exampleInputs(server.url, name, 1), 'json').body as string;
    // Warm-up, not counted: JIT, the session's first runs, the cost curve `auto` learns.
    await window(server.url, name, body, Math.max(...options.concurrency), 1);
    const points = [];
    for (const concurrency of options.concurrency)
      points.push(
        await measurePoint(
          concurrency,
          () => window(server.url, name, body, concurrency, options.duration),
          options.maxWindows,
        ),
      );
    return {
      candidate,
      key: keyOf(candidate),
      points,
      best: bestWithin(points, options.budgetMs),
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    await server.stop();
  }
}

/** Higher throughput within the budget wins; a tie goes to the lower p99. */
const better = (a: Measured | undefined, b: Measured | undefined): boolean =>
  a?.best !== undefined &&
  (b?.best === undefined ||
    a.best.throughput > b.best.throughput * 1.01 ||
    (a.best.throughput >= b.best.throughput * 0.99 && a.best.p99 < b.best.p99));

function progressLine(done: number, planned: number, seconds: number[], label: string): string {
  const total = Math.max(planned, done);
  const width = 24;
  const filled = Math.round((width * done) / total);
  const mean = seconds.length === 0 ? 0 : seconds.reduce((a, b) => a + b, 0) / seconds.length;
  const left = Math.max(0, total - done) * mean;
  const eta =
    seconds.length === 0 && done < total
      ? 'time left unknown until one has run'
      : `about ${left >= 60 ? `${Math.floor(left / 60)}m${String(Math.round(left % 60)).padStart(2, '0')}s` : `${Math.round(left)}s`} left`;
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${done}/${total} candidates, ${eta}${label === '' ? '' : `: ${label}`}`;
}

/**
 * The search: the coarse grid (the defaults among it), then hill-climbing from the best, one step
 * on each axis at a time, until no neighbour beats it or `maxCandidates` have run.
 */
export async function tune(options: TuneOptions): Promise<TuneResult> {
  const started = performance.now();
  const progress =
    options.progress ??
    ((line: string, done: boolean) =>
      process.stderr.write(process.stderr.isTTY ? `\r${line}${done ? '\n' : ''}` : `${line}\n`));
  const measured = new Map<string, Measured>();
  const grid = coarseGrid(options.cores);
  let planned = Math.min(options.maxCandidates, grid.length + 4);
  const run = async (candidate: Candidate): Promise<Measured | undefined> => {
    const key = keyOf(candidate);
    if (measured.has(key)) return measured.get(key);
    if (measured.size >= options.maxCandidates) return undefined;
    progress(
      progressLine(
        measured.size,
        planned,
        [...measured.values()].map((m) => m.seconds),
        `measuring ${key}`,
      ),
      false,
    );
    const result = await evaluate(candidate, options);
    measured.set(key, result);
    return result;
  };
  for (const candidate of grid) await run(candidate);
  let current = [...measured.values()].reduce<Measured | undefined>(
    (best, m) => (better(m, best) ? m : best),
    undefined,
  );
  while (current !== undefined && measured.size < options.maxCandidates) {
    const next = neighbours(current.candidate, options.cores).filter((c) => !measured.has(keyOf(c)));
    planned = Math.min(options.maxCandidates, measured.size + next.length);
    let step: Measured | undefined;
    for (const candidate of next) {
      const result = await run(candidate);
      if (better(result, step)) step = result;
    }
    if (!better(step, current)) break;
    current = step;
  }
  progress(progressLine(measured.size, measured.size, [], 'done'), true);
  const all = [...measured.values()];
  return {
    measured: all,
    recommended: all.reduce<Measured | undefined>((best, m) => (better(m, best) ? m : best), undefined),
    defaults: measured.get(keyOf(defaultCandidate(options.cores))),
    seconds: (performance.now() - started) / 1000,
  };
}

/** `batched-fn tune`: the sweep, then the table, the chart, tune.json and the recommendation. */
export async function runTune(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: toolParseOptions(TUNE_FLAGS), strict: true });
  const model = stringFlag(values, 'model');
  const repository = stringFlag(values, 'model-repository');
  const name = stringFlag(values, 'name');
  if (model !== undefined && repository !== undefined)
    throw new UsageError('Give --model or --model-repository, not both');
  if ((repository === undefined) !== (name === undefined))
    throw new UsageError('--model-repository needs --name (the model to tune), and --name needs --model-repository');
  const cacheDir = stringFlag(values, 'cache-dir');
  const target: TuneTarget =
    repository !== undefined
      ? { repository, name: name as string }
      : { model: model ?? ensureMlpModel(undefined, cacheDir) };
  checkTarget(target);
  const duration = Number(stringFlag(values, 'duration') ?? TUNE_FLAGS.duration.default);
  if (!(duration >= 1 && duration <= 600 && Number.isInteger(duration)))
    throw new UsageError(
      `--duration must be a whole number of seconds from 1 to 600, got ${JSON.stringify(values.duration)}`,
    );
  const options: TuneOptions = {
    target,
    budgetMs: intFlag(values, 'latency-budget', 1) ?? TUNE_FLAGS['latency-budget'].default,
    concurrency: listFlag(values, 'concurrency') ?? [...TUNE_FLAGS.concurrency.default],
    duration,
    out: stringFlag(values, 'out') ?? TUNE_FLAGS.out.default,
    maxCandidates: intFlag(values, 'max-candidates', 1) ?? TUNE_FLAGS['max-candidates'].default,
    maxWindows: intFlag(values, 'max-windows', STABILITY.windows) ?? TUNE_FLAGS['max-windows'].default,
    cores: availableParallelism(),
    cacheDir,
  };
  const result = await withCandidatesCleanedUp(() => tune(options));
  report(result, options);
}

/**
 * Runs the sweep so that no candidate outlives it. An error stops the candidate in `evaluate`; a
 * signal would otherwise end this process at once and orphan it (Node's default action), so
 * SIGINT, SIGTERM and SIGHUP stop it first (serve drains, its scratch folder goes), then exit with
 * 128 + the signal's number. A second signal exits at once; the `exit` hook then kills what is left.
 * SIGKILL runs none of this: there the candidate's orphan guard (see orphan-guard.ts) stops it.
 */
async function withCandidatesCleanedUp<T>(run: () => Promise<T>): Promise<T> {
  const codes: Partial<Record<NodeJS.Signals, number>> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 };
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    const code = codes[signal] ?? 1;
    if (stopping) process.exit(code);
    stopping = true;
    process.stderr.write(`\n${signal}: stopping the candidate server and removing its temporary files...\n`);
    void stopCandidates({ refuseMore: true }).finally(() => process.exit(code));
  };
  for (const signal of Object.keys(codes)) process.on(signal, onSignal);
  process.on('exit', killCandidatesNow);
  try {
    return await run();
  } catch (error) {
    // The sweep fails because its candidate was stopped under it: the signal's exit is the one to keep.
    if (stopping) await new Promise(() => {});
    throw error;
  } finally {
    await stopCandidates();
    for (const signal of Object.keys(codes)) process.off(signal, onSignal);
    process.off('exit', killCandidatesNow);
  }
}

function report(result: TuneResult, options: TuneOptions): void {
  const { recommended, defaults } = result;
  console.table(tableRows(result.measured, recommended?.key));
  mkdirSync(options.out, { recursive: true });
  const subject =
    'model' in options.target ? options.target.model : `${options.target.repository}/${options.target.name}`;
  writeFileSync(
    join(options.out, 'tune.svg'),
    renderTuneSvg(
      result.measured,
      options.budgetMs,
      recommended?.candidate,
      `batched-fn tune: ${subject.split('/').at(-1)}, ${result.measured.length} candidates`,
    ),
  );
  const gain =
    recommended?.best !== undefined && defaults?.best !== undefined
      ? recommended.best.throughput / defaults.best.throughput
      : undefined;
  const summary = {
    subject,
    budgetMs: options.budgetMs,
    cores: options.cores,
    concurrency: options.concurrency,
    windowSeconds: options.duration,
    stability: STABILITY,
    candidatesRun: result.measured.length,
    seconds: result.seconds,
    recommended: recommended?.key,
    defaults: defaults?.key,
    gainOverDefaults: gain,
    candidates: result.measured,
  };
  writeFileSync(join(options.out, 'tune.json'), `${JSON.stringify(summary, null, 2)}\n`);
  process.stdout.write(
    `\n${result.measured.length} candidates measured in ${Math.round(result.seconds)} s (coarse grid, then hill-climbing). Wrote ${join(options.out, 'tune.svg')} and tune.json.\n`,
  );
  if (recommended?.best === undefined) {
    process.stdout.write(
      `No candidate kept p99 within ${options.budgetMs} ms at any of the concurrencies ${options.concurrency.join(', ')}: raise --latency-budget or lower --concurrency.\n`,
    );
    return;
  }
  const best = recommended.best;
  writeFileSync(join(options.out, 'config.json'), `${JSON.stringify(modelConfig(recommended.candidate), null, 2)}\n`);
  const serve =
    'model' in options.target
      ? `batched-fn serve --model ${options.target.model} ${serveFlags(recommended.candidate).join(' ')}`
      : `batched-fn serve --model-repository ${options.target.repository}   # with ${options.target.name}/config.json below`;
  process.stdout.write(
    `\nRecommended (${recommended.key}): ${Math.round(best.throughput)} req/s at ${best.concurrency} clients, p99 ${best.p99.toFixed(1)} ms (budget ${options.budgetMs} ms)${best.stable ? '' : ', measured unstable (no 3 windows agreed within 10 %)'}` +
      (gain === undefined
        ? ', the defaults met no point within the budget'
        : `, ${gain.toFixed(2)}x the defaults' ${Math.round(defaults?.best?.throughput ?? 0)} req/s`) +
      `.\n  ${serve}\n  config.json: ${JSON.stringify(modelConfig(recommended.candidate))} (written to ${join(options.out, 'config.json')})\n`,
  );
}
