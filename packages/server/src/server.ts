import Fastify, { type FastifyInstance } from 'fastify';
import { FLAG_DEFAULTS } from './flags.js';
import { kservePlugin } from './kserve/plugin.js';
import { ServerMetrics } from './metrics.js';
import { ensureMlpModel } from './model/default-model.js';
import { createOnnxModel, SERVER_DEFAULTS, type ServedModel } from './model/onnx-model.js';
import { loadOptional, REDIS_PACKAGES } from './optional.js';

export interface ServeOptions {
  /** Path to an .onnx file; without it, the generated default MLP is served. */
  model?: string;
  name?: string;
  host?: string;
  port?: number;
  maxBatchSize?: number;
  maxDelay?: number | 'auto';
  latencyTarget?: number;
  preferredBatchSizes?: number[];
  pad?: boolean;
  queueCap?: number;
  workers?: number;
  threads?: number;
  /** Default per-request deadline in ms. */
  timeout?: number;
  /** Longest a batch may run, in ms; past it its callers get 500 (ERR_BATCH_TIMEOUT) and its worker restarts. */
  batchTimeout?: number;
  /** Largest request body in bytes. */
  bodyLimit?: number;
  cacheDir?: string;
  /** Serve remote workers through this Redis (redis:// or rediss:// URL) instead of a local model. */
  redis?: string;
  /** Key prefix in Redis. */
  prefix?: string;
}

export const SERVE_DEFAULTS = Object.freeze({ host: FLAG_DEFAULTS.host, port: FLAG_DEFAULTS.port, bodyLimit: FLAG_DEFAULTS.bodyLimit, ...SERVER_DEFAULTS });

export interface RunningServer {
  url: string;
  app: FastifyInstance;
  model: ServedModel;
  metrics: ServerMetrics;
  /** Stops accepting, answers every request already accepted, then stops the model's workers. */
  close(): Promise<void>;
}

/**
 * Starts the HTTP server around any ServedModel (local ONNX workers, or remote
 * workers behind Redis): builds it, waits until it is ready, then listens.
 */
export async function serveModel(model: ServedModel, metrics: ServerMetrics, options: ServeOptions = {}): Promise<RunningServer> {
  let ready = false;
  let draining = false;
  const app = Fastify({ bodyLimit: options.bodyLimit ?? SERVE_DEFAULTS.bodyLimit, logger: false, return503OnClosing: true });
  // While draining, every answer closes its connection: keep-alive sockets would otherwise go
  // idle after the server's one-time idle sweep and hold shutdown open for the keep-alive timeout.
  app.addHook('onSend', async (_request, reply, payload) => {
    if (draining) void reply.header('connection', 'close');
    return payload;
  });
  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send({ error: `No route for ${request.method} ${request.url}` });
  });
  await app.register(kservePlugin, {
    models: [model],
    metrics,
    isReady: () => ready,
    ...(options.timeout === undefined ? {} : { timeout: options.timeout }),
  });
  app.get('/metrics', async (_request, reply) => reply.header('content-type', metrics.registry.contentType).send(await metrics.registry.metrics()));
  await model.batcher.ready();
  const address = await app.listen({ host: options.host ?? SERVE_DEFAULTS.host, port: options.port ?? SERVE_DEFAULTS.port });
  ready = true;
  let closing: Promise<void> | undefined;
  return {
    url: address,
    app,
    model,
    metrics,
    close: () => {
      closing ??= (async () => {
        ready = false;
        draining = true;
        // app.close() waits for every accepted request, and those wait in the batch queue:
        // flush the queue now instead of letting them sit out the delay (or deadlock on it).
        model.batcher.configure({ maxDelay: 0 });
        await app.close();
        await model.batcher.close();
      })();
      return closing;
    },
  };
}

/** `batched-fn serve --redis`: the same HTTP frontend, with batches run by remote workers. */
async function startRemoteServer(options: ServeOptions & { redis: string }): Promise<RunningServer> {
  const { createRemoteModel } = await loadOptional('--redis', REDIS_PACKAGES, () => import('./model/remote-model.js'));
  const metrics = new ServerMetrics();
  const model = await createRemoteModel({
    redis: options.redis,
    name: options.name ?? 'mlp',
    onBatch: metrics.onBatch,
    ...(options.prefix === undefined ? {} : { prefix: options.prefix }),
    ...(options.queueCap === undefined ? {} : { channelCap: options.queueCap }),
  });
  metrics.track(model);
  return serveModel(model, metrics, options);
}

/** `batched-fn serve`: an ONNX model (or the generated default) in worker threads, behind KServe v2 routes. */
export async function startServer(options: ServeOptions = {}): Promise<RunningServer> {
  if (options.redis !== undefined) return startRemoteServer({ ...options, redis: options.redis });
  const path = options.model ?? ensureMlpModel(undefined, options.cacheDir);
  const metrics = new ServerMetrics();
  const model = createOnnxModel({
    path,
    name: options.name ?? (options.model === undefined ? 'mlp' : undefined),
    maxBatchSize: options.maxBatchSize ?? SERVE_DEFAULTS.maxBatchSize,
    maxDelay: options.maxDelay ?? SERVE_DEFAULTS.maxDelay,
    channelCap: options.queueCap ?? SERVE_DEFAULTS.channelCap,
    workers: options.workers ?? SERVE_DEFAULTS.workers,
    threads: options.threads ?? SERVE_DEFAULTS.threads,
    onBatch: metrics.onBatch,
    ...(options.latencyTarget === undefined ? {} : { latencyTarget: options.latencyTarget }),
    ...(options.preferredBatchSizes === undefined ? {} : { preferredBatchSizes: options.preferredBatchSizes }),
    ...(options.pad === undefined ? {} : { pad: options.pad }),
    ...(options.batchTimeout === undefined ? {} : { batchTimeout: options.batchTimeout }),
  });
  metrics.track(model);
  try {
    return await serveModel(model, metrics, options);
  } catch (error) {
    model.batcher.destroy(error);
    throw error;
  }
}
