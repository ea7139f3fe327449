import { readFileSync } from 'node:fs';
import { type BatchCompute, batchComputeOf } from '../model/compute-timing.js';
import type { ServedModel } from '../model/served-model.js';
import { type InferResult, type Tensor, withOwnInputBuffers } from '../model/tensor.js';
import { servedVersions } from '../model/versions.js';
import type { ModelEntry, ModelRegistry } from '../repository/registry.js';
import { classify } from './classification.js';
import type { DecodedRequest } from './decode.js';
import { invalidArgument, ProtocolError } from './errors.js';
import { ServerExtensions } from './extensions.js';
import { batcherPriority } from './schedule-policy.js';
import { SharedMemoryRegistry } from './shared-memory.js';
import { clip } from './status.js';

/**
 * Which face of the server a request came through: a fixed set, so it can be a metrics label.
 * `internal`: a model calling another (an ensemble's step, a JS model's `models.infer`).
 */
export type Protocol = 'rest' | 'grpc' | 'internal';

/**
 * The label of requests for models this server does not have. Label values never come
 * from a client: 60,000 made-up names would otherwise be 60,000 series in /metrics.
 */
export const UNKNOWN_MODEL_LABEL = '(unknown)';

/** The server's version, as published: from its own package.json, never written twice. */
const MANIFEST = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
  homepage?: string;
};
export const SERVER_VERSION = MANIFEST.version;
/** Where the package's docs are (package.json's `homepage`), for the server's index page. */
export const SERVER_HOMEPAGE = MANIFEST.homepage ?? '';

/**
 * Who is told of every answered request: the server's metrics (metrics/metrics.ts) implement it.
 * Observability listens here; the front never imports it.
 */
export interface RequestObserver {
  /** A request was answered after `seconds`, with `status` (the HTTP status REST answers it with). */
  request(model: string, status: number, seconds: number, protocol: Protocol, version?: string): void;
  /** The statistics extension's counters: each execution's compute phases. */
  readonly statistics: { compute(name: string, split: BatchCompute, version?: string): void };
}

export interface FrontOptions {
  /** Default deadline per request in ms; a request's own timeout (or gRPC deadline) may only lower it. */
  timeout?: number | undefined;
  metrics?: RequestObserver | undefined;
  /**
   * The status a failed request is counted under: the HTTP status REST answers it with, for both
   * protocols, as /metrics documents (rest/http-status.ts `httpStatusFor`). Given by whoever builds
   * the front, so the protocol layer needs no transport's table.
   */
  statusOf: (error: unknown) => number;
  /** False while starting or draining. */
  isReady?: (() => boolean) | undefined;
  /** Whether the generate extension is served. */
  generates?: boolean;
  /** The extensions `/v2` lists: share one set between the REST and gRPC fronts of a server. */
  extensions?: ServerExtensions | undefined;
  /** The system shared-memory regions both faces share; without it, the extension is off. */
  sharedMemory?: SharedMemoryRegistry | undefined;
}

export interface InferCall {
  protocol: Protocol;
  name: string;
  /** The version the client asked for; undefined or '' for the model's own. */
  version: string | undefined;
  /** Checks and decodes the request against the serving model. */
  decode: (model: ServedModel) => DecodedRequest;
  /** Aborted when the client goes away (hang-up, gRPC cancel). */
  signal: AbortSignal;
  /** Milliseconds the client still gives the call (a gRPC deadline), if it set one. */
  deadline?: number | undefined;
  /**
   * The request's server span, when traced (an OpenTelemetry span), or a caller's span context (a
   * model-to-model call): the batch that serves it links to it.
   */
  trace?: unknown;
}

/**
 * What REST and gRPC share: model lookup and its errors, metadata, and the
 * infer path (deadlines, priority, the batcher, metrics). Both protocols call
 * the same batcher through here, so their rows share batches, and every
 * answer and error is decided once.
 */
export class InferenceFront {
  readonly registry: ModelRegistry;
  /** The system shared-memory regions inputs are read from and outputs written into (off unless given). */
  readonly sharedMemory: SharedMemoryRegistry;
  /** What this server serves beyond the core protocol: each feature adds its name as it is wired. */
  readonly extensions: ServerExtensions;
  readonly #options: FrontOptions;

  constructor(registry: ModelRegistry, options: FrontOptions) {
    this.registry = registry;
    this.sharedMemory = options.sharedMemory ?? new SharedMemoryRegistry();
    this.#options = options;
    this.extensions = options.extensions ?? new ServerExtensions();
    // Served by infer() below, for every protocol.
    this.extensions.add('schedule_policy').add('classification');
    if (options.metrics !== undefined) this.extensions.add('statistics');
    if (options.generates === true) this.extensions.add('generate');
    if (this.sharedMemory.enabled) this.extensions.add('system_shared_memory');
  }

  isReady(): boolean {
    return this.#options.isReady?.() ?? true;
  }

  /** Triton's server metadata; `extensions` is what the features of this server registered (extensions.ts). */
  serverMetadata(): { name: string; version: string; extensions: string[] } {
    return { name: 'batched-fn', version: SERVER_VERSION, extensions: this.extensions.list() };
  }

  /**
   * A model the server has (in any state); a name it has never had is Triton's 400 (INVALID_ARG in
   * its model_repository_manager.cc), in Triton's words, which its clients and qa tests match.
   */
  known(name: string): ModelEntry {
    const entry = this.registry.get(name);
    if (entry === undefined)
      throw invalidArgument(`Request for unknown model: '${clip(name)}' is not found${this.#knownNames()}`);
    return entry;
  }

  /**
   * The names this server has, after Triton's words: ` (models here: a, b)`, at most 10 of them (a
   * repository may hold hundreds; GET /v2/models lists them all), or nothing when it has none.
   */
  #knownNames(): string {
    const names = [...new Set([...this.registry.entries().map((e) => e.name), ...this.registry.loadable()])].sort();
    if (names.length === 0) return '';
    const more = names.length > 10 ? `, and ${names.length - 10} more (GET /v2/models lists them)` : '';
    return ` (models here: ${names.slice(0, 10).join(', ')}${more})`;
  }

  /**
   * The instance serving `name`. The texts begin as Triton's (its model_lifecycle.cc), which its
   * tests match, and go on with ours: a known model that is not READY "has no available versions"
   * (a 503 with Retry-After, where Triton says 404: it is often a load under way), with its state
   * and reason; a version it lacks is a 404.
   */
  serving(name: string, version?: string): ServedModel {
    const entry = this.known(name);
    if (entry.state !== 'READY' || entry.model === undefined) {
      throw new ProtocolError(
        'unavailable',
        `Request for unknown model: '${entry.name}' has no available versions (it is ${entry.state}${entry.reason === '' ? '' : `: ${entry.reason}`})`,
        { retryAfter: 1 },
      );
    }
    // Without a version: the highest (the entry's own instance); with one, that version if served.
    const model = entry.model;
    if (version === undefined || version === '') return model;
    const versions = servedVersions(model);
    const found = versions.find((v) => v.version === version);
    if (found === undefined)
      throw new ProtocolError(
        'not-found',
        `Request for unknown model: '${model.name}' version ${clip(version)} is not found (it has ${versions.map((v) => v.version).join(', ')})`,
      );
    return found;
  }

  /** Whether the model (or that version of it) is READY; an unknown model is a 400, a version it does not serve is not ready. */
  modelReady(name: string, version?: string): boolean {
    const entry = this.known(name);
    if (!this.isReady() || entry.state !== 'READY' || entry.model === undefined) return false;
    return version === undefined || version === '' || servedVersions(entry.model).some((v) => v.version === version);
  }

  metadata(
    name: string,
    version?: string,
  ): { name: string; versions: string[]; platform: string; inputs: object[]; outputs: object[] } {
    const m = this.serving(name, version);
    // Every version served, as Triton lists them, whichever one was asked for.
    const versions = servedVersions(this.known(name).model ?? m).map((v) => v.version);
    return { name: m.name, versions, platform: m.platform, inputs: m.signature.inputs, outputs: m.signature.outputs };
  }

  /**
   * One inference: decode, wait in the model's batcher under the tightest deadline (the server's,
   * the model's, the request's own, the client's gRPC deadline) at the request's priority level
   * (schedule-policy.ts), answer any classification asked, encode. Counted in the metrics under
   * the model's name (or UNKNOWN_MODEL_LABEL) and the protocol, with its HTTP status.
   */
  infer<T>(
    call: InferCall,
    encode: (model: ServedModel, decoded: DecodedRequest, result: InferResult) => T,
  ): Promise<T> {
    const started = performance.now();
    const metrics = this.#options.metrics;
    // Known models (even unavailable ones) are counted under their name; anything else under one label.
    let label = UNKNOWN_MODEL_LABEL;
    // The version that took the request, for its failures' statistics (none: the request never reached one).
    let served: ServedModel | undefined;
    const count = (error: unknown): void =>
      metrics?.request(
        label,
        this.#options.statusOf(error),
        (performance.now() - started) / 1000,
        call.protocol,
        served?.version,
      );
    const failed = (error: unknown): never => {
      count(error);
      throw error;
    };
    // Not an async function: a request waits for its batch behind one promise reaction, rather than
    // in a suspended frame of its own that every pending request kept alive through the wait.
    try {
      label = this.registry.get(call.name)?.name ?? UNKNOWN_MODEL_LABEL;
      const span = call.trace as { setAttributes?: (attributes: Record<string, string>) => unknown } | undefined;
      if (typeof span?.setAttributes === 'function')
        span.setAttributes({ 'batched_fn.model': label, 'batched_fn.protocol': call.protocol });
      const m = this.serving(call.name, call.version);
      served = m;
      // A generator answers many responses per request: Triton's words for its decoupled models.
      if (m.generator !== undefined)
        throw invalidArgument(
          call.protocol === 'grpc'
            ? "ModelInfer RPC doesn't support models with decoupled transaction policy"
            : call.protocol === 'internal'
              ? `\`${m.name}\` is a generator: call it with models.generate, not models.infer`
              : "HTTP end point doesn't support models with decoupled transaction policy",
        );
      const decoded = call.decode(m);
      // A config.pbtxt without `allow_timeout_override` ignores a request's own timeout, as Triton does.
      const own = m.config?.allowTimeoutOverride === false ? undefined : decoded.timeout;
      const timeout = tightest(tightest(tightest(this.#options.timeout, m.timeout), own), call.deadline);
      const priority = batcherPriority(decoded.priority, m.config ?? NO_LEVELS, m.name);
      // One object, with only the options set (this runs for every request).
      const options: Parameters<ServedModel['infer']>[1] = { signal: call.signal };
      if (timeout !== undefined) options.timeout = Math.max(0, timeout);
      if (priority !== 0) options.priority = priority;
      if (decoded.priority !== undefined) options.level = decoded.priority;
      if (call.trace !== undefined) options.trace = call.trace;
      // A small request's tensors are views into Node's Buffer pool: only a model that copies them gets them so.
      const item = m.takesSharedViews === true ? decoded.item : withOwnInputBuffers(decoded.item);
      // A model of the caller's own (kservePlugin) may answer with any thenable, as `await` took it;
      // a native promise is read as `await` reads it, never through a `then` of its own.
      return promiseThen.call(
        Promise.resolve(m.infer(item, options)),
        (result: InferResult) => {
          try {
            const compute = batchComputeOf(result);
            if (compute !== undefined) metrics?.statistics.compute(m.name, compute, m.version);
            const answer = encode(m, decoded, classified(m, decoded, result));
            metrics?.request(m.name, 200, (performance.now() - started) / 1000, call.protocol, m.version);
            return answer;
          } catch (error) {
            return failed(error);
          }
        },
        failed,
      ) as Promise<T>;
    } catch (error) {
      count(error);
      return Promise.reject(error);
    }
  }
}

/** Taken once, as the core's Settle does: a promise whose own `then` was replaced cannot change how it is read. */
const promiseThen = Promise.prototype.then;

/** The lower of two deadlines in ms, either of which may be unset. */
const tightest = (a: number | undefined, b: number | undefined): number | undefined =>
  a === undefined ? b : b === undefined ? a : Math.min(a, b);

const NO_LEVELS = {};

/** The result with every output asked for as `classification: K` replaced by its top-K answer. */
function classified(model: ServedModel, decoded: DecodedRequest, result: InferResult): InferResult {
  if (!decoded.outputs.some((o) => o.classification !== undefined)) return result;
  const answer: InferResult = { ...result };
  for (const { name, classification } of decoded.outputs) {
    if (classification !== undefined)
      answer[name] = classify(
        result[name] as Tensor,
        classification,
        model.config?.labels?.[name],
        model.maxBatchSize !== 0,
      );
  }
  return answer;
}
