import { readFileSync } from 'node:fs';
import { BatchedFnError } from 'batched-fn';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ServerMetrics } from '../metrics.js';
import type { ServedModel } from '../model/onnx-model.js';
import { type ModelEntry, ModelRegistry } from '../model/registry.js';
import { registerRepositoryRoutes } from './repository-routes.js';
import type { GenerativeModel } from '../model/generator.js';
import { registerGenerateRoutes } from './generate-routes.js';
import { decodeInferRequest, HEADER_LENGTH, splitBody } from './decode.js';
import { encodeInferResponse } from './encode.js';
import { HttpError } from './errors.js';

export interface KServeOptions {
  /** Fixed models, or a registry whose models load, reload and unload while serving. */
  models: ServedModel[] | ModelRegistry;
  /** Models that answer with a stream of tokens, behind Triton's generate extension. */
  generators?: GenerativeModel[];
  /** `explicit` enables the repository's load and unload routes; `none` (the default) answers them 403. */
  modelControl?: 'none' | 'explicit';
  /** Default deadline per request in ms; a request's own `parameters.timeout` may only lower it. */
  timeout?: number;
  metrics?: ServerMetrics;
  /** False while starting or draining: readiness probes then get 503. */
  isReady?: () => boolean;
}

/**
 * The `model` label of requests for models this server does not have. Label values never come
 * from a client: 60,000 made-up names would otherwise be 60,000 series in /metrics.
 */
export const UNKNOWN_MODEL_LABEL = '(unknown)';

/** The server's version, as published: from its own package.json, never written twice. */
const SERVER_VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** What the infer route reads: JSON, or the binary extension's JSON header plus raw tensors. */
const BODY_TYPES = ['application/json', 'application/octet-stream'];

/** Client input echoed in an error message is cut, so a 1 MB model name is not sent back whole. */
const clip = (text: string): string => (text.length > 100 ? `${text.slice(0, 100)}...` : text);

/** How each batcher error reaches an HTTP client. */
function statusFor(error: unknown): { status: number; headers: Record<string, string> } {
  if (error instanceof HttpError) return { status: error.status, headers: error.headers };
  if (error instanceof BatchedFnError) {
    switch (error.code) {
      case 'ERR_QUEUE_FULL':
      case 'ERR_CLOSED':
      case 'ERR_UNAVAILABLE':
        return { status: 503, headers: { 'retry-after': '1' } };
      case 'ERR_TIMEOUT':
        return { status: 504, headers: {} };
      case 'ERR_ITEM_TOO_LARGE':
        return { status: 413, headers: {} };
      default:
        return { status: 500, headers: {} };
    }
  }
  const code = (error as FastifyError | undefined)?.code;
  if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') return { status: 413, headers: {} };
  if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return { status: 415, headers: {} };
  // A client error from elsewhere (fastify's statusCode; a model's or a remote worker's status): 4xx only.
  const status = (error as FastifyError | undefined)?.statusCode ?? (error as { status?: unknown } | undefined)?.status;
  if (typeof status === 'number' && Number.isInteger(status) && status >= 400 && status < 500) return { status, headers: {} };
  return { status: 500, headers: {} };
}

function messageFor(error: unknown, status: number): string {
  if (status === 413 && (error as FastifyError).code === 'FST_ERR_CTP_BODY_TOO_LARGE') return `Request body is larger than the server's limit`;
  if (status === 415) return `Content-Type must be ${BODY_TYPES.join(' or ')} (the binary tensor extension)`;
  if (error instanceof BatchedFnError) return `${error.code}: ${error.message}`;
  if (status === 500) return `Model failed: ${(error as Error)?.message ?? String(error)}`;
  return (error as Error)?.message ?? String(error);
}

/**
 * The Open Inference Protocol (KServe v2) REST routes for a set of batched
 * models, as a fastify plugin. Register it in your own app to expose a model,
 * or use `batched-fn serve`, which does the same.
 */
export async function kservePlugin(app: FastifyInstance, options: KServeOptions): Promise<void> {
  const registry = options.models instanceof ModelRegistry ? options.models : ModelRegistry.of(options.models);
  const isReady = options.isReady ?? (() => true);

  // Bodies arrive as raw bytes: the binary extension puts tensors after the JSON header,
  // and parsing ourselves lets malformed JSON get the same error shape as every other 400.
  // Only these two types: a web page may POST text/plain (or a form) cross-origin without a
  // preflight, so accepting any type would let any site a user visits drive a local model server.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(BODY_TYPES, { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

  app.setErrorHandler((error, request, reply) => {
    const { status, headers } = statusFor(error);
    if (status === 500) request.log.error(error);
    const message = status === 415 ? `${messageFor(error, status)}, got ${clip(JSON.stringify(request.headers['content-type'] ?? 'none'))}` : messageFor(error, status);
    void reply.code(status).headers(headers).send({ error: message });
  });

  const known = (name: string): ModelEntry => {
    const entry = registry.get(name);
    if (entry === undefined) throw new HttpError(404, `Unknown model \`${clip(name)}\``);
    return entry;
  };
  /** The instance serving `name`: a known model that is not READY is a 503 that says its state. */
  const serving = (name: string): ServedModel => {
    const entry = known(name);
    if (entry.state !== 'READY' || entry.model === undefined) {
      throw new HttpError(503, `Model \`${entry.name}\` is ${entry.state}${entry.reason === '' ? '' : `: ${entry.reason}`}`, { 'retry-after': '1' });
    }
    return entry.model;
  };

  app.get('/v2', async () => ({
    name: 'batched-fn',
    version: SERVER_VERSION,
    extensions: ['binary_tensor_data', 'model_repository', ...(options.metrics === undefined ? [] : ['statistics']), ...((options.generators ?? []).length > 0 ? ['generate'] : [])],
  }));
  app.get('/v2/health/live', async () => ({ live: true }));
  options.metrics?.statistics.register(app, (name) => registry.get(name)?.model?.version);
  registerRepositoryRoutes(app, registry, options.modelControl ?? 'none');
  registerGenerateRoutes(app, options.generators ?? [], options.metrics);
  app.get('/v2/health/ready', async (_request, reply) => {
    const ready = isReady();
    return reply.code(ready ? 200 : 503).send({ ready });
  });
  app.get<{ Params: { name: string } }>('/v2/models/:name', async (request) => {
    const m = serving(request.params.name);
    return { name: m.name, versions: [m.version], platform: m.platform, inputs: m.signature.inputs, outputs: m.signature.outputs };
  });
  app.get<{ Params: { name: string } }>('/v2/models/:name/ready', async (request, reply) => {
    const ready = isReady() && known(request.params.name).state === 'READY';
    return reply.code(ready ? 200 : 503).send({ name: request.params.name, ready });
  });

  const infer = async (request: FastifyRequest<{ Params: { name: string; version?: string } }>, reply: FastifyReply): Promise<void> => {
    const started = performance.now();
    // Known models (even unavailable ones) are counted under their name; anything else under one label.
    const label = registry.get(request.params.name)?.name ?? UNKNOWN_MODEL_LABEL;
    try {
      const m = serving(request.params.name);
      const version = request.params.version;
      if (version !== undefined && version !== m.version) throw new HttpError(404, `Model \`${m.name}\` has no version \`${clip(version)}\` (it has ${m.version})`);
      if (!Buffer.isBuffer(request.body)) throw new HttpError(400, 'Request needs a JSON body');
      const headerLength = request.headers[HEADER_LENGTH];
      const { json, binary } = splitBody(request.body, Array.isArray(headerLength) ? headerLength[0] : headerLength);
      const decoded = decodeInferRequest(json, binary, m.signature, m.maxBatchSize);
      // The tightest of the server's default, the model's and the request's own deadline.
      const limits = [options.timeout, m.timeout, decoded.timeout].filter((t): t is number => t !== undefined);
      const timeout = limits.length === 0 ? undefined : Math.min(...limits);
      // A client that hangs up releases its place in the queue (or its slot in a running batch).
      const controller = new AbortController();
      const onClose = (): void => {
        if (!reply.raw.writableFinished) controller.abort(new HttpError(499, 'Client closed the connection'));
      };
      reply.raw.once('close', onClose);
      const result = await m.infer(decoded.item, {
        signal: controller.signal,
        ...(timeout === undefined ? {} : { timeout }),
        ...(decoded.priority === undefined ? {} : { priority: decoded.priority }),
      });
      reply.raw.off('close', onClose);
      const response = encodeInferResponse(m.name, m.version, decoded.id, result, decoded.outputs);
      options.metrics?.request(m.name, 200, (performance.now() - started) / 1000);
      await reply.headers(response.headers).send(response.body);
    } catch (error) {
      const { status } = statusFor(error);
      options.metrics?.request(label, status, (performance.now() - started) / 1000);
      throw error;
    }
  };
  app.post<{ Params: { name: string } }>('/v2/models/:name/infer', infer);
  app.post<{ Params: { name: string; version: string } }>('/v2/models/:name/versions/:version/infer', infer);
}
