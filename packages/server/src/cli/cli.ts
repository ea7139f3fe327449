// First, before any onnxruntime session: see formats/ort-environment.ts.
import '../formats/ort-environment.js';
import { logVerbosity, setLogVerbosity } from '@grpc/grpc-js';
import { UsageError } from './cli-args.js';
import { parseFlags, usageFlags } from './flags.js';
import { SETTING_DEFAULTS } from '../settings/settings.js';
import { ModelLoadError } from '../model/errors.js';
import type { ServedModel } from '../model/served-model.js';
import { type ServeOptions, startServer } from '../server.js';
import { loadOptional, MissingPackageError, REDIS_PACKAGES } from '../optional.js';
import { onShutdownSignals } from './shutdown.js';

/** The server could not start (a missing model file, an address it cannot bind): one line, exit 2. */
class StartupError extends Error {
  override name = 'StartupError';
}

const USAGE = `Usage:
  batched-fn serve ${usageFlags('serve', '                   ')}
  batched-fn worker --redis redis://HOST:PORT
                   ${usageFlags('worker', '                   ', ['redis'])}
  batched-fn bench --url http://127.0.0.1:8000 [--model NAME] [--concurrency 1,8,32,64,128] [--duration 10]
                   [--rows 1] [--compare URL] [--out DIR] [--binary | --grpc [--grpc-url HOST:PORT]]
  batched-fn bench --generate --url http://127.0.0.1:8000 [--model charlm] [--streams 32] [--duration 10]
  batched-fn tune [--model FILE | --model-repository DIR --name NAME] [--latency-budget 100] [--concurrency 1,8,32,64]
                  [--duration 5] [--out tune-out] [--max-candidates 24] [--max-windows 6]
  batched-fn demo [--duration 5] [--concurrency 1,8,32,64,128] [--out bench-out]
`;

const formatDelay = (delay: number | 'auto'): string => (delay === 'auto' ? 'auto' : `${delay} ms`);

async function serve(argv: string[]): Promise<void> {
  // The command reports its own errors, once; grpc-js would also print them to stderr in its own format.
  setLogVerbosity(logVerbosity.NONE);
  const { noGrpc, ...flags } = parseFlags('serve', argv) as ServeOptions & { noGrpc?: boolean };
  if (noGrpc === true && flags.grpcPort !== undefined) throw new UsageError('Give --grpc-port or --no-grpc, not both');
  // As Triton: explicit model control starts with no model loaded unless --load-model names it.
  if (flags.modelControl === 'explicit' && flags.loadModel === undefined) flags.loadModel = [];
  const options: ServeOptions =
    noGrpc === true ? flags : { ...flags, grpcPort: flags.grpcPort ?? SETTING_DEFAULTS.grpcPort };
  let server;
  try {
    server = await startServer(options);
  } catch (error) {
    // Options the batcher rejects (a preferred size above the batch limit...) are usage errors too.
    if (error instanceof TypeError || error instanceof RangeError) throw new UsageError(error.message);
    if (error instanceof MissingPackageError) throw error;
    throw new StartupError(`Cannot start: ${(error as Error).message}`);
  }
  const running = server;
  // Handlers go in before the banner: a supervisor may signal the moment it reads it.
  onShutdownSignals(
    () => running.close(),
    async () => {
      await Promise.all(running.registry.ready().map((model) => model.batcher.close({ timeout: 0 })));
    },
  );
  const entries = running.registry.entries();
  const unavailable = entries.filter((entry) => entry.state !== 'READY');
  const first = running.registry.ready()[0];
  process.stdout.write(
    `batched-fn serving ${entries.length === 0 ? 'no model yet (load them with POST /v2/repository/models/NAME/load)' : entries.length === 1 ? `model "${entries[0]?.name}"` : `${entries.length} models (${entries.map((e) => e.name).join(', ')})`} on ${running.url} ` +
      (options.redis === undefined
        ? `(max batch ${options.maxBatchSize ?? SETTING_DEFAULTS.maxBatchSize}, max delay ${formatDelay(options.maxDelay ?? SETTING_DEFAULTS.maxDelay)}, ` +
          `${options.workers ?? SETTING_DEFAULTS.workers} worker(s) x ${options.threads ?? SETTING_DEFAULTS.threads} thread(s))\n`
        : `(batches run by remote workers through Redis)\n`) +
      unavailable.map((entry) => `  model "${entry.name}" is ${entry.state}: ${entry.reason}\n`).join('') +
      (first === undefined
        ? ''
        : `Try it:\n  curl -s ${running.url}/v2/models/${first.name}/infer -H 'content-type: application/json' -d '${exampleBody(first)}'\n`) +
      (running.grpcUrl === undefined ? '' : `gRPC: ${running.grpcUrl} (inference.GRPCInferenceService)\n`) +
      `Metrics: ${running.url}/metrics   Stop: Ctrl-C (in-flight requests are answered first)\n`,
  );
}

/** A request the model accepts, all values 0.5, for the banner's curl line. */
function exampleBody(model: ServedModel): string {
  const input = model.signature.inputs[0];
  // One row of a model that batches; the whole declared shape of one that does not (maxBatchSize 0).
  const shape = (model.maxBatchSize === 0 ? (input?.shape ?? []) : [1, ...(input?.shape.slice(1) ?? [])]).map((d) =>
    d > 0 ? d : 1,
  );
  return JSON.stringify({
    inputs: [
      { name: input?.name, shape, datatype: input?.datatype, data: Array(shape.reduce((a, b) => a * b, 1)).fill(0.5) },
    ],
  });
}

export async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  try {
    if (command === 'serve') await serve(rest);
    // Commands beyond `serve` load their modules (and autocannon, ioredis) only when run.
    else if (command === 'bench') await (await import('./bench/command.js')).runBench(rest);
    else if (command === 'tune') await (await import('./tune/command.js')).runTune(rest);
    else if (command === 'demo') await (await import('./demo.js')).runDemo(rest);
    else if (command === 'worker')
      await (
        await loadOptional('batched-fn worker', REDIS_PACKAGES, () => import('./remote-worker-command.js'))
      ).runRemoteWorker(rest);
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
