import type { BatchInfo } from 'batched-fn';
import type { FastifyInstance } from 'fastify';
import type { BatchCompute } from '../model/compute-timing.js';
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
  computeInput: Duration;
  computeInfer: Duration;
  computeOutput: Duration;
  /** By batch size in rows. */
  batches: Map<number, BatchDurations>;
}

/** Triton's InferBatchStatistics: the three compute phases of the executions of one batch size. */
interface BatchDurations {
  computeInput: Duration;
  computeInfer: Duration;
  computeOutput: Duration;
}

const ms = (value: number): number => Math.round(value * 1e6);
const zero = (): Duration => ({ count: 0, ns: 0 });
const zeros = (): BatchDurations => ({ computeInput: zero(), computeInfer: zero(), computeOutput: zero() });
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
    this.#models.set(name, { lastInference: 0, inferenceCount: 0, executionCount: 0, success: zero(), fail: zero(), queue: zero(), computeInput: zero(), computeInfer: zero(), computeOutput: zero(), batches: new Map() });
  }

  /**
   * A batch settled. As Triton counts them: `inference_count` is rows, not requests (one request of 64 rows is
   * 64 inferences), and it, `execution_count`, compute time and batch sizes count successful executions only.
   * Queue time counts every request that waited. Batches of unknown models are ignored.
   *
   * Each execution is counted once in compute_input, compute_infer and compute_output, its whole
   * time first in compute_infer; `compute` then moves the input and output phases out of it, as
   * the worker's stamp splits them (model/compute-timing.ts). A batch whose callers all left is
   * never split: its time stays in compute_infer.
   */
  readonly onBatch = (info: BatchInfo): void => {
    const model = this.#models.get(info.name);
    if (model === undefined) return;
    if (info.totalWaitMs !== undefined) add(model.queue, info.items, ms(info.totalWaitMs));
    if (!info.ok) return;
    model.executionCount++;
    model.inferenceCount += info.rows;
    let bySize = model.batches.get(info.rows);
    if (bySize === undefined) {
      bySize = zeros();
      model.batches.set(info.rows, bySize);
    }
    for (const durations of [model, bySize]) {
      add(durations.computeInput, 1, 0);
      add(durations.computeInfer, 1, ms(info.execMs));
      add(durations.computeOutput, 1, 0);
    }
  };

  /** An execution counted by `onBatch`, split into its phases: moves their time out of compute_infer. */
  compute(name: string, split: BatchCompute): void {
    const model = this.#models.get(name);
    if (model === undefined) return;
    const total = ms(split.execMs);
    const input = Math.min(ms(split.inputMs), total);
    const output = Math.min(ms(split.outputMs), total - input);
    const bySize = model.batches.get(split.rows);
    for (const durations of bySize === undefined ? [model] : [model, bySize]) {
      add(durations.computeInput, 0, input);
      add(durations.computeOutput, 0, output);
      add(durations.computeInfer, 0, -(input + output));
    }
  }

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
      inference_stats: {
        success: { ...model.success },
        fail: { ...model.fail },
        queue: { ...model.queue },
        compute_input: { ...model.computeInput },
        compute_infer: { ...model.computeInfer },
        compute_output: { ...model.computeOutput },
      },
      batch_stats: [...model.batches.entries()]
        .sort(([a], [b]) => a - b)
        .map(([size, d]) => ({ batch_size: size, compute_input: { ...d.computeInput }, compute_infer: { ...d.computeInfer }, compute_output: { ...d.computeOutput } })),
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
