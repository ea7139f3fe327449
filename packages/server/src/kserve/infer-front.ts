import { readFileSync } from 'node:fs';
import type { ServerMetrics } from '../metrics.js';
import type { ServedModel } from '../model/onnx-model.js';
import type { SpanLike } from '../otel/types.js';
import type { ModelEntry, ModelRegistry } from '../model/registry.js';
import type { InferResult } from '../model/tensor.js';
import type { DecodedRequest } from './decode.js';
import { HttpError } from './errors.js';
import { clip, statusFor } from './status.js';

/** Which face of the server a request came through: a fixed set, so it can be a metrics label. */
export type Protocol = 'rest' | 'grpc';

/**
 * The label of requests for models this server does not have. Label values never come
 * from a client: 60,000 made-up names would otherwise be 60,000 series in /metrics.
 */
export const UNKNOWN_MODEL_LABEL = '(unknown)';

/** The server's version, as published: from its own package.json, never written twice. */
export const SERVER_VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

export interface FrontOptions {
  /** Default deadline per request in ms; a request's own timeout (or gRPC deadline) may only lower it. */
  timeout?: number | undefined;
  metrics?: ServerMetrics | undefined;
  /** False while starting or draining. */
  isReady?: (() => boolean) | undefined;
  /** Whether the generate extension is served. */
  generates?: boolean;
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
  /** The request's server span, when traced: the batch that serves it links to it. */
  trace?: SpanLike | undefined;
}

/**
 * What REST and gRPC share: model lookup and its errors, metadata, and the
 * infer path (deadlines, priority, the batcher, metrics). Both protocols call
 * the same batcher through here, so their rows share batches, and every
 * answer and error is decided once.
 */
export class InferenceFront {
  readonly registry: ModelRegistry;
  readonly #options: FrontOptions;

  constructor(registry: ModelRegistry, options: FrontOptions = {}) {
    this.registry = registry;
    this.#options = options;
  }

  isReady(): boolean {
    return this.#options.isReady?.() ?? true;
  }

  serverMetadata(): { name: string; version: string; extensions: string[] } {
    const extensions = ['binary_tensor_data', 'model_repository'];
    if (this.#options.metrics !== undefined) extensions.push('statistics');
    if (this.#options.generates === true) extensions.push('generate');
    return { name: 'batched-fn', version: SERVER_VERSION, extensions };
  }

  known(name: string): ModelEntry {
    const entry = this.registry.get(name);
    if (entry === undefined) throw new HttpError(404, `Unknown model \`${clip(name)}\``);
    return entry;
  }

  /** The instance serving `name`: a known model that is not READY is a 503 that says its state; a version it lacks is a 404. */
  serving(name: string, version?: string): ServedModel {
    const entry = this.known(name);
    if (entry.state !== 'READY' || entry.model === undefined) {
      throw new HttpError(503, `Model \`${entry.name}\` is ${entry.state}${entry.reason === '' ? '' : `: ${entry.reason}`}`, { 'retry-after': '1' });
    }
    const model = entry.model;
    if (version !== undefined && version !== '' && version !== model.version) throw new HttpError(404, `Model \`${model.name}\` has no version \`${clip(version)}\` (it has ${model.version})`);
    return model;
  }

  modelReady(name: string): boolean {
    return this.isReady() && this.known(name).state === 'READY';
  }

  metadata(name: string, version?: string): { name: string; versions: string[]; platform: string; inputs: object[]; outputs: object[] } {
    const m = this.serving(name, version);
    return { name: m.name, versions: [m.version], platform: m.platform, inputs: m.signature.inputs, outputs: m.signature.outputs };
  }

  /**
   * One inference: decode, wait in the model's batcher under the tightest deadline (the server's,
   * the model's, the request's own, the client's gRPC deadline), encode. Counted in the metrics
   * under the model's name (or UNKNOWN_MODEL_LABEL) and the protocol, with its HTTP status.
   */
  async infer<T>(call: InferCall, encode: (model: ServedModel, decoded: DecodedRequest, result: InferResult) => T): Promise<T> {
    const started = performance.now();
    // Known models (even unavailable ones) are counted under their name; anything else under one label.
    const label = this.registry.get(call.name)?.name ?? UNKNOWN_MODEL_LABEL;
    const metrics = this.#options.metrics;
    call.trace?.setAttributes({ 'batched_fn.model': label, 'batched_fn.protocol': call.protocol });
    try {
      const m = this.serving(call.name, call.version);
      const decoded = call.decode(m);
      const limits = [this.#options.timeout, m.timeout, decoded.timeout, call.deadline].filter((t): t is number => t !== undefined);
      const timeout = limits.length === 0 ? undefined : Math.max(0, Math.min(...limits));
      const result = await m.infer(decoded.item, {
        signal: call.signal,
        ...(timeout === undefined ? {} : { timeout }),
        ...(decoded.priority === undefined ? {} : { priority: decoded.priority }),
        ...(call.trace === undefined ? {} : { trace: call.trace }),
      });
      const answer = encode(m, decoded, result);
      metrics?.request(m.name, 200, (performance.now() - started) / 1000, call.protocol);
      return answer;
    } catch (error) {
      metrics?.request(label, statusFor(error).status, (performance.now() - started) / 1000, call.protocol);
      throw error;
    }
  }
}
