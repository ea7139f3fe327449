import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { intFlag, listFlag, stringFlag, UsageError } from '../cli-args.js';

/** Client counts a sweep runs when none are given. */
export const DEFAULT_CONCURRENCY = [1, 8, 32, 64, 128];
import { renderChart, type Series } from './chart.js';
import { type LoadResult, runLoad } from './load.js';
import { batchSizeTotals } from './scrape.js';

interface ModelMetadata {
  inputs: { name: string; datatype: string; shape: number[] }[];
}

/** A request body of `rows` rows for every input, with deterministic pseudo-random values. */
export async function exampleBody(baseUrl: string, model: string, rows: number): Promise<string> {
  const response = await fetch(`${baseUrl}/v2/models/${model}`);
  if (!response.ok) throw new UsageError(`GET ${baseUrl}/v2/models/${model} answered ${response.status}: is --model right?`);
  const metadata = (await response.json()) as ModelMetadata;
  let seed = 7;
  const next = (): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  const inputs = metadata.inputs.map((input) => {
    const shape = [rows, ...input.shape.slice(1).map((d) => (d > 0 ? d : 1))];
    const count = shape.reduce((a, b) => a * b, 1);
    const isFloat = input.datatype.startsWith('FP');
    const data = Array.from({ length: count }, () => (isFloat ? Math.round(next() * 1000) / 1000 : Math.floor(next() * 100)));
    return { name: input.name, shape, datatype: input.datatype, data };
  });
  return JSON.stringify({ inputs });
}

async function measure(baseUrl: string, model: string, body: string, concurrency: number, duration: number): Promise<LoadResult> {
  const before = await batchSizeTotals(baseUrl, model);
  const result = await runLoad({ url: `${baseUrl}/v2/models/${model}/infer`, body, concurrency, durationSeconds: duration, progress: process.stderr.isTTY });
  const after = await batchSizeTotals(baseUrl, model);
  const batches = after.count - before.count;
  return { ...result, meanBatch: batches > 0 ? (after.sum - before.sum) / batches : Number.NaN };
}

function printTable(label: string, results: LoadResult[]): void {
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
    })),
  );
}

export interface BenchOptions {
  url: string;
  model: string;
  concurrency: number[];
  duration: number;
  rows: number;
  compare?: string | undefined;
  out?: string | undefined;
}

/** Runs the whole sweep against one server, or two, and writes the table, JSON and chart. */
export async function bench(options: BenchOptions): Promise<Series[]> {
  const targets = [options.url, ...(options.compare === undefined ? [] : [options.compare])];
  const series: Series[] = [];
  for (const url of targets) {
    const base = url.replace(/\/+$/, '');
    const body = await exampleBody(base, options.model, options.rows);
    const results: LoadResult[] = [];
    for (const concurrency of options.concurrency) {
      process.stderr.write(`${base}: ${concurrency} concurrent clients for ${options.duration} s\n`);
      results.push(await measure(base, options.model, body, concurrency, options.duration));
    }
    printTable(`${base} (model ${options.model}, ${options.rows} row(s) per request)`, results);
    series.push({ label: base, results });
  }
  if (options.out !== undefined) {
    mkdirSync(options.out, { recursive: true });
    writeFileSync(join(options.out, 'bench.json'), `${JSON.stringify(series, null, 2)}\n`);
    writeFileSync(join(options.out, 'bench.svg'), renderChart(series, `batched-fn bench: model ${options.model}, ${options.rows} row(s) per request`));
    process.stdout.write(`\nWrote ${join(options.out, 'bench.svg')} and bench.json\n`);
  }
  return series;
}

export async function runBench(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      url: { type: 'string' },
      model: { type: 'string' },
      concurrency: { type: 'string' },
      duration: { type: 'string' },
      rows: { type: 'string' },
      compare: { type: 'string' },
      out: { type: 'string' },
      generate: { type: 'boolean' },
      streams: { type: 'string' },
    },
    strict: true,
  });
  const url = stringFlag(values, 'url');
  if (url === undefined) throw new UsageError('--url is required');
  if (values.generate === true) {
    // Generation: concurrent token streams with max_tokens uniform in 1..128.
    const { runGenerateLoad } = await import('./generate-load.js');
    const result = await runGenerateLoad({ url, model: stringFlag(values, 'model') ?? 'charlm', streams: intFlag(values, 'streams', 1) ?? 32, durationSeconds: intFlag(values, 'duration', 1) ?? 10 });
    console.table([{ ...result, tokensPerSecond: Math.round(result.tokensPerSecond), ttftP50: result.ttftP50.toFixed(1), ttftP99: result.ttftP99.toFixed(1), interTokenP99: result.interTokenP99.toFixed(1) }]);
    return;
  }
  const concurrency = listFlag(values, 'concurrency') ?? DEFAULT_CONCURRENCY;
  await bench({
    url,
    model: stringFlag(values, 'model') ?? 'mlp',
    concurrency,
    duration: intFlag(values, 'duration', 1) ?? 10,
    rows: intFlag(values, 'rows', 1) ?? 1,
    compare: stringFlag(values, 'compare'),
    out: stringFlag(values, 'out'),
  });
}
