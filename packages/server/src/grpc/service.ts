import { MAX_TIMER_MS } from 'batched-fn';
import { Server, ServerCredentials, status as GrpcStatus, type sendUnaryData, type ServerUnaryCall, type UntypedServiceImplementation } from '@grpc/grpc-js';
import type { InFlight } from '../drain.js';
import { FLAG_DEFAULTS } from '../flags.js';
import { HttpError } from '../kserve/errors.js';
import type { InferenceFront } from '../kserve/infer-front.js';
import type { RepositoryActions } from '../kserve/repository-routes.js';
import type { ModelStatistics } from '../kserve/statistics.js';
import { decodeGrpcInfer, type GrpcInferRequest } from './decode.js';
import { encodeGrpcInfer } from './encode.js';
import { loadInferenceService } from './proto.js';
import { grpcStatusFor, toServiceError } from './status.js';
import { guardedService, hookStreams, RefusedRequest, timeoutHeaderGuard } from './guards.js';
import { endRequestSpan, type ExtractParent, SPAN_KIND_SERVER, type SpanLike, type TracerLike } from '../otel/types.js';

const RPC_ATTRIBUTES = { 'rpc.system': 'grpc', 'rpc.service': 'inference.GRPCInferenceService', 'rpc.method': 'ModelInfer' };
/** gRPC codes the RPC conventions count as the server's error on a server span. */
const SERVER_FAULTS = new Set([GrpcStatus.UNKNOWN, GrpcStatus.DEADLINE_EXCEEDED, GrpcStatus.UNIMPLEMENTED, GrpcStatus.INTERNAL, GrpcStatus.UNAVAILABLE, GrpcStatus.DATA_LOSS]);

export interface GrpcServeOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Largest request message in bytes (REST's body limit, so both faces take the same requests). */
  maxMessageBytes: number;
  /** Most concurrent calls (HTTP/2 streams) on one connection. @default 100 */
  grpcMaxStreams?: number;
  /** Longest a call may take to send its request after its headers, in ms; then DEADLINE_EXCEEDED. @default 30000 */
  grpcReceiveTimeout?: number;
  /** Most `inputs`, and most `outputs`, in a ModelInferRequest, counted before decoding. @default 1024 */
  maxTensors?: number;
  /** Most messages, map entries, BYTES elements and shape dimensions in a ModelInferRequest, counted before decoding. @default 65536 */
  maxObjects?: number;
}

export interface RunningGrpc {
  /** The port it listens on (the real one, with `port: 0`). */
  port: number;
  /** Stops taking calls and resolves when every accepted call has been answered. */
  close(): Promise<void>;
}

type Handler<Req, Res> = (request: Req, call: ServerUnaryCall<Req, Res>) => Res | Promise<Res>;

/** A unary RPC from a function: whatever it throws becomes the status REST's answer maps to. */
function unary<Req, Res>(handler: Handler<Req, Res>) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
    Promise.resolve()
      .then(() => {
        // A message the guard refused while deserializing (guards.ts): answered INVALID_ARGUMENT.
        const request: unknown = call.request;
        if (request instanceof RefusedRequest) throw request.error;
        return handler(call.request, call);
      })
      .then(
        (response) => callback(null, response),
        (error: unknown) => callback(toServiceError(error)),
      );
  };
}

/** Milliseconds the client's deadline leaves (capped to a timer's range), or undefined without one. */
function remainingMs(call: ServerUnaryCall<unknown, unknown>): number | undefined {
  const deadline = call.getDeadline();
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  if (!Number.isFinite(at)) return undefined;
  return Math.min(MAX_TIMER_MS, Math.max(0, at - Date.now()));
}

/**
 * The Open Inference Protocol's GRPCInferenceService (with Triton's repository and
 * statistics RPCs) over the same front as REST: the same models, batcher, checks,
 * errors and metrics (`protocol="grpc"`).
 */
export function inferenceService(
  front: InferenceFront,
  actions: RepositoryActions,
  statistics: ModelStatistics | undefined,
  draining: () => boolean,
  tracker: InFlight,
  telemetry?: { tracer: TracerLike; extract: ExtractParent },
): UntypedServiceImplementation {
  const versionOf = (name: string): string | undefined => front.registry.get(name)?.model?.version;
  return {
    ServerLive: unary(() => ({ live: true })),
    ServerReady: unary(() => ({ ready: front.isReady() })),
    ModelReady: unary((request: { name: string; version: string }) => ({ ready: front.modelReady(request.name) })),
    ServerMetadata: unary(() => front.serverMetadata()),
    ModelMetadata: unary((request: { name: string; version: string }) => front.metadata(request.name, request.version)),
    ModelStatistics: unary((request: { name: string; version: string }) => {
      if (statistics === undefined) throw new HttpError(404, 'This server keeps no statistics');
      return { model_stats: statistics.query(request.name, request.version, versionOf) };
    }),
    RepositoryIndex: unary((request: { ready: boolean }) => ({ models: actions.index(request.ready) })),
    RepositoryModelLoad: unary(async (request: { model_name: string }) => {
      await actions.load(request.model_name);
      return {};
    }),
    RepositoryModelUnload: unary(async (request: { model_name: string }) => {
      await actions.unload(request.model_name);
      return {};
    }),
    ModelInfer: unary(async (request: GrpcInferRequest, call) => {
      // A client's traceparent arrives as call metadata: the server span continues its trace.
      const span = telemetry?.tracer.startSpan('inference.GRPCInferenceService/ModelInfer', { kind: SPAN_KIND_SERVER, attributes: RPC_ATTRIBUTES }, telemetry.extract(call.metadata.getMap()));
      tracker.begin();
      try {
        const answer = await modelInfer(request, call, span);
        endRequestSpan(span, false, { 'rpc.grpc.status_code': 0 });
        return answer;
      } catch (error) {
        const { code, details } = grpcStatusFor(error);
        endRequestSpan(span, SERVER_FAULTS.has(code), { 'rpc.grpc.status_code': code }, details);
        throw error;
      } finally {
        tracker.end();
      }
    }),
  };

  async function modelInfer(request: GrpcInferRequest, call: ServerUnaryCall<GrpcInferRequest, unknown>, span: SpanLike | undefined) {
    if (draining()) throw new HttpError(503, 'Server is shutting down', { 'retry-after': '1' });
    const deadline = remainingMs(call);
    // A cancelled call leaves the queue before dispatch (or its slot in a running batch).
    const controller = new AbortController();
    const onCancelled = (): void => {
      const late = deadline !== undefined && remainingMs(call) === 0;
      controller.abort(late ? new HttpError(504, 'Deadline exceeded') : new HttpError(499, 'Client cancelled the call'));
    };
    call.once('cancelled', onCancelled);
    try {
      let raw = false;
      return await front.infer(
        {
          protocol: 'grpc',
          name: request.model_name ?? '',
          version: request.model_version,
          signal: controller.signal,
          deadline,
          trace: span,
          decode: (m) => {
            const decoded = decodeGrpcInfer(request, m.signature, m.maxBatchSize);
            raw = decoded.raw;
            return decoded;
          },
        },
        (m, decoded, result) => encodeGrpcInfer(m.name, m.version, decoded.id, result, decoded.outputs, raw),
      );
    } finally {
      call.off('cancelled', onCancelled);
    }
  }
}

/** Starts the gRPC server on `host:port`; resolves once it listens. */
export async function startGrpcServer(service: UntypedServiceImplementation, tracker: InFlight, options: GrpcServeOptions): Promise<RunningGrpc> {
  const limit = (name: keyof GrpcServeOptions, value: number, max: number): number => {
    if (!Number.isSafeInteger(value) || value < 1 || value > max) throw new RangeError(`Expected \`${name}\` to be an integer from 1 to ${max}, got \`${value}\``);
    return value;
  };
  const streams = limit('grpcMaxStreams', options.grpcMaxStreams ?? FLAG_DEFAULTS.grpcMaxStreams, 2 ** 32 - 1);
  const receiveTimeoutMs = limit('grpcReceiveTimeout', options.grpcReceiveTimeout ?? FLAG_DEFAULTS.grpcReceiveTimeout, MAX_TIMER_MS);
  const wire = { maxTensors: limit('maxTensors', options.maxTensors ?? FLAG_DEFAULTS.maxTensors, Number.MAX_SAFE_INTEGER), maxObjects: limit('maxObjects', options.maxObjects ?? FLAG_DEFAULTS.maxObjects, Number.MAX_SAFE_INTEGER) };
  // Without a stream cap HTTP/2 allows 2^32-1 streams a connection, each holding memory until the client hangs up.
  const server = new Server({
    'grpc.max_receive_message_length': options.maxMessageBytes,
    'grpc.enable_channelz': 0,
    'grpc.max_concurrent_streams': streams,
    interceptors: [timeoutHeaderGuard],
  });
  server.addService(guardedService(loadInferenceService().service, wire), service);
  // IPv6 literals need brackets in a gRPC target.
  const host = options.host.includes(':') && !options.host.startsWith('[') ? `[${options.host}]` : options.host;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${host}:${options.port}`, ServerCredentials.createInsecure(), (error, bound) => {
      if (error === null) {
        // Before the first connection can send a stream: deadlines grpc-js mis-parses, requests that never arrive (guards.ts).
        hookStreams(server, receiveTimeoutMs);
        resolve(bound);
      } else reject(new Error(/EADDRINUSE/.test(error.message) ? `gRPC address ${host}:${options.port} is already in use (--grpc-port)` : `cannot listen for gRPC on ${host}:${options.port}: ${error.message}`));
    });
  });
  let closing: Promise<void> | undefined;
  return {
    port,
    close: () => {
      closing ??= (async () => {
        const graceful = new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
        await Promise.race([graceful, tracker.settled()]);
        server.forceShutdown();
      })();
      return closing;
    },
  };
}
