import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { SETTING_DEFAULTS } from '../settings/settings.js';
import type { ServerMetrics } from '../metrics/metrics.js';
import type { ServedModel } from '../model/served-model.js';
import { ModelRegistry } from '../repository/registry.js';
import { versionsServed } from '../model/versions.js';
import { repositoryActions } from '../protocol/repository-actions.js';
import { registerRepositoryRoutes } from './repository-routes.js';
import { registerModelList } from './index-routes.js';
import type { SharedMemoryRegistry } from '../protocol/shared-memory.js';
import { registerSharedMemoryRoutes } from './shared-memory-routes.js';
import { registerGenerateRoutes } from './generate-routes.js';
import { type DecodedRequest, decodeInferRequest, HEADER_LENGTH, splitBody } from '../protocol/decode.js';
import { type EncodedResponse, encodeInferResponse } from '../protocol/encode.js';
import { AbortPool } from '../protocol/abort-pool.js';
import type { InferResult } from '../model/tensor.js';
import { invalidArgument, ProtocolError } from '../protocol/errors.js';
import { type BodyLimits, scanJsonBody } from './body-scan.js';
import { InferenceFront } from '../protocol/infer-front.js';
import type { ServerExtensions } from '../protocol/extensions.js';
import { registerExtensionRoutes, registerStatisticsRoutes } from './extension-routes.js';
import type { TraceSwitch } from '../protocol/trace-switch.js';
import { spanOf, traceRequests } from '../otel/request-spans.js';
import type { TracerLike } from '../otel/types.js';
import { clip } from '../protocol/status.js';
import { httpAnswerFor, httpStatusFor } from './http-status.js';
import { readBody } from './request-body.js';
import { parseCorsOrigins, registerRestGuards } from './rest-guards.js';
import { HTTP_RESTRICTED, parseRestrictions } from '../protocol/restricted.js';
import { decodeRawRequest, isRawRequest } from './raw-request.js';

export { UNKNOWN_MODEL_LABEL } from '../protocol/infer-front.js';

export interface KServeOptions {
  /** Fixed models, or a registry whose models load, reload and unload while serving. */
  models: ServedModel[] | ModelRegistry;
  /**
   * Whether the server lists Triton's generate extension (a generator is served at start); the
   * generate routes answer for every generator of the registry either way.
   */
  generates?: boolean;
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
  /** Most JSON strings (BYTES elements) in a request body, counted before parsing (400 beyond). @default 1048576 */
  maxBytesElements?: number;
  /**
   * Largest request body in bytes, after inflating a compressed one (413 beyond; the body is
   * drained within twice the limit so the client reads the answer). @default the app's `bodyLimit`
   */
  bodyLimit?: number;
  /** Origins whose pages may call the server (`--cors`): CORS answers and preflights; other cross-site browser requests are 403. */
  cors?: string | readonly string[];
  /** Triton's `--http-restricted-api` values, `<group>,...:<header>=<value>`: those groups only for requests carrying the header. */
  httpRestrictedApi?: string | readonly string[];
  /** The system shared-memory regions (shared with the gRPC face); without it the extension is off (protocol/shared-memory.ts). */
  sharedMemoryRegistry?: SharedMemoryRegistry;
  /** The extensions `/v2` lists, shared with the gRPC face so both list the same (protocol/extensions.ts). */
  extensions?: ServerExtensions;
  /** What `--otel` traces, for the trace extension's routes; without it they answer 400 (protocol/trace-settings.ts). */
  traceSwitch?: TraceSwitch;
}

/** The body scan's limits, checked when the plugin is registered. */
function bodyLimits(options: KServeOptions): BodyLimits {
  const check = (name: 'maxTensors' | 'maxObjects' | 'maxBytesElements', fallback: number): number => {
    const value = options[name] ?? fallback;
    if (typeof value !== 'number')
      throw new TypeError(`Expected \`${name}\` to be a number, got \`${String(value)}\` (${typeof value})`);
    if (!Number.isSafeInteger(value) || value < 1)
      throw new RangeError(`Expected \`${name}\` to be an integer from 1 and up, got \`${value}\``);
    return value;
  };
  return {
    maxTensors: check('maxTensors', SETTING_DEFAULTS.maxTensors),
    maxObjects: check('maxObjects', SETTING_DEFAULTS.maxObjects),
    maxBytesElements: check('maxBytesElements', SETTING_DEFAULTS.maxBytesElements),
  };
}

function checkBodyLimit(value: unknown): number {
  if (typeof value !== 'number')
    throw new TypeError(`Expected \`bodyLimit\` to be a number, got \`${String(value)}\` (${typeof value})`);
  if (!Number.isSafeInteger(value) || value < 1)
    throw new RangeError(`Expected \`bodyLimit\` to be an integer from 1 and up, got \`${value}\``);
  return value;
}

/** The answer of an inference, from what it decoded and the model's result (one function, not a closure a call). */
const encodeAnswer = (m: ServedModel, decoded: DecodedRequest, result: InferResult): EncodedResponse =>
  encodeInferResponse(m.name, m.version, decoded.id, result, decoded.outputs);

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
  const front = new InferenceFront(registry, {
    statusOf: httpStatusFor,
    timeout: options.timeout,
    metrics: options.metrics,
    isReady,
    generates: options.generates ?? registry.ready().some((model) => model.generator !== undefined),
    sharedMemory: options.sharedMemoryRegistry,
    extensions: options.extensions,
  });

  // Before any route: cross-site browser requests, CORS and --http-restricted-api (rest-guards.ts).
  const bodyLimit = checkBodyLimit(options.bodyLimit ?? app.initialConfig.bodyLimit);
  registerRestGuards(app, {
    cors: parseCorsOrigins(options.cors),
    restrictions: parseRestrictions(options.httpRestrictedApi, HTTP_RESTRICTED),
    bodyLimit,
  });

  // Bodies arrive as raw bytes: the binary extension puts tensors after the JSON header, and
  // parsing ourselves lets malformed JSON get the same error shape as every other 400. JSON, the
  // binary extension, or no Content-Type at all (tritonclient sends none) are read; other types
  // (text/plain, forms) are 415. Compressed bodies are inflated, and the limit holds for the
  // inflated size; a refused body is drained so its client reads the answer (request-body.ts).
  app.removeAllContentTypeParsers();
  const limits = bodyLimits(options);
  // A callback parser (three parameters), not an async one: no promise or suspended frame a request.
  app.addContentTypeParser('*', (request: FastifyRequest, payload: FastifyRequest['raw'], done) => {
    readBody(payload, request.headers, bodyLimit, (body) => {
      if (!Buffer.isBuffer(body)) return done(body, undefined);
      try {
        // Millions of empty objects are refused before JSON.parse builds them (body-scan.ts).
        scanJsonBody(body, jsonLength(body, request.headers[HEADER_LENGTH]), limits);
      } catch (refusal) {
        return done(refusal as Error, undefined);
      }
      done(null, body);
    });
  });

  app.setErrorHandler((error, request, reply) => {
    const answer = httpAnswerFor(error);
    const { status, headers } = answer;
    if (status === 500) request.log.error(error);
    // fastify's own 415 (a Content-Type it cannot parse) says what arrived; ours already do.
    const message =
      (error as { code?: unknown }).code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE'
        ? `${answer.message}, got ${clip(JSON.stringify(request.headers['content-type'] ?? 'none'))}`
        : answer.message;
    void reply.code(status).headers(headers).send({ error: message });
  });

  app.get('/v2', async () => front.serverMetadata());
  app.get('/v2/health/live', async () => ({ live: true }));
  if (options.metrics !== undefined)
    registerStatisticsRoutes(app, options.metrics.statistics, (name) => versionsServed(registry, name));
  front.extensions.add('binary_tensor_data');
  const actions = repositoryActions(registry, options.modelControl ?? 'none');
  registerRepositoryRoutes(app, actions);
  registerModelList(app, () => actions.index());
  front.extensions.add('model_repository');
  registerExtensionRoutes(app, front, { traceSwitch: options.traceSwitch });
  registerSharedMemoryRoutes(app, front.sharedMemory);
  registerGenerateRoutes(app, registry);
  app.get('/v2/health/ready', async (_request, reply) => {
    const ready = isReady();
    return reply.code(ready ? 200 : 503).send({ ready });
  });
  const metadata = async (request: FastifyRequest<{ Params: { name: string; version?: string } }>) =>
    front.metadata(request.params.name, request.params.version);
  app.get<{ Params: { name: string } }>('/v2/models/:name', metadata);
  app.get<{ Params: { name: string; version: string } }>('/v2/models/:name/versions/:version', metadata);
  const ready = async (
    request: FastifyRequest<{ Params: { name: string; version?: string } }>,
    reply: FastifyReply,
  ) => {
    const isReady = front.modelReady(request.params.name, request.params.version);
    return reply.code(isReady ? 200 : 503).send({ name: request.params.name, ready: isReady });
  };
  app.get<{ Params: { name: string } }>('/v2/models/:name/ready', ready);
  app.get<{ Params: { name: string; version: string } }>('/v2/models/:name/versions/:version/ready', ready);

  // Each call's AbortController is reused after it succeeded (abort-pool.ts): making one is a tenth of a tiny request.
  const signals = new AbortPool();
  // Not an async function: a request waits for its batch behind one promise reaction (see InferenceFront.infer).
  const infer = (
    request: FastifyRequest<{ Params: { name: string; version?: string } }>,
    reply: FastifyReply,
  ): Promise<Buffer | string> => {
    // A client that hangs up releases its place in the queue (or its slot in a running batch).
    const controller = signals.take();
    const onClose = (): void => {
      if (!reply.raw.writableFinished) controller.abort(new ProtocolError('cancelled', 'Client closed the connection'));
    };
    // `on`, not `once` (a response closes once, and both endings take it off): no wrapper objects a request.
    reply.raw.on('close', onClose);
    return front
      .infer(
        {
          protocol: 'rest',
          name: request.params.name,
          version: request.params.version,
          signal: controller.signal,
          trace: spanOf(request),
          decode: (m) => {
            if (!Buffer.isBuffer(request.body)) throw invalidArgument('Request needs a JSON body');
            const header = request.headers[HEADER_LENGTH];
            const headerLength = Array.isArray(header) ? header[0] : header;
            // `Inference-Header-Content-Length: 0`: the whole body is the one input (raw-request.ts).
            if (isRawRequest(headerLength)) return decodeRawRequest(request.body, m.name, m.signature, m.maxBatchSize);
            const { json, binary } = splitBody(request.body, headerLength);
            return decodeInferRequest(json, binary, m.signature, m.maxBatchSize, front.sharedMemory);
          },
        },
        encodeAnswer,
      )
      .then(
        (response) => {
          reply.raw.off('close', onClose);
          signals.give(controller);
          // fastify sends what the handler's promise resolves to.
          reply.headers(response.headers);
          return response.body;
        },
        (error: unknown) => {
          reply.raw.off('close', onClose);
          throw error;
        },
      );
  };
  app.post<{ Params: { name: string } }>('/v2/models/:name/infer', infer);
  app.post<{ Params: { name: string; version: string } }>('/v2/models/:name/versions/:version/infer', infer);
}
