import Fastify, { type FastifyInstance } from 'fastify';
import { dashboardPlugin } from './dashboard/routes.js';
import { openaiPlugin } from './openai/plugin.js';
import { SETTING_DEFAULTS } from './settings/settings.js';
import { InFlight } from './protocol/in-flight.js';
import { trackAccepted } from './rest/track-accepted.js';
import { traceRequests } from './otel/request-spans.js';
import { inferenceService, type RunningGrpc, startGrpcServer } from './grpc/service.js';
import { InferenceFront, SERVER_HOMEPAGE, SERVER_VERSION } from './protocol/infer-front.js';
import { InProcessCalls } from './protocol/model-calls.js';
import { RouteIndex } from './rest/route-index.js';
import { notFoundAnswer } from './rest/not-found.js';
import { registerServerIndex } from './rest/index-routes.js';
import { httpStatusFor } from './rest/http-status.js';
import { kservePlugin } from './rest/plugin.js';
import { parseCorsOrigins } from './rest/rest-guards.js';
import { HTTP_RESTRICTED, parseRestrictions } from './protocol/restricted.js';
import { SharedMemoryRegistry } from './protocol/shared-memory.js';
import { ServerExtensions } from './protocol/extensions.js';
import { repositoryActions } from './protocol/repository-actions.js';
import { ServerMetrics } from './metrics/metrics.js';
import { ensureMlpModel } from './builtin/default-model.js';
import { createOnnxModel } from './formats/onnx-model.js';
import type { ServedModel } from './model/served-model.js';
import { createCharLmGenerator, type GenerativeModel, generativeModels } from './formats/generator.js';
import { ModelRegistry } from './repository/registry.js';
import type { ModelConfig } from './repository/config-file.js';
import { listRepository, repositoryLoader } from './repository/repository.js';
import { givenSettings, modelsToLoad } from './repository/model-control.js';
import { loadOptional, OTEL_PACKAGES, REDIS_PACKAGES } from './optional.js';
import { renameOldSettings } from './settings/deprecated.js';
import type { Telemetry } from './otel/setup.js';

export interface ServeOptions {
  /** Path to an .onnx file, or several; without it (and without a repository), the generated default MLP is served. */
  model?: string | string[];
  /** Serve every model folder of this directory (`<name>/model.onnx`, optional `config.json`). */
  modelRepository?: string;
  /** `explicit` enables loading and unloading models while serving. @default 'none' */
  modelControl?: 'none' | 'explicit';
  /**
   * With `modelControl: 'explicit'`, the repository models to load at start (`'*'`: all). Left out,
   * all of them; the CLI passes none without `--load-model`, as Triton starts (repository/model-control.ts).
   */
  loadModel?: string | string[];
  /** charlm: most sequences per step. @default 16 */
  maxActive?: number;
  /** charlm: 'continuous' or 'static' batching of its decode steps. @default 'continuous' */
  batching?: 'continuous' | 'static';
  /** charlm: most prompt characters a sequence is fed per decode step (chunked prefill). @default 8 */
  prefillChunk?: number;
  name?: string;
  host?: string;
  port?: number;
  maxBatchSize?: number;
  maxDelay?: number | 'auto';
  latencyTarget?: number;
  preferredBatchSizes?: number[];
  pad?: boolean;
  /** Most requests waiting per model; beyond it, 503. @default SETTING_DEFAULTS.channelCap */
  channelCap?: number;
  /** @deprecated `channelCap`'s old name: read as it, with one warning. */
  queueCap?: number;
  workers?: number;
  threads?: number;
  /** Default per-request deadline in ms. */
  timeout?: number;
  /** Longest a batch may run, in ms; past it its callers get 500 (ERR_BATCH_TIMEOUT) and its worker restarts. */
  batchTimeout?: number;
  /** Largest request body in bytes (REST: after inflating a compressed one), and largest gRPC message. @default 64 MiB */
  bodyLimit?: number;
  /** Origins whose pages may call the REST API (CORS); other cross-site browser requests that are not GET or HEAD are 403. */
  cors?: string | string[];
  /** Triton's `--http-restricted-api` (repeatable): `<api>,...:<key>=<value>`; those API groups then need header `<key>: <value>` (403 without). */
  httpRestrictedApi?: string | string[];
  cacheDir?: string;
  /** Serve remote workers through this Redis (redis:// or rediss:// URL) instead of a local model. */
  redis?: string;
  /** Key prefix in Redis. */
  prefix?: string;
  /** Export OpenTelemetry traces over OTLP/HTTP, configured by the standard OTEL_* variables (needs the optional OpenTelemetry packages). */
  otel?: boolean;
  /** The live dashboard at /dashboard. @default 'on' */
  dashboard?: 'on' | 'off';
  /** OpenAI's API for the generator models under `/v1` (openai/plugin.ts). @default 'on' */
  openai?: 'on' | 'off';
  /** Also serve the Open Inference Protocol over gRPC on this port (0 picks a free one); undefined: REST only. The CLI's default is 8001. */
  grpcPort?: number;
  /** Most concurrent gRPC calls (HTTP/2 streams) on one connection. @default 100 */
  grpcMaxStreams?: number;
  /** Longest a gRPC call may take to send its request after its headers, in ms; then DEADLINE_EXCEEDED. @default 30000 */
  grpcReceiveTimeout?: number;
  /** Triton's `--grpc-restricted-protocol` (repeatable): `<protocol>,...:<key>=<value>`; those protocols then need metadata `triton-grpc-protocol-<key>: <value>`. */
  grpcRestrictedProtocol?: string | string[];
  /** Most `inputs`, and most `outputs`, in one inference request, counted before parsing (400 beyond). @default 1024 */
  maxTensors?: number;
  /** Most objects one request may make the parser build (JSON objects; gRPC messages, map entries, BYTES elements, shape dimensions). @default 65536 */
  maxObjects?: number;
  /** Most BYTES elements (JSON strings, gRPC bytes_contents elements) in one request, counted before parsing. @default 1048576 */
  maxBytesElements?: number;
  /**
   * `system` serves Triton's system shared-memory extension on REST and gRPC (Linux's /dev/shm). Off by
   * default, as in Triton: a client that may register a region can read and write, through a model, any
   * /dev/shm object the server's user can open. @default 'off'
   */
  sharedMemory?: 'off' | 'system';
  /** Most system shared-memory regions registered at once. @default 64 */
  sharedMemoryRegions?: number;
}

export interface RunningServer {
  url: string;
  app: FastifyInstance;
  /** The first model served (the only one, for a single-model server); undefined when none is ready. */
  model: ServedModel;
  /** Every model and its state. */
  registry: ModelRegistry;
  /** The generators READY now (charlm, when the server runs without a model of its own), with their streams. */
  readonly generators: GenerativeModel[];
  metrics: ServerMetrics;
  /** `grpc://host:port` when gRPC is served. */
  grpcUrl: string | undefined;
  /** Stops accepting, answers every request already accepted (REST and gRPC), then stops the model's workers. */
  close(): Promise<void>;
}

/**
 * Starts the HTTP server around any ServedModel (local ONNX workers, or remote
 * workers behind Redis): builds it, waits until it is ready, then listens.
 */
export async function serveModel(
  model: ServedModel,
  metrics: ServerMetrics,
  options: ServeOptions = {},
  telemetry?: Telemetry,
): Promise<RunningServer> {
  return serveModels(ModelRegistry.of([model], metrics), metrics, options, telemetry);
}

/** Starts the HTTP server around every model of a registry; models that are READY are warmed up before it listens. */
export async function serveModels(
  registry: ModelRegistry,
  metrics: ServerMetrics,
  options: ServeOptions = {},
  telemetry?: Telemetry,
): Promise<RunningServer> {
  // Generators are models of the registry (formats/generator.ts): one served at start lists generation.
  const generates = registry.ready().some((model) => model.generator !== undefined);
  let ready = false;
  let draining = false;
  // One set of regions for both faces; a request reads at most a body's worth of bytes from them.
  // One list of extensions for both faces: each feature adds its name as it is wired.
  const extensions = new ServerExtensions();
  const sharedMemory = new SharedMemoryRegistry({
    sharedMemory: options.sharedMemory,
    sharedMemoryRegions: options.sharedMemoryRegions,
    maxReadBytes: options.bodyLimit ?? SETTING_DEFAULTS.bodyLimit,
  });
  const app = Fastify({
    bodyLimit: options.bodyLimit ?? SETTING_DEFAULTS.bodyLimit,
    logger: false,
    return503OnClosing: true,
  });
  const accepted = new InFlight();
  trackAccepted(app, accepted);
  // Before any route: what the routes are, for the 405s and the 404s' hints (rest/not-found.ts).
  const routes = RouteIndex.of(app);
  // Every HTTP request is a server span (metrics and dashboard too); the infer routes hand theirs to the batch.
  if (telemetry !== undefined) traceRequests(app, telemetry.tracer, telemetry.extract);
  // While draining, every answer closes its connection: keep-alive sockets would otherwise go
  // idle after the server's one-time idle sweep and hold shutdown open for the keep-alive timeout.
  // A callback hook, not an async one: it runs on every answer, and a promise each cost about 1.7 µs.
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (draining) void reply.header('connection', 'close');
    done(null, payload);
  });
  app.setNotFoundHandler((request, reply) => {
    const answer = notFoundAnswer(request.method, request.url, routes);
    void reply.code(answer.status).headers(answer.headers).send({ error: answer.error });
  });
  await app.register(kservePlugin, {
    models: registry,
    metrics,
    isReady: () => ready,
    modelControl: options.modelControl ?? 'none',
    generates,
    sharedMemoryRegistry: sharedMemory,
    extensions,
    ...(telemetry === undefined ? {} : { traceSwitch: telemetry.traceSwitch }),
    bodyLimit: options.bodyLimit ?? SETTING_DEFAULTS.bodyLimit,
    ...(options.cors === undefined ? {} : { cors: options.cors }),
    ...(options.httpRestrictedApi === undefined ? {} : { httpRestrictedApi: options.httpRestrictedApi }),
    ...(options.timeout === undefined ? {} : { timeout: options.timeout }),
    ...(options.maxTensors === undefined ? {} : { maxTensors: options.maxTensors }),
    ...(options.maxObjects === undefined ? {} : { maxObjects: options.maxObjects }),
    ...(options.maxBytesElements === undefined ? {} : { maxBytesElements: options.maxBytesElements }),
  });
  if ((options.dashboard ?? SETTING_DEFAULTS.dashboard) === 'on')
    await app.register(dashboardPlugin, { registry, metrics });
  if ((options.openai ?? SETTING_DEFAULTS.openai) === 'on')
    await app.register(openaiPlugin, {
      prefix: '/v1',
      registry,
      ...(options.httpRestrictedApi === undefined ? {} : { httpRestrictedApi: options.httpRestrictedApi }),
    });
  app.get('/metrics', async (_request, reply) =>
    reply.header('content-type', metrics.registry.contentType).send(await metrics.registry.metrics()),
  );
  registerServerIndex(app, {
    version: SERVER_VERSION,
    homepage: SERVER_HOMEPAGE,
    models: () => registry.entries().map((entry) => entry.name),
    links: {
      ...((options.dashboard ?? SETTING_DEFAULTS.dashboard) === 'on' ? { dashboard: '/dashboard' } : {}),
      metrics: '/metrics',
    },
  });
  await Promise.all(registry.ready().map((model) => model.batcher.ready()));
  const host = options.host ?? SETTING_DEFAULTS.host;
  const port = options.port ?? SETTING_DEFAULTS.port;
  const address = await app.listen({ host, port }).catch((error: NodeJS.ErrnoException) => {
    // Named by its flag, as the gRPC face names --grpc-port: the user's next step is another port.
    if (error.code === 'EADDRINUSE')
      throw new Error(`--port ${port} is in use on ${host} (give another port, or 0 for a free one)`);
    throw error;
  });
  let grpc: RunningGrpc | undefined;
  if (options.grpcPort !== undefined) {
    const front = new InferenceFront(registry, {
      statusOf: httpStatusFor,
      timeout: options.timeout,
      metrics,
      isReady: () => ready,
      generates,
      sharedMemory,
      extensions,
    });
    const tracker = new InFlight();
    const service = inferenceService(
      front,
      repositoryActions(registry, options.modelControl ?? 'none'),
      metrics.statistics,
      () => draining,
      tracker,
      telemetry,
    );
    const { grpcMaxStreams, grpcReceiveTimeout, maxTensors, maxObjects, maxBytesElements, grpcRestrictedProtocol } =
      options;
    grpc = await startGrpcServer(service, tracker, {
      host,
      port: options.grpcPort,
      maxMessageBytes: options.bodyLimit ?? SETTING_DEFAULTS.bodyLimit,
      grpcMaxStreams,
      grpcReceiveTimeout,
      maxTensors,
      maxObjects,
      maxBytesElements,
      grpcRestrictedProtocol,
    }).catch(async (error: unknown) => {
      await app.close();
      throw error;
    });
  }
  ready = true;
  // The gRPC health service's "" turns SERVING now (the models' states reach it from the registry).
  grpc?.refreshHealth();
  let closing: Promise<void> | undefined;
  return {
    url: address,
    grpcUrl: grpc === undefined ? undefined : `grpc://${host.includes(':') ? `[${host}]` : host}:${grpc.port}`,
    app,
    // The first model that answers infer (charlm, a generator, sorts before the default mlp).
    model: (registry.ready().find((m) => m.generator === undefined) ?? registry.ready()[0]) as ServedModel,
    registry,
    get generators() {
      return generativeModels(registry.ready());
    },
    metrics,
    close: () => {
      closing ??= (async () => {
        ready = false;
        draining = true;
        const models = registry.ready();
        // app.close() waits for every accepted request, and those wait in the batch queues:
        // flush the queues now instead of letting them sit out the delay (or deadlock on it).
        for (const model of models) model.batcher.configure({ maxDelay: 0 });
        await Promise.all([closeHttp(app, accepted), grpc?.close()]);
        await Promise.all(models.map((model) => model.batcher.close()));
        await telemetry?.shutdown();
      })();
      return closing;
    },
  };
}

/** Stops HTTP: accepted requests are answered; connections still open after that (a stalled client) are cut. */
async function closeHttp(app: FastifyInstance, accepted: InFlight): Promise<void> {
  const closing = app.close();
  await Promise.race([closing, accepted.settled()]);
  app.server.closeAllConnections();
  await closing;
}

/** `batched-fn serve --redis`: the same HTTP frontend, with batches run by remote workers. */
async function startRemoteServer(
  options: ServeOptions & { redis: string },
  telemetry: Telemetry | undefined,
): Promise<RunningServer> {
  const { createRemoteModel } = await loadOptional(
    '--redis',
    REDIS_PACKAGES,
    () => import('./formats/remote-model.js'),
  );
  const metrics = new ServerMetrics();
  const model = await createRemoteModel({
    redis: options.redis,
    name: options.name ?? 'mlp',
    onBatch: metrics.onBatch,
    ...(options.prefix === undefined ? {} : { prefix: options.prefix }),
    ...(options.channelCap === undefined ? {} : { channelCap: options.channelCap }),
  });
  metrics.track(model);
  return serveModel(model, metrics, options, telemetry);
}

/** Server-wide settings, the defaults of every model (a repository model's config.json overrides them). */
function modelDefaults(options: ServeOptions): ModelConfig {
  const defined = <T>(key: string, value: T | undefined) => (value === undefined ? {} : { [key]: value });
  return {
    maxBatchSize: options.maxBatchSize ?? SETTING_DEFAULTS.maxBatchSize,
    maxDelay: options.maxDelay ?? SETTING_DEFAULTS.maxDelay,
    channelCap: options.channelCap ?? SETTING_DEFAULTS.channelCap,
    workers: options.workers ?? SETTING_DEFAULTS.workers,
    threads: options.threads ?? SETTING_DEFAULTS.threads,
    ...defined('latencyTarget', options.latencyTarget),
    ...defined('preferredBatchSizes', options.preferredBatchSizes),
    ...defined('pad', options.pad),
    ...defined('batchTimeout', options.batchTimeout),
    // A generator's (formats/generator.ts); its config.json's own win.
    ...defined('maxActive', options.maxActive),
    ...defined('batching', options.batching),
  };
}

/**
 * `batched-fn serve`: ONNX models (the generated default, one or several files, or a repository
 * folder) in worker threads, behind KServe v2 routes. A repository model that fails to load is
 * UNAVAILABLE with its reason; the others serve, and the server starts anyway.
 */
export async function startServer(given: ServeOptions = {}): Promise<RunningServer> {
  // `queueCap` is `channelCap`'s old name: read as it, with one warning (settings/deprecated.ts).
  const options = renameOldSettings(given, 'startServer');
  // REST options that need no model, checked before any model loads (the plugin checks them again, for library use).
  parseCorsOrigins(options.cors);
  parseRestrictions(options.httpRestrictedApi, HTTP_RESTRICTED);
  const telemetry =
    options.otel === true
      ? await (await loadOptional('--otel', OTEL_PACKAGES, () => import('./otel/setup.js'))).startTelemetry()
      : undefined;
  if (options.redis !== undefined) return startRemoteServer({ ...options, redis: options.redis }, telemetry);
  const metrics = new ServerMetrics();
  const defaults = modelDefaults(options);
  let registry: ModelRegistry;
  if (options.modelRepository !== undefined) {
    if (options.model !== undefined) throw new RangeError('Give --model or --model-repository, not both');
    const names = modelsToLoad(
      listRepository(options.modelRepository),
      options.modelControl ?? 'none',
      options.loadModel,
      options.modelRepository,
    );
    // Models call each other (ensembles, a JS model's `models`) through a front of their own: the
    // same lookup, deadlines and metrics as a client's request, counted under protocol `internal`.
    const calls = new InProcessCalls();
    registry = new ModelRegistry(
      repositoryLoader(options.modelRepository, {
        defaults,
        onBatch: metrics.onBatch,
        tracing: telemetry?.tracing,
        triton: { given: givenSettings(options) },
        onStep: metrics.onStep,
        calls,
      }),
      metrics,
    );
    calls.attach(new InferenceFront(registry, { statusOf: httpStatusFor, timeout: options.timeout, metrics }));
    // A model that calls others loads them with it (registry.ts): those are not loaded twice.
    for (const name of names) if (registry.get(name) === undefined) await registry.load(name).catch(() => {});
  } else {
    const paths = options.model === undefined ? [ensureMlpModel(undefined, options.cacheDir)] : [options.model].flat();
    if (paths.length > 1 && options.name !== undefined)
      throw new RangeError('--name names a single model; with several --model files each is named after its file');
    // The server's maxBatchSize, for files that can batch (a file without a batch dimension is served with 0).
    const { maxBatchSize: defaultMaxBatchSize, ...settings } = defaults;
    const models = paths.map((path) =>
      createOnnxModel({
        ...settings,
        ...(defaultMaxBatchSize === undefined ? {} : { defaultMaxBatchSize }),
        path,
        name: options.name ?? (options.model === undefined ? 'mlp' : undefined),
        onBatch: metrics.onBatch,
        ...(telemetry === undefined ? {} : { tracing: telemetry.tracing }),
      }),
    );
    if (new Set(models.map((m) => m.name)).size !== models.length)
      throw new RangeError('Two --model files have the same name');
    // Without a model of its own, the server also generates text with charlm, beside the classifier:
    // a builtin model of the registry, served through the generator kind like any other.
    if (options.model === undefined)
      models.push(
        createCharLmGenerator({
          ...(options.maxActive === undefined ? {} : { maxActive: options.maxActive }),
          ...(options.batching === undefined ? {} : { batching: options.batching }),
          ...(options.prefillChunk === undefined ? {} : { prefillChunk: options.prefillChunk }),
          ...(options.cacheDir === undefined ? {} : { cacheDir: options.cacheDir }),
          ...(options.channelCap === undefined ? {} : { channelCap: options.channelCap }),
          ...(options.batchTimeout === undefined ? {} : { batchTimeout: options.batchTimeout }),
          onStep: metrics.onStep,
        }),
      );
    for (const model of models) metrics.track(model);
    registry = ModelRegistry.of(models);
  }
  try {
    return await serveModels(registry, metrics, options, telemetry);
  } catch (error) {
    for (const model of registry.ready()) model.batcher.destroy(error);
    throw error;
  }
}
