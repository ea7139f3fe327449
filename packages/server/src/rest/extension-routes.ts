import type { FastifyInstance } from 'fastify';
import { type ServerLog, serverLog } from '../log.js';
import type { ModelStatistics } from '../protocol/statistics.js';
import { invalidArgument } from '../protocol/errors.js';
import type { InferenceFront } from '../protocol/infer-front.js';
import { updateLogSettings } from '../protocol/log-settings.js';
import { modelConfig } from '../protocol/model-config.js';
import { traceSettings } from '../protocol/trace-settings.js';
import type { TraceSwitch } from '../protocol/trace-switch.js';
import { httpAnswerFor } from './http-status.js';

/**
 * The REST routes of Triton's model configuration, logging, trace and statistics extensions (their
 * gRPC twins are grpc/extensions.ts and grpc/service.ts), over the protocol's functions. Each adds
 * its name to the server's extensions as it registers.
 */
export function registerExtensionRoutes(
  app: FastifyInstance,
  front: InferenceFront,
  options: { traceSwitch?: TraceSwitch | undefined } = {},
): void {
  registerModelConfigRoutes(app, front);
  registerLoggingRoutes(app, front);
  registerTraceRoutes(app, front, options.traceSwitch);
}

/** A JSON body of a settings route (REST): empty is "no change", as Triton allows. */
export function settingsBody(body: unknown): unknown {
  if (body === undefined || body === null) return undefined;
  const bytes = Buffer.isBuffer(body) ? body : undefined;
  if (bytes === undefined) return body;
  if (bytes.length === 0) return undefined;
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw invalidArgument(`Malformed JSON: ${(error as Error).message}`);
  }
}

/** The model configuration; the model lookup (and its errors) is the metadata route's. */
function registerModelConfigRoutes(app: FastifyInstance, front: InferenceFront): void {
  front.extensions.add('model_configuration');
  const answer = async (request: { params: { name: string; version?: string } }) =>
    modelConfig(front.serving(request.params.name, request.params.version));
  app.get<{ Params: { name: string } }>('/v2/models/:name/config', answer);
  app.get<{ Params: { name: string; version: string } }>('/v2/models/:name/versions/:version/config', answer);
}

/**
 * The logging settings, and what the server logs of REST itself: every answer it failed (a 500) as
 * an ERROR, and with `log_verbose_level` 1 or more one line per request.
 */
function registerLoggingRoutes(app: FastifyInstance, front: InferenceFront, log: ServerLog = serverLog): void {
  front.extensions.add('logging');
  app.get('/v2/logging', async () => log.settings);
  app.post('/v2/logging', async (request) => updateLogSettings(settingsBody(request.body), log));
  app.addHook('onError', async (request, _reply, error) => {
    const { status, message } = httpAnswerFor(error);
    // A 500 is the server's (or its model's) failure; a 503 or 504 is load or a deadline, said to the client alone.
    if (status === 500) log.error('http', `${request.method} ${request.url.slice(0, 200)}: ${message}`);
  });
  // A callback hook, not an async one: it runs on every answer (a promise each cost about 1.7 µs).
  app.addHook('onResponse', (request, reply, done) => {
    if (log.verboseOn(1))
      log.verbose(
        1,
        'http',
        `${request.method} ${request.url.slice(0, 200)} ${reply.statusCode} ${reply.elapsedTime.toFixed(3)} ms`,
      );
    done();
  });
}

/** The trace settings; `trace` is listed among the extensions only when `--otel` gives them something to drive. */
function registerTraceRoutes(app: FastifyInstance, front: InferenceFront, traceSwitch: TraceSwitch | undefined): void {
  if (traceSwitch !== undefined) front.extensions.add('trace');
  app.get('/v2/trace/setting', async () => traceSettings(front, traceSwitch, undefined));
  app.post('/v2/trace/setting', async (request) =>
    traceSettings(front, traceSwitch, undefined, settingsBody(request.body)),
  );
  app.get<{ Params: { name: string } }>('/v2/models/:name/trace/setting', async (request) =>
    traceSettings(front, traceSwitch, request.params.name),
  );
  app.post<{ Params: { name: string } }>('/v2/models/:name/trace/setting', async (request) =>
    traceSettings(front, traceSwitch, request.params.name, settingsBody(request.body)),
  );
}

/** Triton's statistics extension: `GET /v2/models[/{name}[/versions/{v}]]/stats`, for the models `versionsOf` knows. */
export function registerStatisticsRoutes(
  app: FastifyInstance,
  statistics: ModelStatistics,
  versionsOf: (name: string) => readonly string[] | undefined,
): void {
  app.get('/v2/models/stats', async () => ({ model_stats: statistics.query(undefined, undefined, versionsOf) }));
  const one = async (request: { params: { name: string; version?: string } }) => ({
    model_stats: statistics.query(request.params.name, request.params.version, versionsOf),
  });
  app.get<{ Params: { name: string } }>('/v2/models/:name/stats', one);
  app.get<{ Params: { name: string; version: string } }>('/v2/models/:name/versions/:version/stats', one);
}
