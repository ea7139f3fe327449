import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BENCH_FLAGS, toolParseOptions } from '../tool-flags.js';
import { intFlag, listFlag, stringFlag, UsageError } from '../cli-args.js';
import { SETTING_DEFAULTS } from '../../settings/settings.js';
import { type BenchProtocol, type ExampleInput, exampleInputs, grpcRequest, restBody } from './payloads.js';

/** Client counts a sweep runs when none are given. */
export const DEFAULT_CONCURRENCY: number[] = [...BENCH_FLAGS.concurrency.default];
import { renderChart, type Series } from './chart.js';
import { type LoadResult, runLoad } from './load.js';
import { batchSizeTotals } from './scrape.js';
import { GENERATOR_BOUND, generatorCeiling, startCpuMeter } from './generator-cpu.js';

/** A JSON request body of `rows` rows for every input, with deterministic pseudo-random values. */
export async function exampleBody(baseUrl: string, model: string, rows: number): Promise<string> {
  return restBody(await exampleInputs(baseUrl, model, rows), 'json').body as string;
}

/** The gRPC target of a server: `--grpc-url`, or the REST host at Triton's gRPC port. */
function grpcTarget(restUrl: string, grpcUrl: string | undefined): string {
  if (grpcUrl !== undefined) return grpcUrl.replace(/^grpc:\/\//, '');
  return `${new URL(restUrl).hostname}:${SETTING_DEFAULTS.grpcPort}`;
}

async function measure(
  baseUrl: string,
  options: BenchOptions,
  inputs: ExampleInput[],
  concurrency: number,
): Promise<LoadResult> {
  const { model, duration } = options;
  const protocol = options.protocol ?? 'json';
  const before = await batchSizeTotals(baseUrl, model);
  const busy = startCpuMeter();
  const result =
    protocol === 'grpc'
      ? await (await import('./grpc-load.js')).runGrpcLoad({
          target: grpcTarget(baseUrl, options.grpcUrl),
          request: grpcRequest(model, inputs),
          concurrency,
          durationSeconds: duration,
        })
      : await runLoad({
          url: `${baseUrl}/v2/models/${model}/infer`,
          ...restBody(inputs, protocol),
          concurrency,
          durationSeconds: duration,
          progress: process.stderr.isTTY,
        });
  const generatorCpu = busy();
  const after = await batchSizeTotals(baseUrl, model);
  const batches = after.count - before.count;
  return { ...result, meanBatch: batches > 0 ? (after.sum - before.sum) / batches : Number.NaN, generatorCpu };
}

const GENERATORS: Record<BenchProtocol, string> = {
  json: 'autocannon',
  binary: 'autocannon',
  grpc: 'the pre-serialized HTTP/2 client',
};

/**
 * The line under each table that marks the generator's own ceiling, so that a figure near it is not
 * read as the server's: this bench is one Node thread; wrk (REST) and h2load or ghz (gRPC) are not.
 */
export function ceilingLine(results: readonly LoadResult[], protocol: BenchProtocol): string {
  const ceiling = generatorCeiling(results);
  if (ceiling === undefined) return 'load generator ceiling: not measured (no CPU time was read)';
  const bound = results.filter((r) => r.generatorCpu >= GENERATOR_BOUND).map((r) => r.concurrency);
  const alternative = protocol === 'grpc' ? 'h2load or ghz' : 'wrk or h2load';
  return (
    `load generator ceiling ≈ ${Math.round(ceiling)} req/s (${GENERATORS[protocol]} on one thread, ` +
    `${Math.round(1e6 / ceiling)} µs of CPU per request): figures near it are the generator's, use ${alternative}` +
    (bound.length === 0
      ? ''
      : `; at ${bound.join(', ')} clients it was ${Math.round(GENERATOR_BOUND * 100)} % busy or more, so those rows measure it`)
  );
}

function printTable(label: string, results: LoadResult[], protocol: BenchProtocol): void {
  process.stdout.write(`\n${label}\n`);
  console.table(
    results.map((r) => ({
      concurrency: r.concurrency,
      'req/s': Math.round(r.requestsPerSecond),
      'p50 ms': r.p50,
      'p90 ms': r.p90,
      'p99 ms': r.p99,
      errors: r.errors + r.non2xx,
      'mean batch': Number.isNaN(r.meanBatch) ? '-' : r.meanBatch.toFixed(1),
      'generator CPU': `${Math.round(r.generatorCpu * 100)} %`,
    })),
  );
  process.stdout.write(`${ceilingLine(results, protocol)}\n`);
}

export interface BenchOptions {
  url: string;
  model: string;
  concurrency: number[];
  duration: number;
  rows: number;
  compare?: string | undefined;
  out?: string | undefined;
  /** REST JSON (the default), REST binary tensors, or gRPC with raw contents. */
  protocol?: BenchProtocol | undefined;
  /** With `protocol: 'grpc'`: host:port of the gRPC face; default the REST host, port 8001. Metrics still come from `url`. */
  grpcUrl?: string | undefined;
}

/** Runs the whole sweep against one server, or two, and writes the table, JSON and chart. */
export async function bench(options: BenchOptions): Promise<Series[]> {
  const targets = [options.url, ...(options.compare === undefined ? [] : [options.compare])];
  const series: Series[] = [];
  for (const url of targets) {
    const base = url.replace(/\/+$/, '');
    const inputs = await exampleInputs(base, options.model, options.rows);
    const results: LoadResult[] = [];
    for (const concurrency of options.concurrency) {
      process.stderr.write(`${base}: ${concurrency} concurrent clients for ${options.duration} s\n`);
      results.push(await measure(base, options, inputs, concurrency));
    }
    printTable(
      `${base} (model ${options.model}, ${options.rows} row(s) per request, ${options.protocol ?? 'json'})`,
      results,
      options.protocol ?? 'json',
    );
    series.push({ label: base, results });
  }
  if (options.out !== undefined) {
    mkdirSync(options.out, { recursive: true });
    writeFileSync(join(options.out, 'bench.json'), `${JSON.stringify(series, null, 2)}\n`);
    // The generator's ceiling is drawn where some run came near it (and so stays off a chart it would only squash).
    const ceilings = series.flatMap((s) => {
      const ceiling = generatorCeiling(s.results);
      return ceiling !== undefined && s.results.some((r) => r.generatorCpu >= GENERATOR_BOUND)
        ? [{ label: `load generator ceiling${series.length > 1 ? ` (${s.label})` : ''}`, requestsPerSecond: ceiling }]
        : [];
    });
    writeFileSync(
      join(options.out, 'bench.svg'),
      renderChart(series, `batched-fn bench: model ${options.model}, ${options.rows} row(s) per request`, ceilings),
    );
    process.stdout.write(`\nWrote ${join(options.out, 'bench.svg')} and bench.json\n`);
  }
  return series;
}

export async function runBench(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: toolParseOptions(BENCH_FLAGS), strict: true });
  const url = stringFlag(values, 'url');
  if (url === undefined) throw new UsageError('--url is required');
  if (values.generate === true) {
    // Generation: concurrent token streams with max_tokens uniform in 1..128.
    const { runGenerateLoad } = await import('./generate-load.js');
    const result = await runGenerateLoad({
      url,
      model: stringFlag(values, 'model') ?? 'charlm',
      streams: intFlag(values, 'streams', 1) ?? BENCH_FLAGS.streams.default,
      durationSeconds: intFlag(values, 'duration', 1) ?? BENCH_FLAGS.duration.default,
    });
    console.table([
      {
        ...result,
        tokensPerSecond: Math.round(result.tokensPerSecond),
        ttftP50: result.ttftP50.toFixed(1),
        ttftP99: result.ttftP99.toFixed(1),
        interTokenP99: result.interTokenP99.toFixed(1),
      },
    ]);
    return;
  }
  const concurrency = listFlag(values, 'concurrency') ?? DEFAULT_CONCURRENCY;
  if (values.binary === true && values.grpc === true) throw new UsageError('Give --binary or --grpc, not both');
  const grpcUrl = stringFlag(values, 'grpc-url');
  if (grpcUrl !== undefined && values.grpc !== true) throw new UsageError('--grpc-url needs --grpc');
  await bench({
    url,
    model: stringFlag(values, 'model') ?? BENCH_FLAGS.model.default,
    concurrency,
    duration: intFlag(values, 'duration', 1) ?? BENCH_FLAGS.duration.default,
    rows: intFlag(values, 'rows', 1) ?? BENCH_FLAGS.rows.default,
    compare: stringFlag(values, 'compare'),
    out: stringFlag(values, 'out'),
    protocol: values.grpc === true ? 'grpc' : values.binary === true ? 'binary' : 'json',
    grpcUrl,
  });
}
