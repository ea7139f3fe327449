import type { BatchInfo } from 'batched-fn';
import type { BatchCompute } from '../model/compute-timing.js';
import { ProtocolError } from './errors.js';

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
  /** A generator's responses, by their index in the request's stream (Triton's `response_stats`). */
  responses: Map<number, ResponseDurations>;
}

/** Triton's InferResponseStatistics: the responses at one index of their requests' streams. */
interface ResponseDurations {
  computeInfer: Duration;
  computeOutput: Duration;
  success: Duration;
  fail: Duration;
  emptyResponse: Duration;
  cancel: Duration;
}

/**
 * Response indices counted: one entry per index a stream reached, so a model allowed a million
 * tokens would otherwise keep a million entries (and answer them in every statistics request).
 */
const MAX_RESPONSE_INDEX = 4096;

/** How a response at an index went: sent, the request failed there, or its client cancelled there. */
export type ResponseOutcome = 'success' | 'fail' | 'cancel';

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
  /** By model name, then version (a Triton-layout model counts each version apart; others have version 1). */
  readonly #models = new Map<string, Map<string, ModelCounters>>();

  constructor(names: Iterable<string>) {
    for (const name of names) this.add(name);
  }

  add(name: string, version = '1'): void {
    let versions = this.#models.get(name);
    if (versions === undefined) {
      versions = new Map();
      this.#models.set(name, versions);
    }
    if (versions.has(version)) return;
    versions.set(version, {
      lastInference: 0,
      inferenceCount: 0,
      executionCount: 0,
      success: zero(),
      fail: zero(),
      queue: zero(),
      computeInput: zero(),
      computeInfer: zero(),
      computeOutput: zero(),
      batches: new Map(),
      responses: new Map(),
    });
  }

  /** The counters of a version; without one, the highest version counted (where a request that reached none is counted). */
  #counters(name: string, version: string | undefined): ModelCounters | undefined {
    const versions = this.#models.get(name);
    if (versions === undefined) return undefined;
    if (version !== undefined) return versions.get(version);
    return [...versions.entries()].sort(([a], [b]) => Number(a) - Number(b)).at(-1)?.[1];
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
  readonly onBatch = (info: BatchInfo, version = '1'): void => {
    const model = this.#counters(info.name, version);
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
  compute(name: string, split: BatchCompute, version = '1'): void {
    const model = this.#counters(name, version);
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

  /**
   * A generator's response at `index` of its request's stream: `ms` from the request (the first) or
   * from the previous response (later ones), so `success` of "0" is the time to first response and
   * of "k" the time between responses k-1 and k. The model's work is its steps, shared by every
   * sequence of a step, so `compute_infer` counts the same span.
   */
  response(name: string, version: string, index: number, outcome: ResponseOutcome, ms: number): void {
    const model = this.#counters(name, version);
    if (model === undefined || !Number.isSafeInteger(index) || index < 0 || index >= MAX_RESPONSE_INDEX) return;
    let at = model.responses.get(index);
    if (at === undefined) {
      at = {
        computeInfer: zero(),
        computeOutput: zero(),
        success: zero(),
        fail: zero(),
        emptyResponse: zero(),
        cancel: zero(),
      };
      model.responses.set(index, at);
    }
    const nanos = Math.round(ms * 1e6);
    add(at[outcome], 1, nanos);
    if (outcome === 'success') {
      add(at.computeInfer, 1, nanos);
      add(at.computeOutput, 1, 0);
    }
  }

  /** A request was answered, successfully or not, after `seconds`; by the version that took it, if one did. */
  request(name: string, ok: boolean, seconds: number, version?: string): void {
    const model = this.#counters(name, version);
    if (model === undefined) return;
    model.lastInference = Date.now();
    add(ok ? model.success : model.fail, 1, Math.round(seconds * 1e9));
  }

  snapshot(name: string, version: string): object {
    const model = this.#counters(name, version) as ModelCounters;
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
        .map(([size, d]) => ({
          batch_size: size,
          compute_input: { ...d.computeInput },
          compute_infer: { ...d.computeInfer },
          compute_output: { ...d.computeOutput },
        })),
      // A generator's, as Triton answers it for decoupled models: keyed by the response's index.
      ...(model.responses.size === 0
        ? {}
        : {
            response_stats: Object.fromEntries(
              [...model.responses.entries()]
                .sort(([a], [b]) => a - b)
                .map(([index, r]) => [
                  String(index),
                  {
                    compute_infer: { ...r.computeInfer },
                    compute_output: { ...r.computeOutput },
                    success: { ...r.success },
                    fail: { ...r.fail },
                    empty_response: { ...r.emptyResponse },
                    cancel: { ...r.cancel },
                  },
                ]),
            ),
          }),
    };
  }

  /**
   * Statistics of one model (or every model, for an empty name), as Triton answers them: every
   * served version without a version, else that one. `versionsOf` answers the versions served
   * (ascending), undefined for a name the server does not serve (a 404, as is a version it lacks).
   */
  query(
    name: string | undefined,
    version: string | undefined,
    versionsOf: (name: string) => readonly string[] | undefined,
  ): object[] {
    if (name === undefined || name === '')
      return [...this.#models.keys()].flatMap((n) => this.#each(n, versionsOf(n) ?? []));
    const known = versionsOf(name);
    if (known === undefined || !this.#models.has(name))
      throw new ProtocolError('not-found', `Unknown model \`${name.slice(0, 100)}\``);
    if (version === undefined || version === '') return this.#each(name, known);
    if (!known.includes(version))
      throw new ProtocolError(
        'not-found',
        `Model \`${name}\` has no version \`${version.slice(0, 100)}\` (it has ${known.join(', ')})`,
      );
    return this.#each(name, [version]);
  }

  #each(name: string, versions: readonly string[]): object[] {
    return versions
      .filter((version) => this.#counters(name, version) !== undefined)
      .map((version) => this.snapshot(name, version));
  }
}
