import type { FastifyInstance } from 'fastify';
import type { ServedModel } from '../model/onnx-model.js';
import type { Datatype, TensorSpec } from '../model/signature.js';
import type { InferenceFront } from './infer-front.js';
import { defaultLevel } from './schedule-policy.js';

/**
 * Triton's model configuration extension: `GET /v2/models/{m}[/versions/{v}]/config` (and gRPC
 * `ModelConfig`, grpc/extensions.ts) answer the model's settings as Triton's `ModelConfig`
 * message in its JSON form (model_config.proto's field names, 64-bit integers as numbers, as
 * Triton writes them), so scripts and Triton's tooling that read `max_batch_size` or the input
 * formats from it work unchanged.
 *
 * Every model here batches along its first dimension, so `max_batch_size` is the batcher's
 * (above 0) and `dims` leave that dimension out. The batcher's live settings are read at the
 * time of the request: `maxDelay` as `max_queue_delay_microseconds`, its queue cap as
 * `max_queue_size`, its workers as one CPU instance group. What has no field of Triton's goes
 * under `parameters` as `{string_value}`: the model's own config.json `parameters`, then ours
 * (`max_delay`, `learned_delay_ms` with `maxDelay: 'auto'`, `latency_target_ms`, `pad`,
 * `batch_timeout_ms`, `threads`), which win a clash.
 */

/** Triton's DataType names. */
const TYPE_OF: Record<Datatype, string> = {
  BOOL: 'TYPE_BOOL',
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

function tensor(spec: TensorSpec, labelFile: string | undefined): object {
  return {
    name: spec.name,
    data_type: TYPE_OF[spec.datatype],
    dims: spec.shape.slice(1),
    ...(labelFile === undefined ? {} : { label_filename: labelFile }),
  };
}

/** The model's configuration, in Triton's ModelConfig JSON. */
export function modelConfig(model: ServedModel): object {
  const settings = model.batcher.settings;
  const config = model.config ?? {};
  const onnx = model.platform.startsWith('onnxruntime_onnx');
  const delay = settings.maxDelay === 'auto' ? learnedDelayMs(model) : settings.maxDelay;
  return {
    name: model.name,
    platform: onnx ? 'onnxruntime_onnx' : '',
    backend: onnx ? 'onnxruntime' : 'js',
    version_policy: { latest: { num_versions: 1 } },
    max_batch_size: settings.maxBatchSize,
    input: model.signature.inputs.map((spec) => ({ ...tensor(spec, undefined), format: 'FORMAT_NONE' })),
    output: model.signature.outputs.map((spec) => tensor(spec, config.labelFiles?.[spec.name])),
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
        allow_timeout_override: true,
        max_queue_size: settings.channelCap,
      },
    },
    instance_group: [{ name: model.name, kind: 'KIND_CPU', count: settings.concurrency }],
    parameters: parameters(model),
  };
}

/** The REST routes; the model lookup (and its errors) is the metadata route's. */
export function registerModelConfigRoutes(app: FastifyInstance, front: InferenceFront): void {
  front.extensions.add('model_configuration');
  const answer = async (request: { params: { name: string; version?: string } }) => modelConfig(front.serving(request.params.name, request.params.version));
  app.get<{ Params: { name: string } }>('/v2/models/:name/config', answer);
  app.get<{ Params: { name: string; version: string } }>('/v2/models/:name/versions/:version/config', answer);
}
