import { MAX_TIMER_MS } from 'batched-fn';
import {
  type Metadata,
  Server,
  ServerCredentials,
  type ServerInterceptor,
  status as GrpcStatus,
  type sendUnaryData,
  type ServerUnaryCall,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type { InFlight } from '../protocol/in-flight.js';
import { AbortPool } from '../protocol/abort-pool.js';
import { SETTING_DEFAULTS } from '../settings/settings.js';
import { ProtocolError } from '../protocol/errors.js';
import type { InferenceFront } from '../protocol/infer-front.js';
import type { DecodedRequest } from '../protocol/decode.js';
import type { ServedModel } from '../model/served-model.js';
import type { InferResult } from '../model/tensor.js';
import type { RepositoryActions } from '../protocol/repository-actions.js';
import { GRPC_RESTRICTED, parseRestrictions } from '../protocol/restricted.js';
import type { ModelStatistics } from '../protocol/statistics.js';
import { decodeGrpcInfer, type GrpcInferRequest } from './decode.js';
import { encodeGrpcInfer, type GrpcInferResponse } from './encode.js';
import { grpcGeneration } from './generation.js';
import { GrpcHealth } from './health.js';
import { grpcLoadParameters } from './load-parameters.js';
import { type GrpcParameter, loadInferenceService } from './proto.js';
import { restrictedGuard } from './restricted.js';
import { withResponseWriters } from './infer-response-wire.js';
import { sharedMemoryHandlers } from './shared-memory.js';
import { grpcStatusFor, toServiceError } from './status.js';
import { modelStreamInfer, remainingMs, StreamRegistry, whyCancelled } from './stream.js';
import { guardedService, hookStreams, RefusedRequest } from './guards.js';
import { extensionHandlers } from './extensions.js';
import { versionsServed } from '../model/versions.js';
import { MODEL_ATTRIBUTE, type TraceSwitch } from '../protocol/trace-switch.js';
import { endRequestSpan, type ExtractParent, SPAN_KIND_SERVER, type SpanLike, type TracerLike } from '../otel/types.js';

/** The answer of an inference, from what it decoded and the model's result (one function, not a closure a call). */
const encodeAnswer = (m: ServedModel, decoded: DecodedRequest, result: InferResult): GrpcInferResponse =>
  encodeGrpcInfer(m.name, m.version, decoded.id, result, decoded.outputs);

/** gRPC codes the RPC conventions count as the server's error on a server span. */
const SERVER_FAULTS = new Set([
  GrpcStatus.UNKNOWN,
  GrpcStatus.DEADLINE_EXCEEDED,
  GrpcStatus.UNIMPLEMENTED,
  GrpcStatus.INTERNAL,
  GrpcStatus.UNAVAILABLE,
  GrpcStatus.DATA_LOSS,
]);

export interface GrpcServeOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Largest request message in bytes (REST's body limit, so both faces take the same requests). */
  maxMessageBytes: number;
  /** Most concurrent calls (HTTP/2 streams) on one connection, and most unanswered requests on one ModelStreamInfer stream. @default 100 */
  grpcMaxStreams?: number;
  /** Longest a call may take to send its request after its headers (a stream: each message, from its first byte), in ms; then DEADLINE_EXCEEDED. @default 30000 */
  grpcReceiveTimeout?: number;
  /** Most `inputs`, and most `outputs`, in a ModelInferRequest, counted before decoding. @default 1024 */
  maxTensors?: number;
  /** Most messages, map entries and shape dimensions in a ModelInferRequest, counted before decoding. @default 65536 */
  maxObjects?: number;
  /** Most `bytes_contents` elements in a ModelInferRequest, counted before decoding. @default 1048576 */
  maxBytesElements?: number;
  /** `--grpc-restricted-protocol` values: `<protocol>,...:<key>=<value>`, as Triton takes them. */
  grpcRestrictedProtocol?: string | readonly string[];
}

export interface RunningGrpc {
  /** The port it listens on (the real one, with `port: 0`). */
  port: number;
  /** Re-reads the server's readiness into the health service (after it changed outside the model registry: the server is ready). */
  refreshHealth(): void;
  /** Stops taking calls and resolves when every accepted call has been answered. */
  close(): Promise<void>;
}

/** The gRPC face, before it listens: its handlers, the health service, and what drain tells. */
export interface GrpcService {
  /** The GRPCInferenceService handlers; `maxInFlight` bounds each ModelStreamInfer stream. */
  handlers(settings: { maxInFlight: number }): UntypedServiceImplementation;
  readonly health: GrpcHealth;
  /** Shutdown began: health says NOT_SERVING, streams end once they have answered what they read. */
  drain(): void;
}

type Handler<Req, Res> = (request: Req, call: ServerUnaryCall<Req, Res>) => Res | Promise<Res>;

/**
 * A unary RPC from a function: whatever it throws becomes the status REST's answer maps to. The
 * handler runs at once, in grpc-js's own call, and a plain value is answered at once: no promise
 * hop for every call.
 */
function unary<Req, Res>(handler: Handler<Req, Res>) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
    let answer: Res | Promise<Res>;
    try {
      // A message the guard refused while deserializing (guards.ts): answered INVALID_ARGUMENT.
      const request: unknown = call.request;
      if (request instanceof RefusedRequest) throw request.error;
      answer = handler(call.request, call);
    } catch (error) {
      callback(toServiceError(error));
      return;
    }
    if (answer instanceof Promise)
      answer.then(
        (response) => callback(null, response),
        (error: unknown) => callback(toServiceError(error)),
      );
    else callback(null, answer);
  };
}

/**
 * The Open Inference Protocol's GRPCInferenceService (with Triton's extensions) over the same
 * front as REST: the same models, batcher, checks, errors and metrics (`protocol="grpc"`).
 * A generator (decoupled: many responses per request) streams on ModelStreamInfer (generation.ts).
 */
export function inferenceService(
  front: InferenceFront,
  actions: RepositoryActions,
  statistics: ModelStatistics | undefined,
  draining: () => boolean,
  tracker: InFlight,
  telemetry?: { tracer: TracerLike; extract: ExtractParent; traceSwitch?: TraceSwitch },
): GrpcService {
  const versionsOf = (name: string): string[] | undefined => versionsServed(front.registry, name);
  const health = new GrpcHealth(front);
  const streams = new StreamRegistry();
  // Each call's AbortController is reused after it succeeded (abort-pool.ts): making one is a tenth of a tiny call.
  const signals = new AbortPool();

  /** A request's span ends with the gRPC status its error is answered with. */
  const endSpanFailed = (span: SpanLike, error: unknown): void => {
    const { code, details } = grpcStatusFor(error);
    endRequestSpan(span, SERVER_FAULTS.has(code), { 'rpc.grpc.status_code': code }, details);
  };

  /**
   * One inference, for ModelInfer and for each request of a ModelStreamInfer stream. Not an async
   * function: a request waits for its batch behind promise reactions, not in suspended frames.
   */
  function inferOnce(
    method: 'ModelInfer' | 'ModelStreamInfer',
    request: GrpcInferRequest,
    call: { signal: AbortSignal; deadline: number | undefined; metadata: Metadata },
  ): Promise<GrpcInferResponse> {
    let span: SpanLike | undefined;
    try {
      // A client's traceparent arrives as call metadata: the server span continues its trace.
      // The model's name from the start: the trace settings sample per model (otel/trace-switch.ts).
      // Without --otel none of this is built.
      span =
        telemetry === undefined
          ? undefined
          : telemetry.tracer.startSpan(
              `inference.GRPCInferenceService/${method}`,
              {
                kind: SPAN_KIND_SERVER,
                attributes: {
                  'rpc.system': 'grpc',
                  'rpc.service': 'inference.GRPCInferenceService',
                  'rpc.method': method,
                  [MODEL_ATTRIBUTE]: request.model_name ?? '',
                },
              },
              telemetry.extract(call.metadata.getMap()),
            );
      if (draining()) throw new ProtocolError('unavailable', 'Server is shutting down', { retryAfter: 1 });
      const answer = front.infer(
        {
          protocol: 'grpc',
          name: request.model_name ?? '',
          version: request.model_version,
          signal: call.signal,
          deadline: call.deadline,
          trace: span,
          decode: (m) => decodeGrpcInfer(request, m.signature, m.maxBatchSize, front.sharedMemory),
        },
        encodeAnswer,
      );
      if (span === undefined) return answer;
      const traced = span;
      return answer.then(
        (response) => {
          endRequestSpan(traced, false, { 'rpc.grpc.status_code': 0 });
          return response;
        },
        (error: unknown) => {
          endSpanFailed(traced, error);
          throw error;
        },
      );
    } catch (error) {
      if (span !== undefined) endSpanFailed(span, error);
      return Promise.reject(error);
    }
  }

  const handlers = (settings: { maxInFlight: number }): UntypedServiceImplementation => ({
    ServerLive: unary(() => ({ live: true })),
    ServerReady: unary(() => ({ ready: front.isReady() })),
    ModelReady: unary((request: { name: string; version: string }) => ({
      ready: front.modelReady(request.name, request.version),
    })),
    ServerMetadata: unary(() => front.serverMetadata()),
    ModelMetadata: unary((request: { name: string; version: string }) => front.metadata(request.name, request.version)),
    ModelStatistics: unary((request: { name: string; version: string }) => {
      if (statistics === undefined) throw new ProtocolError('not-found', 'This server keeps no statistics');
      return { model_stats: statistics.query(request.name, request.version, versionsOf) };
    }),
    RepositoryIndex: unary((request: { ready: boolean }) => ({ models: actions.index(request.ready) })),
    RepositoryModelLoad: unary(async (request: { model_name: string; parameters?: Record<string, GrpcParameter> }) => {
      await actions.load(request.model_name, grpcLoadParameters(request.parameters));
      return {};
    }),
    RepositoryModelUnload: unary(async (request: { model_name: string }) => {
      await actions.unload(request.model_name);
      return {};
    }),
    // Not through unary(): the hottest handler answers from one reaction to the front's promise, with
    // one listener for the cancellation (once() would wrap it in two more objects a call).
    ModelInfer: (
      call: ServerUnaryCall<GrpcInferRequest | RefusedRequest, GrpcInferResponse>,
      callback: sendUnaryData<GrpcInferResponse>,
    ): void => {
      const request = call.request;
      // A message the guard refused while deserializing (guards.ts): answered INVALID_ARGUMENT.
      if (request instanceof RefusedRequest) {
        callback(toServiceError(request.error));
        return;
      }
      tracker.begin();
      const deadline = remainingMs(call.getDeadline());
      // A cancelled call leaves the queue before dispatch (or its slot in a running batch).
      const controller = signals.take();
      const onCancelled = (): void => controller.abort(whyCancelled(call.getDeadline()));
      call.on('cancelled', onCancelled);
      inferOnce('ModelInfer', request, { signal: controller.signal, deadline, metadata: call.metadata }).then(
        (answer) => {
          call.off('cancelled', onCancelled);
          tracker.end();
          signals.give(controller);
          callback(null, answer);
        },
        (error: unknown) => {
          call.off('cancelled', onCancelled);
          tracker.end();
          callback(toServiceError(error));
        },
      );
    },
    ModelStreamInfer: modelStreamInfer(
      {
        infer: (request, call) => inferOnce('ModelStreamInfer', request, call),
        generate: (request, call) => {
          if (draining()) throw new ProtocolError('unavailable', 'Server is shutting down', { retryAfter: 1 });
          return grpcGeneration(front.registry, request, { ...call, sharedMemory: front.sharedMemory });
        },
        tracker,
        maxInFlight: settings.maxInFlight,
      },
      streams,
    ),
    // Model configuration, logging and trace settings, over REST's functions (grpc/extensions.ts).
    ...extensionHandlers(front, telemetry?.traceSwitch),
    // System shared memory, and CUDA's refusal (grpc/shared-memory.ts), over the regions REST uses.
    ...sharedMemoryHandlers(front.sharedMemory),
  });

  return {
    handlers,
    health,
    drain: () => {
      health.drain();
      streams.drain();
    },
  };
}

/** Starts the gRPC server on `host:port`; resolves once it listens. */
export async function startGrpcServer(
  service: GrpcService,
  tracker: InFlight,
  options: GrpcServeOptions,
): Promise<RunningGrpc> {
  const limit = (name: keyof GrpcServeOptions, value: number, max: number): number => {
    if (!Number.isSafeInteger(value) || value < 1 || value > max)
      throw new RangeError(`Expected \`${name}\` to be an integer from 1 to ${max}, got \`${value}\``);
    return value;
  };
  const streams = limit('grpcMaxStreams', options.grpcMaxStreams ?? SETTING_DEFAULTS.grpcMaxStreams, 2 ** 32 - 1);
  const receiveTimeoutMs = limit(
    'grpcReceiveTimeout',
    options.grpcReceiveTimeout ?? SETTING_DEFAULTS.grpcReceiveTimeout,
    MAX_TIMER_MS,
  );
  const maxMessageBytes = options.maxMessageBytes;
  const wire = {
    maxTensors: limit('maxTensors', options.maxTensors ?? SETTING_DEFAULTS.maxTensors, Number.MAX_SAFE_INTEGER),
    maxObjects: limit('maxObjects', options.maxObjects ?? SETTING_DEFAULTS.maxObjects, Number.MAX_SAFE_INTEGER),
    maxBytesElements: limit(
      'maxBytesElements',
      options.maxBytesElements ?? SETTING_DEFAULTS.maxBytesElements,
      Number.MAX_SAFE_INTEGER,
    ),
  };
  const restrictions = parseRestrictions(options.grpcRestrictedProtocol, GRPC_RESTRICTED);
  // No interceptor unless restrictions are set: with any, grpc-js runs every call through its intercepting layer.
  const interceptors: ServerInterceptor[] = restrictions.size > 0 ? [restrictedGuard(restrictions)] : [];
  // Without a stream cap HTTP/2 allows 2^32-1 streams a connection, each holding memory until the client hangs up.
  const server = new Server({
    'grpc.max_receive_message_length': maxMessageBytes,
    'grpc.enable_channelz': 0,
    'grpc.max_concurrent_streams': streams,
    interceptors,
  });
  // Inference requests and answers go through our own wire codecs (infer-request-wire.ts, infer-response-wire.ts).
  server.addService(
    withResponseWriters(guardedService(loadInferenceService().service, wire)),
    service.handlers({ maxInFlight: streams }),
  );
  service.health.addTo(server);
  // IPv6 literals need brackets in a gRPC target.
  const host = options.host.includes(':') && !options.host.startsWith('[') ? `[${options.host}]` : options.host;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${host}:${options.port}`, ServerCredentials.createInsecure(), (error, bound) => {
      if (error === null) {
        // Before the first connection can send a stream: deadlines grpc-js mis-parses, requests that never arrive (guards.ts).
        hookStreams(server, { receiveTimeoutMs, maxMessageBytes });
        resolve(bound);
      } else
        reject(
          new Error(
            /EADDRINUSE/.test(error.message)
              ? `gRPC address ${host}:${options.port} is already in use (--grpc-port)`
              : `cannot listen for gRPC on ${host}:${options.port}: ${error.message}`,
          ),
        );
    });
  });
  let closing: Promise<void> | undefined;
  return {
    port,
    refreshHealth: () => service.health.sync(),
    close: () => {
      closing ??= (async () => {
        service.drain();
        const graceful = new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
        await Promise.race([graceful, tracker.settled()]);
        server.forceShutdown();
      })();
      return closing;
    },
  };
}
