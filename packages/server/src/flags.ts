import { parseArgs, type ParseArgsConfig } from 'node:util';
import { delayFlag, durationFlag, intFlag, listFlag, stringFlag, UsageError } from './cli-args.js';

/**
 * Every flag of `batched-fn serve` and `batched-fn worker`, declared once:
 * its option name, how it is parsed and checked, its default, and its README
 * row. The parser, the usage text, the defaults the library functions use
 * and (by a test) the README's flag table come from here.
 */
type Kind = 'string' | 'strings' | 'control' | 'batching' | 'onoff' | 'int0' | 'int1' | 'duration' | 'positive-duration' | 'delay' | 'list' | 'boolean' | 'shm';
type Command = 'serve' | 'worker';

interface FlagSpec {
  /** The option's name in ServeOptions (camelCase). */
  readonly key: string;
  readonly kind: Kind;
  /** What the flag takes, for usage and README (`N`, `MS`, `FILE`...); empty for a switch. */
  readonly arg: string;
  readonly default?: unknown;
  /** The README's Default and Meaning columns; a flag without `meaning` is not in the serve table. */
  readonly shown: string;
  readonly meaning?: string;
  readonly commands: readonly Command[];
  /** Largest value an `int1` flag (and its config.json key) accepts: past it a model could not be built. */
  readonly max?: number;
}

const BOTH: readonly Command[] = ['serve', 'worker'];

export const FLAGS = {
  model: { key: 'model', kind: 'strings', arg: 'FILE', shown: 'generated MLP', meaning: 'ONNX model to serve; repeat it to serve several (each named after its file)', commands: ['serve'] },
  'model-repository': {
    key: 'modelRepository',
    kind: 'string',
    arg: 'DIR',
    shown: 'none',
    meaning: "serve every model folder of DIR: ours (`<name>/model.onnx`, optional `config.json`) or Triton's (`<name>/config.pbtxt`, version folders `<name>/<n>/model.onnx`); the flags here are their defaults",
    commands: ['serve'],
  },
  'model-control': { key: 'modelControl', kind: 'control', arg: 'none\\|explicit', default: 'none', shown: '`none`', meaning: '`none` loads every model at start; `explicit` loads only those `--load-model` names, and enables `POST /v2/repository/models/{name}/load` and `/unload`', commands: ['serve'] },
  'load-model': { key: 'loadModel', kind: 'strings', arg: 'NAME', shown: 'none', meaning: "with `--model-control explicit`, a model to load at start; repeat it for several, `'*'` loads them all (as Triton's `--load-model`)", commands: ['serve'] },
  'worker-model': { key: 'model', kind: 'string', arg: 'FILE', shown: 'generated MLP', commands: ['worker'] },
  name: { key: 'name', kind: 'string', arg: 'NAME', shown: "`mlp`, or the file's name", meaning: 'model name in the URLs', commands: BOTH },
  host: { key: 'host', kind: 'string', arg: 'HOST', default: '127.0.0.1', shown: '`127.0.0.1`', meaning: 'address to listen on', commands: ['serve'] },
  port: { key: 'port', kind: 'int0', arg: 'PORT', default: 8000, shown: '`8000`', meaning: 'port to listen on (`0` picks a free port)', commands: ['serve'] },
  'grpc-port': { key: 'grpcPort', kind: 'int0', arg: 'PORT', default: 8001, shown: '`8001`', meaning: 'port of the gRPC face (`0` picks a free port); the banner prints `grpc://HOST:PORT`', commands: ['serve'] },
  'no-grpc': { key: 'noGrpc', kind: 'boolean', arg: '', shown: 'off', meaning: 'serve REST only', commands: ['serve'] },
  'grpc-max-streams': {
    key: 'grpcMaxStreams',
    kind: 'int1',
    arg: 'N',
    default: 100,
    shown: '`100`',
    meaning: "most concurrent gRPC calls on one connection (HTTP/2's `SETTINGS_MAX_CONCURRENT_STREAMS`; clients queue beyond it); 100 is HTTP/2's recommended floor. Also the most unanswered requests on one `ModelStreamInfer` stream (the stream is not read beyond it)",
    commands: ['serve'],
  },
  'grpc-receive-timeout': { key: 'grpcReceiveTimeout', kind: 'positive-duration', arg: 'MS', default: 30_000, shown: '`30000`', meaning: 'longest a gRPC call may take to send its request after its headers (on a `ModelStreamInfer` stream: each message, from its first byte); then DEADLINE_EXCEEDED and its stream is freed', commands: ['serve'] },
  'grpc-restricted-protocol': {
    key: 'grpcRestrictedProtocol',
    kind: 'strings',
    arg: 'PROTOCOLS:KEY=VALUE',
    shown: 'none',
    meaning:
      "Triton's: the comma-separated protocol groups (`health`, `metadata`, `inference`, `shared-memory`, `model-config`, `model-repository`, `statistics`, `trace`, `logging`) answer only calls with metadata `triton-grpc-protocol-KEY: VALUE`, others UNAVAILABLE; repeat it for groups with another key",
    commands: ['serve'],
  },
  otel: { key: 'otel', kind: 'boolean', arg: '', shown: 'off', meaning: 'export OpenTelemetry traces over OTLP/HTTP, set up by the standard `OTEL_EXPORTER_OTLP_*` variables (`http/protobuf` or `http/json`) and `OTEL_BSP_SCHEDULE_DELAY`', commands: BOTH },
  dashboard: { key: 'dashboard', kind: 'onoff', arg: 'on\\|off', default: 'on', shown: '`on`', meaning: 'the live dashboard at `/dashboard` (read-only)', commands: ['serve'] },
  'max-batch-size': { key: 'maxBatchSize', kind: 'int1', arg: 'N', default: 64, max: 1_048_576, shown: '`64`', meaning: 'most rows per `session.run`, at most 1048576; with `--pad`, one input padded to N rows must also fit one buffer (4 GiB)', commands: BOTH },
  'max-delay': {
    key: 'maxDelay',
    kind: 'delay',
    arg: 'MS\\|auto',
    default: 'auto',
    shown: '`auto`',
    meaning:
      "batching window, from the oldest queued request's arrival; `auto` adapts it to load (on the default model it served a lone client at 250 req/s, p50 3 ms, where a fixed 2 ms window managed 153 req/s, p50 6 ms, and matched it under load)",
    commands: BOTH,
  },
  'latency-target': { key: 'latencyTarget', kind: 'positive-duration', arg: 'MS', shown: 'none', meaning: "latency objective: caps `auto`'s wait, sheds requests predicted to miss it (504)", commands: ['serve'] },
  'preferred-batch-sizes': { key: 'preferredBatchSizes', kind: 'list', arg: 'N,N', shown: 'none', meaning: 'sizes sent as soon as the queue can fill them', commands: ['serve'] },
  pad: { key: 'pad', kind: 'boolean', arg: '', shown: 'off', meaning: 'pad batches with zero rows up to the next preferred size, for fixed-shape models', commands: ['serve'] },
  'queue-cap': { key: 'queueCap', kind: 'int1', arg: 'N', default: 1024, shown: '`1024`', meaning: 'most requests waiting; beyond it, 503', commands: ['serve'] },
  workers: { key: 'workers', kind: 'int1', arg: 'N', default: 1, max: 256, shown: '`1`', meaning: 'worker threads, one session each (at most 256)', commands: BOTH },
  threads: { key: 'threads', kind: 'int1', arg: 'N', default: 2, max: 256, shown: '`2`', meaning: 'ONNX Runtime intra-op threads per session (at most 256)', commands: BOTH },
  timeout: { key: 'timeout', kind: 'duration', arg: 'MS', shown: 'none', meaning: 'default per-request deadline', commands: ['serve'] },
  'batch-timeout': { key: 'batchTimeout', kind: 'positive-duration', arg: 'MS', shown: 'none', meaning: 'longest a batch may run; its callers then get 500 and its worker is replaced', commands: BOTH },
  'max-active': { key: 'maxActive', kind: 'int1', arg: 'N', default: 16, shown: '`16`', meaning: "charlm's most sequences per decode step", commands: ['serve'] },
  'prefill-chunk': { key: 'prefillChunk', kind: 'int1', arg: 'N', default: 8, max: 1_000, shown: '`8`', meaning: "charlm's most prompt characters fed to a sequence per decode step (chunked prefill): a step costs at most N model runs however many long prompts join (at most 1000, the longest prompt)", commands: ['serve'] },
  batching: { key: 'batching', kind: 'batching', arg: 'continuous\\|static', default: 'continuous', shown: '`continuous`', meaning: "charlm's batching: re-formed at every step, or a group run to its longest sequence", commands: ['serve'] },
  // 64 MiB holds a batch of 64 x 3 x 224 x 224 FP32 images (38.5 MB raw), as Triton's default does.
  'body-limit': {
    key: 'bodyLimit',
    kind: 'int1',
    arg: 'BYTES',
    default: 64 * 1024 * 1024,
    shown: '64 MiB',
    meaning:
      'largest request body on REST (after inflating a gzip or deflate one) and largest gRPC message; beyond it, 413 (gRPC: RESOURCE_EXHAUSTED). A larger REST body is read and discarded up to twice the limit (at least 1 MiB more), so a client that sends it whole reads the 413; then the connection is closed',
    commands: ['serve'],
  },
  cors: { key: 'cors', kind: 'strings', arg: 'ORIGIN', shown: 'none', meaning: 'let pages of ORIGIN (`https://app.example.com`) call the REST API: CORS answers and preflights; repeat it for several. Other cross-site browser requests (an `Origin` not the server\'s own, or `Sec-Fetch-Site: cross-site`) other than GET and HEAD are 403', commands: ['serve'] },
  'http-restricted-api': {
    key: 'httpRestrictedApi',
    kind: 'strings',
    arg: 'APIS:KEY=VALUE',
    shown: 'none',
    meaning:
      "Triton's: the comma-separated API groups (`health`, `metadata`, `inference`, `shared-memory`, `model-config`, `model-repository`, `statistics`, `trace`, `logging`) answer only requests with header `KEY: VALUE`, others 403; repeat it for groups with another key",
    commands: ['serve'],
  },
  'max-bytes-elements': { key: 'maxBytesElements', kind: 'int1', arg: 'N', default: 1_048_576, shown: '`1048576`', meaning: 'most BYTES elements (strings) one request may hold, counted before parsing: JSON strings, gRPC `bytes_contents` elements (64 rows of 16,384 strings; each costs an object, so 20 M empty strings in a 64 MiB body would cost seconds and gigabytes); beyond it, 400 (gRPC: INVALID_ARGUMENT)', commands: ['serve'] },
  'max-tensors': { key: 'maxTensors', kind: 'int1', arg: 'N', default: 1024, shown: '`1024`', meaning: 'most `inputs`, and most `outputs`, in one inference request, counted before the body is parsed; beyond it, 400 (gRPC: INVALID_ARGUMENT)', commands: ['serve'] },
  'max-objects': { key: 'maxObjects', kind: 'int1', arg: 'N', default: 65_536, shown: '`65536`', meaning: 'most of each kind of thing one request may make the parser build, counted before parsing: JSON objects, arrays and object members, each kind; in a gRPC ModelInferRequest, messages, map entries and shape dimensions, and apart from them typed INT64/UINT64 elements (each decoded into a string); in any other gRPC request, fields. Beyond it, 400 (gRPC: INVALID_ARGUMENT)', commands: ['serve'] },
  'shared-memory': {
    key: 'sharedMemory',
    kind: 'shm',
    arg: 'off\\|system',
    default: 'off',
    shown: '`off`',
    meaning:
      "`system` serves Triton's system shared-memory extension on REST and gRPC (regions of POSIX shared-memory objects, Linux's `/dev/shm`): inputs read from registered regions, outputs written into them. Off by default, as in Triton (its `--allow-client-shm`): a client that may register a region can read and write, through a model, any `/dev/shm` object the server's user can open; enable it for trusted clients only (loopback, or the `shared-memory` group of the restricted-API flags)",
    commands: ['serve'],
  },
  'shared-memory-regions': { key: 'sharedMemoryRegions', kind: 'int1', arg: 'N', default: 64, shown: '`64`', meaning: 'most system shared-memory regions registered at once; beyond it, 400 (gRPC: RESOURCE_EXHAUSTED)', commands: ['serve'] },
  'cache-dir': { key: 'cacheDir', kind: 'string', arg: 'DIR', shown: '`~/.cache/batched-fn`', commands: BOTH },
  redis: { key: 'redis', kind: 'string', arg: 'redis://HOST:PORT', shown: 'none', commands: BOTH },
  // Their defaults belong to @batched-fn/redis (`bfn`, 30000 ms); the CLI passes them on only when given.
  prefix: { key: 'prefix', kind: 'string', arg: 'PREFIX', shown: '`bfn`', commands: BOTH },
  'claim-idle': { key: 'claimIdleMs', kind: 'positive-duration', arg: 'MS', shown: '`30000`', commands: ['worker'] },
} as const satisfies Record<string, FlagSpec>;

type FlagName = keyof typeof FLAGS;

/** `worker-model` is `--model` of the worker command (one file there); every other flag is its own name. */
const cliName = (flag: string): string => (flag === 'worker-model' ? 'model' : flag);

/** The defaults the CLI and the library functions share: the single place they live. */
export const FLAG_DEFAULTS = Object.freeze({
  host: FLAGS.host.default,
  port: FLAGS.port.default,
  grpcPort: FLAGS['grpc-port'].default,
  dashboard: FLAGS.dashboard.default,
  maxBatchSize: FLAGS['max-batch-size'].default,
  maxDelay: FLAGS['max-delay'].default as number | 'auto',
  channelCap: FLAGS['queue-cap'].default,
  workers: FLAGS.workers.default,
  threads: FLAGS.threads.default,
  bodyLimit: FLAGS['body-limit'].default,
  maxTensors: FLAGS['max-tensors'].default,
  maxBytesElements: FLAGS['max-bytes-elements'].default,
  maxObjects: FLAGS['max-objects'].default,
  sharedMemory: FLAGS['shared-memory'].default as 'off' | 'system',
  sharedMemoryRegions: FLAGS['shared-memory-regions'].default,
  grpcMaxStreams: FLAGS['grpc-max-streams'].default,
  grpcReceiveTimeout: FLAGS['grpc-receive-timeout'].default,
});

const flagsOf = (command: Command): [FlagName, FlagSpec][] => (Object.entries(FLAGS) as [FlagName, FlagSpec][]).filter(([, spec]) => spec.commands.includes(command));

function parseOne(values: Record<string, unknown>, flag: string, kind: Kind): unknown {
  switch (kind) {
    case 'string':
      return stringFlag(values, flag);
    case 'strings': {
      const list = values[flag] as string[] | undefined;
      return list === undefined || list.length === 0 ? undefined : list.length === 1 ? list[0] : list;
    }
    case 'batching': {
      const value = stringFlag(values, flag);
      if (value !== undefined && value !== 'continuous' && value !== 'static') throw new UsageError(`--${flag} must be continuous or static, got ${JSON.stringify(value)}`);
      return value;
    }
    case 'onoff': {
      const value = stringFlag(values, flag);
      if (value !== undefined && value !== 'on' && value !== 'off') throw new UsageError(`--${flag} must be on or off, got ${JSON.stringify(value)}`);
      return value;
    }
    case 'shm': {
      const value = stringFlag(values, flag);
      if (value !== undefined && value !== 'off' && value !== 'system') throw new UsageError(`--${flag} must be off or system, got ${JSON.stringify(value)}`);
      return value;
    }
    case 'control': {
      const value = stringFlag(values, flag);
      if (value !== undefined && value !== 'none' && value !== 'explicit') throw new UsageError(`--${flag} must be none or explicit, got ${JSON.stringify(value)}`);
      return value;
    }
    case 'int0':
      return intFlag(values, flag, 0);
    case 'int1':
      return intFlag(values, flag, 1);
    case 'duration':
      return durationFlag(values, flag);
    case 'positive-duration':
      return durationFlag(values, flag, true);
    case 'delay':
      return delayFlag(values, flag);
    case 'list':
      return listFlag(values, flag);
    case 'boolean':
      return values[flag] === true ? true : undefined;
  }
}

/** Parses and checks a command's flags into its options (camelCase); absent flags are left out. Usage errors throw. */
export function parseFlags(command: Command, argv: string[]): Record<string, unknown> {
  const specs = flagsOf(command);
  const options: ParseArgsConfig['options'] = Object.fromEntries(
    specs.map(([flag, spec]) => [cliName(flag), { type: spec.kind === 'boolean' ? ('boolean' as const) : ('string' as const), ...(spec.kind === 'strings' ? { multiple: true } : {}) }]),
  );
  const { values } = parseArgs({ args: argv, options, strict: true });
  const parsed: Record<string, unknown> = {};
  for (const [flag, spec] of specs) {
    const value = parseOne(values, cliName(flag), spec.kind);
    if (typeof value === 'number' && spec.max !== undefined && value > spec.max) throw new UsageError(`--${cliName(flag)} must be at most ${spec.max}, got ${JSON.stringify(values[cliName(flag)])}`);
    if (value !== undefined) parsed[spec.key] = value;
  }
  return parsed;
}

/** The command's flags for the usage text, wrapped to the width of a terminal. */
export function usageFlags(command: Command, indent: string, shownAlready: readonly string[] = []): string {
  const words = flagsOf(command).filter(([flag]) => !shownAlready.includes(flag)).map(([flag, spec]) => `[--${cliName(flag)}${spec.arg === '' ? '' : ` ${spec.arg.replace('\\|', '|')}`}]`);
  const lines: string[] = [];
  let line = '';
  for (const word of words) {
    if (line.length + word.length > 100 - indent.length) {
      lines.push(line.trimEnd());
      line = '';
    }
    line += `${word} `;
  }
  lines.push(line.trimEnd());
  return lines.join(`\n${indent}`);
}

/** The README's `serve` flag table rows, from the flags that carry a meaning. */
export function readmeRows(): string[] {
  return flagsOf('serve')
    .filter(([, spec]) => spec.meaning !== undefined)
    .map(([flag, spec]) => `| \`--${flag}${spec.arg === '' ? '' : ` ${spec.arg}`}\` | ${spec.shown} | ${spec.meaning} |`);
}
