import { parseArgs } from 'node:util';
import { delayFlag, durationFlag, intFlag, listFlag, stringFlag, UsageError } from './cli-args.js';
import { ModelLoadError } from './model/onnx-model.js';
import { SERVE_DEFAULTS, startServer } from './server.js';
import { loadOptional, MissingPackageError, REDIS_PACKAGES } from './optional.js';
import { onShutdownSignals } from './shutdown.js';

/** The server could not start (a missing model file, an address it cannot bind): one line, exit 2. */
class StartupError extends Error {
  override name = 'StartupError';
}

const USAGE = `Usage:
  batched-fn serve [--model file.onnx] [--name NAME] [--host ${SERVE_DEFAULTS.host}] [--port ${SERVE_DEFAULTS.port}]
                   [--max-batch-size ${SERVE_DEFAULTS.maxBatchSize}] [--max-delay MS|${SERVE_DEFAULTS.maxDelay}] [--latency-target MS]
                   [--preferred-batch-sizes 8,16,32] [--pad] [--queue-cap ${SERVE_DEFAULTS.channelCap}]
                   [--workers ${SERVE_DEFAULTS.workers}] [--threads ${SERVE_DEFAULTS.threads}] [--timeout MS] [--batch-timeout MS]
                   [--body-limit BYTES]
  batched-fn bench --url http://127.0.0.1:8000 [--model NAME] [--concurrency 1,8,32,64,128] [--duration 10]
                   [--rows 1] [--compare URL] [--out DIR]
                   [--redis redis://HOST:PORT [--prefix bfn]]   (forward to remote workers instead of a local model)
  batched-fn worker --redis redis://HOST:PORT [--model file.onnx] [--name NAME] [--prefix bfn]
                   [--max-batch-size 64] [--max-delay MS|auto] [--workers 1] [--threads 2] [--claim-idle 30000]
                   [--batch-timeout MS]
  batched-fn demo [--duration 5] [--concurrency 1,8,32,64,128] [--out bench-out]
`;

const serveFlags = {
  model: { type: 'string' },
  name: { type: 'string' },
  host: { type: 'string' },
  port: { type: 'string' },
  'max-batch-size': { type: 'string' },
  'max-delay': { type: 'string' },
  'latency-target': { type: 'string' },
  'preferred-batch-sizes': { type: 'string' },
  pad: { type: 'boolean' },
  'queue-cap': { type: 'string' },
  workers: { type: 'string' },
  threads: { type: 'string' },
  timeout: { type: 'string' },
  'batch-timeout': { type: 'string' },
  'body-limit': { type: 'string' },
  'cache-dir': { type: 'string' },
  redis: { type: 'string' },
  prefix: { type: 'string' },
} as const;

const formatDelay = (delay: number | 'auto'): string => (delay === 'auto' ? 'auto' : `${delay} ms`);

async function serve(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: serveFlags, strict: true });
  const options = {
    model: stringFlag(values, 'model'),
    name: stringFlag(values, 'name'),
    host: stringFlag(values, 'host'),
    port: intFlag(values, 'port', 0),
    maxBatchSize: intFlag(values, 'max-batch-size', 1),
    maxDelay: delayFlag(values, 'max-delay'),
    latencyTarget: durationFlag(values, 'latency-target', true),
    preferredBatchSizes: listFlag(values, 'preferred-batch-sizes'),
    pad: values.pad === true ? true : undefined,
    queueCap: intFlag(values, 'queue-cap', 1),
    workers: intFlag(values, 'workers', 1),
    threads: intFlag(values, 'threads', 1),
    timeout: durationFlag(values, 'timeout'),
    batchTimeout: durationFlag(values, 'batch-timeout', true),
    bodyLimit: intFlag(values, 'body-limit', 1),
    cacheDir: stringFlag(values, 'cache-dir'),
    redis: stringFlag(values, 'redis'),
    prefix: stringFlag(values, 'prefix'),
  };
  const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
  let server;
  try {
    server = await startServer(defined);
  } catch (error) {
    // Options the batcher rejects (a preferred size above the batch limit...) are usage errors too.
    if (error instanceof TypeError || error instanceof RangeError) throw new UsageError(error.message);
    if (error instanceof MissingPackageError) throw error;
    throw new StartupError(`Cannot start: ${(error as Error).message}`);
  }
  const { name, signature } = server.model;
  const input = signature.inputs[0];
  const width = input?.shape.slice(1).reduce((a, b) => a * (b > 0 ? b : 1), 1) ?? 1;
  const example = JSON.stringify({ inputs: [{ name: input?.name, shape: [1, ...(input?.shape.slice(1).map((d) => (d > 0 ? d : 1)) ?? [])], datatype: input?.datatype, data: Array(width).fill(0.5) }] });
  // Handlers go in before the banner: a supervisor may signal the moment it reads it.
  onShutdownSignals(
    () => server.close(),
    () => server.model.batcher.close({ timeout: 0 }),
  );
  process.stdout.write(
    `batched-fn serving model "${name}" on ${server.url} ` +
      (options.redis === undefined
        ? `(max batch ${options.maxBatchSize ?? SERVE_DEFAULTS.maxBatchSize}, max delay ${formatDelay(options.maxDelay ?? SERVE_DEFAULTS.maxDelay)}, ` +
          `${options.workers ?? SERVE_DEFAULTS.workers} worker(s) x ${options.threads ?? SERVE_DEFAULTS.threads} thread(s))\n`
        : `(batches run by remote workers through Redis)\n`) +
      `Try it:\n  curl -s ${server.url}/v2/models/${name}/infer -H 'content-type: application/json' -d '${example}'\n` +
      `Metrics: ${server.url}/metrics   Stop: Ctrl-C (in-flight requests are answered first)\n`,
  );
}

export async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  try {
    if (command === 'serve') await serve(rest);
    // Commands beyond `serve` load their modules (and autocannon, ioredis) only when run.
    else if (command === 'bench') await (await import('./bench/command.js')).runBench(rest);
    else if (command === 'demo') await (await import('./demo.js')).runDemo(rest);
    else if (command === 'worker') await (await loadOptional('batched-fn worker', REDIS_PACKAGES, () => import('./remote-worker-command.js'))).runRemoteWorker(rest);
    else if (command === undefined || command === 'help' || command === '--help') process.stdout.write(USAGE);
    else throw new UsageError(`Unknown command \`${command}\``);
  } catch (error) {
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`${(error as Error).message}\n\n${USAGE}`);
      process.exit(2);
    }
    if (error instanceof StartupError || error instanceof ModelLoadError || error instanceof MissingPackageError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
}
