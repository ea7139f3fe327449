import { batchedFn, type BatchInfo, type BatchTracing } from 'batched-fn';
import type { EnsembleStep } from '../model/ensemble-step.js';
import type { ModelCalls } from '../model/model-calls.js';
import { stepParameters } from '../model/reserved-parameters.js';
import type { ServedModel, ServedModelConfig } from '../model/served-model.js';
import type { ModelSignature } from '../model/signature.js';
import type { InferItem, InferResult } from '../model/tensor.js';
import { SETTING_DEFAULTS } from '../settings/settings.js';
import { EnsembleFlow, type FlowContext } from './ensemble-flow.js';

/**
 * An ensemble (Triton's `platform: "ensemble"`): a model whose answer is other models' answers,
 * wired by named tensors. It has no file and no thread of its own; each request runs its steps'
 * data flow (ensemble-flow.ts), and each step is a request to that model's own batcher, sharing
 * batches with that model's other callers and counted in its statistics.
 */

export interface EnsembleModelOptions {
  name: string;
  /** Triton's `max_batch_size`: > 0, requests carry a batch dimension of up to that many rows; 0, none. */
  maxBatchSize: number;
  /** The ensemble's inputs and outputs, whole shapes (with the leading -1 when it batches). */
  signature: ModelSignature;
  /** Checked already (repository/ensemble-config.ts): a flow without cycles, every tensor written once. */
  steps: readonly EnsembleStep[];
  /** How the steps reach their models (the server's; protocol/model-calls.ts). */
  calls: ModelCalls;
  /** Most requests waiting to start (the server's `channelCap`). */
  channelCap?: number;
  /** How it is served, beside its steps (its version policy, parameters), for the model configuration extension. */
  config?: ServedModelConfig;
  onBatch?: (info: BatchInfo) => void;
  tracing?: BatchTracing;
}

/** What a request hands its flow beside its tensors: kept per call, since a batcher's handler sees only inputs. */
interface CallContext extends Omit<FlowContext, 'ensemble' | 'chain'> {
  /** This call's batch key: no two requests share a run (see below). */
  key: number;
}

const asError = (error: unknown): Error => (error instanceof Error ? error : new Error(String(error)));

export function createEnsembleModel(options: EnsembleModelOptions): ServedModel {
  const { name, maxBatchSize, signature, steps, calls } = options;
  const flow = new EnsembleFlow(steps, signature.outputs, calls);
  const contexts = new WeakMap<InferItem, CallContext>();
  let keys = 0;
  const nextKey = (): number => {
    keys = keys >= Number.MAX_SAFE_INTEGER ? 1 : keys + 1;
    return keys;
  };
  const run = (item: InferItem): Promise<InferResult> => {
    const context = contexts.get(item);
    contexts.delete(item);
    return flow.run(item.inputs, {
      ensemble: name,
      chain: item.caller?.chain ?? [],
      signal: context?.signal,
      level: context?.level,
      timeout: context?.timeout,
      deadline: context?.deadline,
      trace: context?.trace,
      parameters: stepParameters(item.parameters),
    });
  };
  const channelCap = options.channelCap ?? SETTING_DEFAULTS.channelCap;
  const batcher = batchedFn<InferItem, InferResult>({
    name,
    // A run holds one request (below), so its failure is the run's: the statistics count it as a
    // failure, not as an execution, as they do a model's failed batch.
    handler: async (batch) =>
      batch.length === 1
        ? [await run(batch[0] as InferItem)]
        : Promise.all(batch.map((item) => run(item).catch((error: unknown) => asError(error)))),
    // One request per run: each runs its own flow, and a quick one must never wait for a slow one
    // it was put in a batch with. The size is the request's rows, so the statistics count rows as
    // Triton counts an ensemble's inferences; a key of its own per call (its lane leaves the queue
    // with it) keeps two requests out of one run whatever their rows.
    maxBatchSize: Math.max(1, maxBatchSize),
    size: maxBatchSize > 0 ? (item) => item.rows : () => 1,
    batchKey: (item) => contexts.get(item)?.key ?? nextKey(),
    maxDelay: 0,
    // A running request holds no thread here, only its tensors and one call in some step's queue,
    // where that model's own `channelCap` bounds the work (a full step queue fails the request with
    // a 503). So as many may run as the ensemble lets wait: the memory the operator already allowed
    // with `channelCap`; the steps' batchers, not this one, decide how fast they go. A server
    // without a finite channelCap (a library's) gets the server's default.
    concurrency: Number.isFinite(channelCap) ? channelCap : SETTING_DEFAULTS.channelCap,
    channelCap,
    ...(options.onBatch === undefined ? {} : { onBatch: options.onBatch }),
    ...(options.tracing === undefined ? {} : { tracing: options.tracing }),
  });
  const dependencies = [...new Set(steps.map((step) => step.model_name))];
  return {
    name,
    version: '1',
    platform: 'ensemble',
    signature,
    maxBatchSize,
    config: { ...options.config, dynamicBatching: false, ensembleScheduling: { step: steps } },
    batcher,
    dependencies,
    infer: (item, callOptions) => {
      // A shallow copy: the key of this call's context, even if one item object were sent twice.
      const call: InferItem = { ...item };
      const { signal, timeout, priority, level, trace } = callOptions;
      contexts.set(call, {
        key: nextKey(),
        signal,
        level,
        timeout,
        deadline: timeout === undefined ? undefined : performance.now() + timeout,
        trace,
      });
      return batcher(call, {
        ...(signal === undefined ? {} : { signal }),
        ...(timeout === undefined ? {} : { timeout }),
        ...(priority === undefined ? {} : { priority }),
        ...(trace === undefined ? {} : { trace }),
      });
    },
  };
}
