import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { FLAG_DEFAULTS } from '../flags.js';
import type { ServerMetrics } from '../metrics.js';
import type { ServedModel } from '../model/onnx-model.js';
import { ModelRegistry } from '../model/registry.js';
import { registerRepositoryRoutes, repositoryActions } from './repository-routes.js';
import type { GenerativeModel } from '../model/generator.js';
import { registerGenerateRoutes } from './generate-routes.js';
import { decodeInferRequest, HEADER_LENGTH, splitBody } from './decode.js';
import { encodeInferResponse } from './encode.js';
import { HttpError } from './errors.js';
import { type BodyLimits, scanJsonBody } from './body-scan.js';
import { InferenceFront } from './infer-front.js';
import { spanOf, traceRequests } from '../otel/request-spans.js';
import type { TracerLike } from '../otel/types.js';
import { BODY_TYPES, clip, messageFor, statusFor } from './status.js';

export { UNKNOWN_MODEL_LABEL } from './infer-front.js';

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
  /** Traces every request as a server span (an OpenTelemetry `Tracer`); give the models' batchers `tracing` too, to link batches to them. */
  tracer?: TracerLike;
  /** Most objects in a body's `inputs`, and in its `outputs`, counted before parsing (400 beyond). @default 1024 */
  maxTensors?: number;
  /** Most JSON objects in a request body, counted before parsing (400 beyond). @default 65536 */
  maxObjects?: number;
}

/** The body scan's limits, checked when the plugin is registered. */
function bodyLimits(options: KServeOptions): BodyLimits {
  const check = (name: 'maxTensors' | 'maxObjects', fallback: number): number => {
    const value = options[name] ?? fallback;
    if (typeof value !== 'number') throw new TypeError(`Expected \`${name}\` to be a number, got \`${String(value)}\` (${typeof value})`);
    if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`Expected \`${name}\` to be an integer from 1 and up, got \`${value}\``);
    return value;
  };
  return { maxTensors: check('maxTensors', FLAG_DEFAULTS.maxTensors), maxObjects: check('maxObjects', FLAG_DEFAULTS.maxObjects) };
}

/** The JSON part of a body: all of it, or the binary extension's header (a bad length is splitBody's to refuse). */
function jsonLength(body: Buffer, header: string | string[] | undefined): number {
  const value = Array.isArray(header) ? header[0] : header;
  const length = value === undefined ? Number.NaN : Number(value);
  return Number.isSafeInteger(length) && length >= 0 && length <= body.length ? length : body.length;
}

/**
 * The Open Inference Protocol (KServe v2) REST routes for a set of batched
 * models, as a fastify plugin. Register it in your own app to expose a model,
 * or use `batched-fn serve`, which does the same.
 */
export async function kservePlugin(app: FastifyInstance, options: KServeOptions): Promise<void> {
  const registry = options.models instanceof ModelRegistry ? options.models : ModelRegistry.of(options.models);
  const isReady = options.isReady ?? (() => true);
  if (options.tracer !== undefined) traceRequests(app, options.tracer);
  const front = new InferenceFront(registry, { timeout: options.timeout, metrics: options.metrics, isReady, generates: (options.generators ?? []).length > 0 });

  // Bodies arrive as raw bytes: the binary extension puts tensors after the JSON header,
  // and parsing ourselves lets malformed JSON get the same error shape as every other 400.
  // Only these two types: a web page may POST text/plain (or a form) cross-origin without a
  // preflight, so accepting any type would let any site a user visits drive a local model server.
  app.removeAllContentTypeParsers();
  const limits = bodyLimits(options);
  app.addContentTypeParser(BODY_TYPES, { parseAs: 'buffer' }, (request, body, done) => {
    // Millions of empty objects are refused before JSON.parse builds them (body-scan.ts).
    try {
      scanJsonBody(body as Buffer, jsonLength(body as Buffer, request.headers[HEADER_LENGTH]), limits);
      done(null, body);
    } catch (error) {
      done(error as Error);
    }
  });

  app.setErrorHandler((error, request, reply) => {
    const { status, headers } = statusFor(error);
    if (status === 500) request.log.error(error);
    const message = status === 415 ? `${messageFor(error, status)}, got ${clip(JSON.stringify(request.headers['content-type'] ?? 'none'))}` : messageFor(error, status);
    void reply.code(status).headers(headers).send({ error: message });
  });

  app.get('/v2', async () => front.serverMetadata());
  app.get('/v2/health/live', async () => ({ live: true }));
  options.metrics?.statistics.register(app, (name) => registry.get(name)?.model?.version);
  registerRepositoryRoutes(app, repositoryActions(registry, options.modelControl ?? 'none'));
  registerGenerateRoutes(app, options.generators ?? [], options.metrics);
  app.get('/v2/health/ready', async (_request, reply) => {
    const ready = isReady();
    return reply.code(ready ? 200 : 503).send({ ready });
  });
  app.get<{ Params: { name: string } }>('/v2/models/:name', async (request) => front.metadata(request.params.name));
  app.get<{ Params: { name: string } }>('/v2/models/:name/ready', async (request, reply) => {
    const ready = front.modelReady(request.params.name);
    return reply.code(ready ? 200 : 503).send({ name: request.params.name, ready });
  });

  const infer = async (request: FastifyRequest<{ Params: { name: string; version?: string } }>, reply: FastifyReply): Promise<void> => {
    // A client that hangs up releases its place in the queue (or its slot in a running batch).
    const controller = new AbortController();
    const onClose = (): void => {
      if (!reply.raw.writableFinished) controller.abort(new HttpError(499, 'Client closed the connection'));
    };
    reply.raw.once('close', onClose);
    const response = await front
      .infer(
        {
          protocol: 'rest',
          name: request.params.name,
          version: request.params.version,
          signal: controller.signal,
          trace: spanOf(request),
          decode: (m) => {
            if (!Buffer.isBuffer(request.body)) throw new HttpError(400, 'Request needs a JSON body');
            const headerLength = request.headers[HEADER_LENGTH];
            const { json, binary } = splitBody(request.body, Array.isArray(headerLength) ? headerLength[0] : headerLength);
            return decodeInferRequest(json, binary, m.signature, m.maxBatchSize);
          },
        },
        (m, decoded, result) => encodeInferResponse(m.name, m.version, decoded.id, result, decoded.outputs),
      )
      .finally(() => reply.raw.off('close', onClose));
    await reply.headers(response.headers).send(response.body);
  };
  app.post<{ Params: { name: string } }>('/v2/models/:name/infer', infer);
  app.post<{ Params: { name: string; version: string } }>('/v2/models/:name/versions/:version/infer', infer);
}
