import { availableParallelism } from 'node:os';
import { expectDuration, expectInteger, OPTION_SCHEMA, type OptionName } from 'batched-fn/adapter';

/**
 * An ONNX model's intra-op threads per session by default: one per core this process may use, in one
 * session (`workers` 1). Measured on 2 cores (the default MLP, REST binary, 64 clients from wrk, the
 * machine otherwise quiet; docs/benchmarks.md): one session of 2 threads served 0.58x the model's
 * own ceiling, two sessions of one thread 0.38x and one session of one thread 0.39x, in the same run.
 * Never more threads than cores: ONNX Runtime splits each operator among its threads and waits for
 * the last, so a thread preempted by the HTTP thread or another session stalls the whole run. (Under
 * load from other processes the order flips, two one-thread sessions ahead; `batched-fn tune`
 * measures the splits on the machine at hand.)
 */
export function defaultThreads(cores: number): number {
  return Math.min(MOST_THREADS, Math.max(1, Math.floor(cores)));
}

/** The most intra-op threads a session may have (ONNX Runtime starts them all while it builds the session). */
const MOST_THREADS = 256;

/**
 * Every setting of the server, declared once: its name, its default, its rule and its README row.
 *
 * One name everywhere: the key here is the option of `startServer` (ServeOptions), the key of a
 * model's config.json, and in kebab-case the CLI's flag (`maxBatchSize`, `--max-batch-size`). A
 * setting that is one of the core's batching options (`core`) has the core's name, and its rule is
 * the core's row (batched-fn's OPTION_SCHEMA, read through `batched-fn/adapter`): its check is the
 * core's own, with a bound of the server's where serving needs one. Its default is the core's too,
 * unless serving wants another; those few say why beside them.
 *
 * The CLI's flags (cli/flags.ts: how each is parsed, for which command), config.json's keys
 * (repository/config-file.ts), the library's defaults (SETTING_DEFAULTS below; every `?? default`
 * in the server reads it) and, by a test, the README's flag table come from here.
 */
export interface SettingSpec {
  /** The core batching option this setting is: the name, rule and check are the core's. */
  readonly core?: OptionName;
  /** The value used when the setting is not given; absent: none (or the owner's, as for `prefix`). */
  readonly default?: unknown;
  /** The largest value of an integer setting, where the server holds it below the core's rule. */
  readonly max?: number;
  /** The README's Default column, where the default alone does not say it (`64 MiB`, `off`). */
  readonly shown?: string;
  /** The README's Meaning column; a setting without it is not in the serve table. */
  readonly doc?: string;
}

export const SETTINGS = {
  model: { shown: 'generated MLP', doc: 'ONNX model to serve; repeat it to serve several (each named after its file)' },
  modelRepository: {
    doc:
      "serve every model folder of DIR: ours (`<name>/model.onnx`, optional `config.json`) or Triton's " +
      '(`<name>/config.pbtxt`, version folders `<name>/<n>/model.onnx`); the flags here are their ' +
      'defaults',
  },
  modelControl: {
    default: 'none' as 'none' | 'explicit',
    doc:
      '`none` loads every model at start; `explicit` loads only those `--load-model` names, and enables ' +
      '`POST /v2/repository/models/{name}/load` and `/unload`',
  },
  loadModel: {
    doc:
      "with `--model-control explicit`, a model to load at start; repeat it for several, `'*'` loads them all " +
      "(as Triton's `--load-model`)",
  },
  name: { shown: "`mlp`, or the file's name", doc: 'model name in the URLs' },
  host: { default: '127.0.0.1', doc: 'address to listen on' },
  port: { default: 8000, doc: 'port to listen on (`0` picks a free port)' },
  grpcPort: {
    default: 8001,
    doc: 'port of the gRPC face (`0` picks a free port); the banner prints `grpc://HOST:PORT`',
  },
  noGrpc: { shown: 'off', doc: 'serve REST only' },
  grpcMaxStreams: {
    default: 100,
    doc:
      "most concurrent gRPC calls on one connection (HTTP/2's `SETTINGS_MAX_CONCURRENT_STREAMS`; " +
      "clients queue beyond it); 100 is HTTP/2's recommended floor. Also the most unanswered requests " +
      'on one `ModelStreamInfer` stream (the stream is not read beyond it)',
  },
  grpcReceiveTimeout: {
    default: 30_000,
    doc:
      'longest a gRPC call may take to send its request after its headers (on a `ModelStreamInfer` ' +
      'stream: each message, from its first byte); then DEADLINE_EXCEEDED and its stream is freed',
  },
  grpcRestrictedProtocol: {
    doc:
      "Triton's: the comma-separated protocol groups (`health`, `metadata`, `inference`, " +
      '`shared-memory`, `model-config`, `model-repository`, `statistics`, `trace`, `logging`) answer ' +
      'only calls with metadata `triton-grpc-protocol-KEY: VALUE`, others UNAVAILABLE; repeat it for ' +
      'groups with another key',
  },
  otel: {
    shown: 'off',
    doc:
      'export OpenTelemetry traces over OTLP/HTTP, set up by the standard `OTEL_EXPORTER_OTLP_*` ' +
      'variables (`http/protobuf` or `http/json`) and `OTEL_BSP_SCHEDULE_DELAY`',
  },
  dashboard: { default: 'on' as 'on' | 'off', doc: 'the live dashboard at `/dashboard` (read-only)' },
  openai: {
    default: 'on' as 'on' | 'off',
    doc:
      "OpenAI's API for the generator models: `/v1/models`, `/v1/completions`, `/v1/chat/completions` " +
      '(streamed or not), for `openai` clients pointed at `http://HOST:PORT/v1`',
  },
  // 64, not the core's 8: a served batch is one session.run, whose fixed cost a larger batch shares.
  maxBatchSize: {
    core: 'maxBatchSize',
    default: 64,
    max: 1_048_576,
    doc:
      'most rows per `session.run`, at most 1048576; with `--pad`, one input padded to N rows must also ' +
      'fit one buffer (4 GiB)',
  },
  // 'auto', not the core's 50 ms: measured on the default model, it served a lone client at 250 req/s
  // (p50 3 ms) where a fixed 2 ms window managed 153 (p50 6 ms); under a closed loop of 64 clients it waits
  // for the callers on their way back (session 13), and served 0.57-0.66x ORT alone against 0.34-0.62x for 5 ms.
  maxDelay: {
    core: 'maxDelay',
    default: 'auto' as number | 'auto',
    doc:
      "batching window, from the oldest queued request's arrival; `auto` adapts it to load (on the " +
      'default model it served a lone client at 250 req/s, p50 3 ms, where a fixed 2 ms window managed ' +
      '153 req/s, p50 6 ms; under the load of 64 clients it forms full batches and served it as much as ' +
      'a fixed 5 ms window or more: see docs/benchmarks.md, Session 13)',
  },
  latencyTarget: {
    core: 'latencyTarget',
    doc: "latency objective: caps `auto`'s wait, sheds requests predicted to miss it (504)",
  },
  preferredBatchSizes: { core: 'preferredBatchSizes', doc: 'sizes sent as soon as the queue can fill them' },
  pad: { shown: 'off', doc: 'pad batches with zero rows up to the next preferred size, for fixed-shape models' },
  // 1024, not the core's Infinity: a server facing the network answers 503 rather than queue without end.
  channelCap: {
    core: 'channelCap',
    default: 1024,
    doc: 'most requests waiting; beyond it, 503 (`--queue-cap`, its old name, still works and warns)',
  },
  workers: {
    core: 'workers',
    default: OPTION_SCHEMA.workers.default,
    max: 256,
    doc: 'worker threads, one session each (at most 256)',
  },
  // One per core, from os.availableParallelism() when the server starts: defaultThreads says why.
  threads: {
    default: defaultThreads(availableParallelism()),
    max: MOST_THREADS,
    shown: 'the cores (`2` on 2)',
    doc:
      'ONNX Runtime intra-op threads per session (at most 256); by default one per core the process may ' +
      'use, which served the default model best on 2 cores (one session of 2 threads: 1.5x two sessions ' +
      'of one)',
  },
  timeout: { doc: 'default per-request deadline' },
  batchTimeout: {
    core: 'batchTimeout',
    doc: 'longest a batch may run; its callers then get 500 and its worker is replaced',
  },
  maxActive: {
    default: 16,
    max: 4096,
    doc: "a generator's most sequences per decode step (its config.json's `maxActive` overrides it)",
  },
  prefillChunk: {
    default: 8,
    max: 1_000,
    doc:
      "charlm's most prompt characters fed to a sequence per decode step (chunked prefill): a step " +
      'costs at most N model runs however many long prompts join (at most 1000, the longest prompt)',
  },
  batching: {
    default: 'continuous' as 'continuous' | 'static',
    doc:
      "a generator's batching: re-formed at every step, or a group run to its longest sequence (its " +
      "config.json's `batching` overrides it)",
  },
  /**
   * config.json alone: the most tokens one generation request may ask for (a request asking more is a
   * 400), and how many it gets when it asks none. Applied by the server (protocol/generation.ts).
   */
  maxTokens: { default: 4096, max: 1_048_576 },
  /**
   * config.json alone: a sequence model's most live sequences (formats/sequence-table.ts); a start
   * beyond it is a 503 with Retry-After. Each holds a state in a worker until it ends or idles out.
   */
  maxSequences: { default: 1024, max: 1_048_576 },
  defaultMaxTokens: { default: 64, max: 1_048_576 },
  // 64 MiB holds a batch of 64 x 3 x 224 x 224 FP32 images (38.5 MB raw), as Triton's default does.
  bodyLimit: {
    default: 64 * 1024 * 1024,
    shown: '64 MiB',
    doc:
      'largest request body on REST (after inflating a gzip or deflate one) and largest gRPC message; ' +
      'beyond it, 413 (gRPC: RESOURCE_EXHAUSTED). A larger REST body is read and discarded up to twice ' +
      'the limit (at least 1 MiB more), so a client that sends it whole reads the 413; then the ' +
      'connection is closed',
  },
  cors: {
    doc:
      'let pages of ORIGIN (`https://app.example.com`) call the REST API: CORS answers and preflights; ' +
      "repeat it for several. Other cross-site browser requests (an `Origin` not the server's own, or " +
      '`Sec-Fetch-Site: cross-site`) other than GET and HEAD are 403',
  },
  httpRestrictedApi: {
    doc:
      "Triton's: the comma-separated API groups (`health`, `metadata`, `inference`, `shared-memory`, " +
      '`model-config`, `model-repository`, `statistics`, `trace`, `logging`) answer only requests with ' +
      'header `KEY: VALUE`, others 403; repeat it for groups with another key',
  },
  maxBytesElements: {
    default: 1_048_576,
    doc:
      'most BYTES elements (strings) one request may hold, counted before parsing: JSON strings, gRPC ' +
      '`bytes_contents` elements (64 rows of 16,384 strings; each costs an object, so 20 M empty ' +
      'strings in a 64 MiB body would cost seconds and gigabytes); beyond it, 400 (gRPC: ' +
      'INVALID_ARGUMENT)',
  },
  maxTensors: {
    default: 1024,
    doc:
      'most `inputs`, and most `outputs`, in one inference request, counted before the body is parsed; ' +
      'beyond it, 400 (gRPC: INVALID_ARGUMENT)',
  },
  maxObjects: {
    default: 65_536,
    doc:
      'most of each kind of thing one request may make the parser build, counted before parsing: JSON ' +
      'objects, arrays and object members, each kind; in a gRPC ModelInferRequest, messages, map ' +
      'entries and shape dimensions, and apart from them typed INT64/UINT64 elements (each decoded into ' +
      'a string); in any other gRPC request, fields. Beyond it, 400 (gRPC: INVALID_ARGUMENT)',
  },
  sharedMemory: {
    default: 'off' as 'off' | 'system',
    doc:
      "`system` serves Triton's system shared-memory extension on REST and gRPC (regions of POSIX " +
      "shared-memory objects, Linux's `/dev/shm`): inputs read from registered regions, outputs written " +
      'into them. Off by default, as in Triton (its `--allow-client-shm`): a client that may register a ' +
      "region can read and write, through a model, any `/dev/shm` object the server's user can open; " +
      'enable it for trusted clients only (loopback, or the `shared-memory` group of the restricted-API ' +
      'flags)',
  },
  sharedMemoryRegions: {
    default: 64,
    doc: 'most system shared-memory regions registered at once; beyond it, 400 (gRPC: RESOURCE_EXHAUSTED)',
  },
  cacheDir: { shown: '`~/.cache/batched-fn`' },
  redis: {},
  // Their defaults belong to @batched-fn/redis (`bfn`, 30000 ms); the server passes them on only when given.
  prefix: { shown: '`bfn`' },
  claimIdleMs: { shown: '`30000`' },
  /**
   * config.json alone: the longest a model may take to load, in ms (reading its exports, then every
   * worker's `context()`). A minute covers building a large ONNX session on a busy machine; past it the
   * load fails with ERR_LOAD_TIMEOUT and its workers are stopped, so a `context()` that never settles
   * cannot hold the model LOADING, and its name, forever.
   */
  loadTimeout: { default: 60_000 },
} as const satisfies Record<string, SettingSpec>;

export type SettingName = keyof typeof SETTINGS;

/** `64` as `number`: a default's type is its setting's, not its literal's. */
type Widen<T> = T extends number ? number : T;
type Defaulted = {
  [K in SettingName as (typeof SETTINGS)[K] extends { default: unknown } ? K : never]: Widen<
    (typeof SETTINGS)[K] extends { default: infer D } ? D : never
  >;
};

/** The default of every setting that has one: the one place the server's defaults live. */
export const SETTING_DEFAULTS: Readonly<Defaulted> = Object.freeze(
  Object.fromEntries(
    Object.entries(SETTINGS).flatMap(([name, spec]) => ('default' in spec ? [[name, spec.default]] : [])),
  ) as Defaulted,
);

/** The README's Default column of a setting. */
export function shownDefault(name: SettingName): string {
  const spec: SettingSpec = SETTINGS[name];
  return spec.shown ?? (spec.default === undefined ? 'none' : `\`${String(spec.default)}\``);
}

/** The largest value of an integer setting the server takes (its `max`, else the largest safe integer). */
export const maxOf = (name: SettingName): number => (SETTINGS[name] as SettingSpec).max ?? Number.MAX_SAFE_INTEGER;

function atMost(name: SettingName, value: number): number {
  const max = maxOf(name);
  if (value > max) throw new RangeError(`Expected \`${name}\` to be at most ${max}, got \`${value}\` (number)`);
  return value;
}

/**
 * Checks one value of a setting given as data (a model's config.json): a core option by the core's
 * own check (the same rule and message as the library's), then the server's bound; the server's
 * settings by their rule. TypeError for a wrong type, RangeError for a bad range, naming the setting.
 */
export function checkSetting(name: SettingName, value: unknown): unknown {
  const spec: SettingSpec = SETTINGS[name];
  // The core's rule (an integer from 1), and 0: a model without a batch dimension (Triton's
  // max_batch_size 0, formats/batch-dimension.ts), which only a server has.
  if (name === 'maxBatchSize') return atMost(name, expectInteger(name, value, 0));
  if (spec.core !== undefined) {
    const checked = OPTION_SCHEMA[spec.core].check(value);
    // The core sorts the sizes; a model's configuration answers them as they were written.
    if (name === 'preferredBatchSizes') return value;
    return typeof checked === 'number' ? atMost(name, checked) : checked;
  }
  switch (name) {
    case 'threads':
      return atMost(name, expectInteger(name, value, 1));
    case 'timeout':
      return expectDuration(name, value);
    case 'loadTimeout':
      return expectDuration(name, value, 0);
    case 'maxActive':
    case 'maxTokens':
    case 'maxSequences':
    case 'defaultMaxTokens':
    case 'prefillChunk':
      return atMost(name, expectInteger(name, value, 1));
    case 'batching':
      if (value !== 'continuous' && value !== 'static')
        throw new TypeError(`Expected \`${name}\` to be 'continuous' or 'static', got ${JSON.stringify(value)}`);
      return value;
    case 'pad':
      if (typeof value !== 'boolean')
        throw new TypeError(`Expected \`${name}\` to be true or false, got ${JSON.stringify(value)}`);
      return value;
    default:
      throw new TypeError(`\`${name}\` cannot be given as data`);
  }
}

/**
 * The defaults the package has long exported, picked from SETTING_DEFAULTS: they are read from it,
 * never written a second time.
 */
export const SERVER_DEFAULTS = Object.freeze({
  maxBatchSize: SETTING_DEFAULTS.maxBatchSize,
  maxDelay: SETTING_DEFAULTS.maxDelay,
  channelCap: SETTING_DEFAULTS.channelCap,
  workers: SETTING_DEFAULTS.workers,
  threads: SETTING_DEFAULTS.threads,
});
export const SERVE_DEFAULTS = Object.freeze({
  host: SETTING_DEFAULTS.host,
  port: SETTING_DEFAULTS.port,
  bodyLimit: SETTING_DEFAULTS.bodyLimit,
  ...SERVER_DEFAULTS,
});
