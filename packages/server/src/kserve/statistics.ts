import type { BatchInfo } from 'batched-fn';
import type { FastifyInstance } from 'fastify';
import { HttpError } from './errors.js';

/** Triton's `{count, ns}` pair: how many, and their total duration in nanoseconds. */
interface Duration {
  count: number;
  ns: number;
}

interface ModelCounters {
  lastInference: number;
  inferenceCount: number;
  executionCount: number;
  success: Duration;
  fail: Duration;
  queue: Duration;
  computeInfer: Duration;
  /** By batch size in rows. */
  batches: Map<number, Duration>;
}

const ms = (value: number): number => Math.round(value * 1e6);
const zero = (): Duration => ({ count: 0, ns: 0 });
const add = (d: Duration, count: number, nanos: number): void => {
  d.count += count;
  d.ns += nanos;
};

/**
 * Triton's statistics extension (`GET /v2/models[/{name}[/versions/{v}]]/stats`).
 * `inference_count / execution_count` (rows per execution) is the batching users actually get.
 * Fed from the batchers' `onBatch` and from each answered request; keyed only
 * by the names of models the server has.
 */
export class ModelStatistics {
  readonly #models = new Map<string, ModelCounters>();

  constructor(names: Iterable<string>) {
    for (const name of names) this.add(name);
  }

  add(name: string): void {
    if (this.#models.has(name)) return;
    this.#models.set(name, { lastInference: 0, inferenceCount: 0, executionCount: 0, success: zero(), fail: zero(), queue: zero(), computeInfer: zero(), batches: new Map() });
  }

  /**
   * A batch settled. As Triton counts them: `inference_count` is rows, not requests (one request of 64 rows is
   * 64 inferences), and it, `execution_count`, compute time and batch sizes count successful executions only.
   * Queue time counts every request that waited. Batches of unknown models are ignored.
   */
  readonly onBatch = (info: BatchInfo): void => {
    const model = this.#models.get(info.name);
    if (model === undefined) return;
    if (info.totalWaitMs !== undefined) add(model.queue, info.items, ms(info.totalWaitMs));
    if (!info.ok) return;
    model.executionCount++;
    model.inferenceCount += info.rows;
    add(model.computeInfer, 1, ms(info.execMs));
    let bySize = model.batches.get(info.rows);
    if (bySize === undefined) {
      bySize = zero();
      model.batches.set(info.rows, bySize);
    }
    add(bySize, 1, ms(info.execMs));
  };

  /** A request was answered, successfully or not, after `seconds`. */
  request(name: string, ok: boolean, seconds: number): void {
    const model = this.#models.get(name);
    if (model === undefined) return;
    model.lastInference = Date.now();
    add(ok ? model.success : model.fail, 1, Math.round(seconds * 1e9));
  }

  snapshot(name: string, version: string): object {
    const model = this.#models.get(name) as ModelCounters;
    return {
      name,
      version,
      last_inference: model.lastInference,
      inference_count: model.inferenceCount,
      execution_count: model.executionCount,
      inference_stats: { success: { ...model.success }, fail: { ...model.fail }, queue: { ...model.queue }, compute_infer: { ...model.computeInfer } },
      batch_stats: [...model.batches.entries()].sort(([a], [b]) => a - b).map(([size, d]) => ({ batch_size: size, compute_infer: { ...d } })),
    };
  }

  /**
   * Statistics of one model (or every model, for an empty name), as Triton answers them;
   * `versionOf` answers undefined for a name the server does not have (a 404, as is a version it lacks).
   */
  query(name: string | undefined, version: string | undefined, versionOf: (name: string) => string | undefined): object[] {
    if (name === undefined || name === '') return [...this.#models.keys()].flatMap((n) => this.#one(n, versionOf));
    const known = versionOf(name);
    if (known === undefined || !this.#models.has(name)) throw new HttpError(404, `Unknown model \`${name.slice(0, 100)}\``);
    if (version !== undefined && version !== '' && version !== known) throw new HttpError(404, `Model \`${name}\` has no version \`${version.slice(0, 100)}\` (it has ${known})`);
    return this.#one(name, versionOf);
  }

  /** The REST routes, for the models `versionOf` knows. */
  register(app: FastifyInstance, versionOf: (name: string) => string | undefined): void {
    app.get('/v2/models/stats', async () => ({ model_stats: this.query(undefined, undefined, versionOf) }));
    const one = async (request: { params: { name: string; version?: string } }) => ({ model_stats: this.query(request.params.name, request.params.version, versionOf) });
    app.get<{ Params: { name: string } }>('/v2/models/:name/stats', one);
    app.get<{ Params: { name: string; version: string } }>('/v2/models/:name/versions/:version/stats', one);
  }

  #one(name: string, versionOf: (name: string) => string | undefined): object[] {
    const version = versionOf(name);
    return version === undefined ? [] : [this.snapshot(name, version)];
  }
}
