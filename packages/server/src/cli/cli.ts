// First, before any onnxruntime session: see formats/ort-environment.ts.
import '../formats/ort-environment.js';
import { logVerbosity, setLogVerbosity } from '@grpc/grpc-js';
import { UsageError } from './cli-args.js';
import { parseFlags } from './flags.js';
import { COMMANDS, commandHelp, HELP_HINT, isCommand, overviewHelp, rowsOf, usage, version } from './help.js';
import { nameVariables, withEnvFlags } from './env-flags.js';
import { didYouMean } from './suggest.js';
import { SETTING_DEFAULTS } from '../settings/settings.js';
import { ModelLoadError } from '../model/errors.js';
import { type ServeOptions, startServer } from '../server.js';
import { loadOptional, MissingPackageError, REDIS_PACKAGES } from '../optional.js';
import { onShutdownSignals } from './shutdown.js';
import { banner } from './banner.js';

/** The server could not start (a missing model file, an address it cannot bind): one line, exit 2. */
class StartupError extends Error {
  override name = 'StartupError';
}

async function serve(argv: string[]): Promise<void> {
  // The command reports its own errors, once; grpc-js would also print them to stderr in its own format.
  setLogVerbosity(logVerbosity.NONE);
  const { noGrpc, ...flags } = parseFlags('serve', argv) as ServeOptions & { noGrpc?: boolean };
  if (noGrpc === true && flags.grpcPort !== undefined) throw new UsageError('Give --grpc-port or --no-grpc, not both');
  // As Triton: explicit model control starts with no model loaded unless --load-model names it.
  if (flags.modelControl === 'explicit' && flags.loadModel === undefined) flags.loadModel = [];
  const options: ServeOptions =
    noGrpc === true ? flags : { ...flags, grpcPort: flags.grpcPort ?? SETTING_DEFAULTS.grpcPort };
  let server: Awaited<ReturnType<typeof startServer>>;
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
  process.stdout.write(
    banner({
      url: running.url,
      grpcUrl: running.grpcUrl,
      entries: running.registry.entries(),
      ready: running.registry.ready(),
      remote: options.redis !== undefined,
      dashboard: (options.dashboard ?? SETTING_DEFAULTS.dashboard) === 'on',
    }),
  );
}

export async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  // The flags that came from BATCHED_FN_ variables: an error about one names the variable.
  let fromEnv: ReadonlyMap<string, string> = new Map();
  try {
    if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
      const topic = rest[0];
      process.stdout.write(topic !== undefined && isCommand(topic) ? commandHelp(topic) : overviewHelp());
      return;
    }
    if (command === '--version' || command === 'version') {
      process.stdout.write(`${version()}\n`);
      return;
    }
    if (!isCommand(command))
      throw new UsageError(`Unknown command \`${command}\`.${didYouMean(command, Object.keys(COMMANDS))}`);
    if (wantsHelp(rest)) {
      process.stdout.write(commandHelp(command));
      return;
    }
    const withEnv = withEnvFlags(rowsOf(command), rest);
    fromEnv = withEnv.fromEnv;
    const args = withEnv.argv;
    if (command === 'serve') await serve(args);
    // Commands beyond `serve` load their modules (and autocannon, ioredis) only when run.
    else if (command === 'bench') await (await import('./bench/command.js')).runBench(args);
    else if (command === 'tune') await (await import('./tune/command.js')).runTune(args);
    else if (command === 'demo') await (await import('./demo.js')).runDemo(args);
    else
      await (
        await loadOptional('batched-fn worker', REDIS_PACKAGES, () => import('./remote-worker-command.js'))
      ).runRemoteWorker(args);
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (error instanceof UsageError || code?.startsWith('ERR_PARSE_ARGS')) {
      let message = (error as Error).message;
      const unknown = /^Unknown option '(--?[^'=]+)'/.exec(message)?.[1];
      if (
        code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' &&
        unknown !== undefined &&
        command !== undefined &&
        isCommand(command)
      )
        message = `Unknown option '${unknown}'.${didYouMean(
          unknown,
          rowsOf(command).map((row) => `--${row.flag}`),
        )}`;
      const named = nameVariables(message, fromEnv);
      // A bad variable is one line: the usage shows flags, not what the environment holds.
      const known = command !== undefined && isCommand(command) ? command : undefined;
      process.stderr.write(
        named !== message || message.startsWith('BATCHED_FN_')
          ? `${named}\n`
          : `${message}\n\n${usage(known)}\n${HELP_HINT}`,
      );
      process.exit(2);
    }
    if (error instanceof StartupError || error instanceof ModelLoadError || error instanceof MissingPackageError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
}

/** `--help` or `-h` among a command's flags (before a `--`). */
function wantsHelp(args: readonly string[]): boolean {
  const end = args.indexOf('--');
  return (end === -1 ? args : args.slice(0, end)).some((word) => word === '--help' || word === '-h');
}
