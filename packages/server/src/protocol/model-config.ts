import type { ServedModel } from '../model/served-model.js';
import type { Datatype, TensorSpec } from '../model/signature.js';
import { defaultLevel } from './schedule-policy.js';

/**
 * Triton's model configuration extension: `GET /v2/models/{m}[/versions/{v}]/config` (and gRPC
 * `ModelConfig`, grpc/extensions.ts) answer the model's settings as Triton's `ModelConfig`
 * message in its JSON form (model_config.proto's field names, 64-bit integers as numbers, as
 * Triton writes them), so scripts and Triton's tooling that read `max_batch_size` or the input
 * formats from it work unchanged.
 *
 * A model that batches along its first dimension has the batcher's `max_batch_size` (above 0),
 * and `dims` leave that dimension out; one without a batch dimension (ServedModel.maxBatchSize 0)
 * has `max_batch_size: 0` and its whole shapes. The batcher's live settings are read at the
 * time of the request: `maxDelay` as `max_queue_delay_microseconds`, its `channelCap` as
 * `max_queue_size`, its workers as one CPU instance group. What has no field of Triton's goes
 * under `parameters` as `{string_value}`: the model's own config.json `parameters`, then ours
 * (`max_delay`, `learned_delay_ms` with `maxDelay: 'auto'`, `latency_target_ms`, `pad`,
 * `batch_timeout_ms`, `threads`), which win a clash.
 */

/** Triton's DataType names. */
const TYPE_OF: Record<Datatype, string> = {
  BOOL: 'TYPE_BOOL',
  FP16: 'TYPE_FP16',
  BF16: 'TYPE_BF16',
  UINT8: 'TYPE_UINT8',
  UINT16: 'TYPE_UINT16',
  UINT32: 'TYPE_UINT32',
  UINT64: 'TYPE_UINT64',
  INT8: 'TYPE_INT8',
  INT16: 'TYPE_INT16',
  INT32: 'TYPE_INT32',
  INT64: 'TYPE_INT64',
  FP32: 'TYPE_FP32',
  FP64: 'TYPE_FP64',
  BYTES: 'TYPE_STRING',
};

const ms = (value: number): string => String(Math.round(value * 1000) / 1000);

/** The parameters map: values as strings (`ModelParameter.string_value`); JSON for what is not a string. */
function parameters(model: ServedModel): Record<string, { string_value: string }> {
  const out: Record<string, { string_value: string }> = {};
  const put = (key: string, value: unknown): void => {
    if (value !== undefined) out[key] = { string_value: typeof value === 'string' ? value : JSON.stringify(value) };
  };
  for (const [key, value] of Object.entries(model.config?.parameters ?? {})) put(key, value);
  const { maxDelay } = model.batcher.settings;
  put('max_delay', maxDelay === 'auto' ? 'auto' : ms(maxDelay));
  if (maxDelay === 'auto') put('learned_delay_ms', ms(learnedDelayMs(model)));
  const config = model.config ?? {};
  if (config.latencyTarget !== undefined) put('latency_target_ms', ms(config.latencyTarget));
  if (config.pad !== undefined) put('pad', String(config.pad));
  if (config.batchTimeout !== undefined) put('batch_timeout_ms', ms(config.batchTimeout));
  if (config.threads !== undefined) put('threads', String(config.threads));
  const generator = model.generator;
  if (generator !== undefined) {
    put('max_active', String(generator.maxActive));
    put('batching', generator.batching);
    put('max_tokens', String(generator.maxTokens));
    put('default_max_tokens', String(generator.defaultMaxTokens));
  }
  return out;
}

/**
 * The window `maxDelay: 'auto'` holds requests for now: it is learned from the traffic (cost curve
 * and arrival rate), so what it currently is shows in the requests it held, the median queue wait
 * over the batcher's recent window (0 until requests arrive).
 */
function learnedDelayMs(model: ServedModel): number {
  const wait = model.batcher.stats.waitMs;
  return wait.count === 0 ? 0 : wait.p50;
}

function tensor(spec: TensorSpec, labelFile: string | undefined, batched: boolean): object {
  return {
    name: spec.name,
    data_type: TYPE_OF[spec.datatype],
    // As Triton writes them: without the batch dimension when there is one, whole when there is none.
    dims: batched ? spec.shape.slice(1) : spec.shape,
    ...(labelFile === undefined ? {} : { label_filename: labelFile }),
  };
}

/**
 * An ensemble's configuration, as Triton shows one: its tensors and steps, no batching or instances
 * of its own (its steps' models have them). `max_batch_size` is its own, not its batcher's: that
 * runs one request at a time (formats/ensemble.ts).
 */
function ensembleConfig(model: ServedModel): object {
  const config = model.config ?? {};
  const batched = (model.maxBatchSize ?? 0) > 0;
  return {
    name: model.name,
    platform: 'ensemble',
    backend: '',
    version_policy: config.versionPolicy ?? { latest: { num_versions: 1 } },
    max_batch_size: model.maxBatchSize ?? 0,
    input: model.signature.inputs.map((spec) => ({ ...tensor(spec, undefined, batched), format: 'FORMAT_NONE' })),
    output: model.signature.outputs.map((spec) => tensor(spec, undefined, batched)),
    ensemble_scheduling: {
      step: (config.ensembleScheduling?.step ?? []).map((step) => ({
        model_name: step.model_name,
        model_version: step.model_version,
        input_map: { ...step.input_map },
        output_map: { ...step.output_map },
      })),
    },
    parameters: Object.fromEntries(
      Object.entries(config.parameters ?? {}).map(([key, value]) => [
        key,
        { string_value: typeof value === 'string' ? value : JSON.stringify(value) },
      ]),
    ),
  };
}

/** The model's configuration, in Triton's ModelConfig JSON. */
export function modelConfig(model: ServedModel): object {
  if (model.config?.ensembleScheduling !== undefined) return ensembleConfig(model);
  const settings = model.batcher.settings;
  const config = model.config ?? {};
  const onnx = model.platform.startsWith('onnxruntime_onnx');
  const delay = settings.maxDelay === 'auto' ? learnedDelayMs(model) : settings.maxDelay;
  // A model without a batch dimension runs one request at a time (a batcher of 1): Triton's 0.
  const batched = model.maxBatchSize !== 0;
  return {
    name: model.name,
    platform: onnx ? 'onnxruntime_onnx' : '',
    backend: onnx ? 'onnxruntime' : 'js',
    // A Triton-layout model's own policy (repository/triton-repository.ts); others serve their one version.
    version_policy: config.versionPolicy ?? { latest: { num_versions: 1 } },
    max_batch_size: batched ? settings.maxBatchSize : 0,
    input: model.signature.inputs.map((spec) => ({ ...tensor(spec, undefined, batched), format: 'FORMAT_NONE' })),
    output: model.signature.outputs.map((spec) => tensor(spec, config.labelFiles?.[spec.name], batched)),
    // A config.pbtxt without dynamic_batching holds no request to form batches: Triton shows none. A
    // generator with priority levels shows them there, where a client reads a model's levels.
    ...(config.dynamicBatching === false && config.priorityLevels === undefined
      ? {}
      : {
          dynamic_batching: {
            preferred_batch_size: config.preferredBatchSizes ?? [],
            max_queue_delay_microseconds: Math.round(delay * 1000),
            preserve_ordering: false,
            // Triton's 0 means "no levels"; here a model without levels still honours a request's priority (schedule-policy.ts).
            priority_levels: config.priorityLevels ?? 0,
            default_priority_level: config.priorityLevels === undefined ? 0 : defaultLevel(config),
            default_queue_policy: {
              timeout_action: 'REJECT',
              default_timeout_microseconds: Math.round((model.timeout ?? 0) * 1000),
              allow_timeout_override: config.allowTimeoutOverride ?? true,
              max_queue_size: settings.channelCap,
            },
          },
        }),
    // A generator answers many responses per request (formats/generator.ts): Triton's decoupled models.
    ...(model.generator === undefined ? {} : { model_transaction_policy: { decoupled: true } }),
    instance_group: [{ name: model.name, kind: 'KIND_CPU', count: settings.concurrency }],
    parameters: parameters(model),
  };
}
