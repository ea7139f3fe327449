import { readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import type { Type } from 'protobufjs';
import { ModelLoadError } from '../model/errors.js';
import { maxOf } from '../settings/settings.js';
import { parseTextFormat, TEXT_FORMAT_LIMITS } from './pbtxt.js';
import type { ModelConfigFile } from './config-file.js';
import type { Datatype, ModelSignature, TensorSpec } from '../model/signature.js';

/**
 * Triton's `config.pbtxt` (its `ModelConfig` message, proto/model_config.proto as shipped in this
 * package) mapped onto our settings: the config.json keys of config-file.ts. The mapping is
 * the one table below (MAPPING); a field it does not name is refused as "not supported yet",
 * unless it holds its default value, which proto3 cannot tell from a field left out.
 */

/** A ModelConfig in its JSON form (proto field names): from config.pbtxt (pbtxt.ts), or a JSON config. */
export type TritonModelConfig = Record<string, unknown>;

export const MODEL_CONFIG_PROTO = fileURLToPath(new URL('../../proto/model_config.proto', import.meta.url));

let schema: Type | undefined;

/** Triton's `inference.ModelConfig` message type, read once from the shipped .proto. */
export function modelConfigType(): Type {
  if (schema === undefined) {
    const root = new protobuf.Root();
    root.loadSync(MODEL_CONFIG_PROTO, { keepCase: true });
    root.resolveAll();
    schema = root.lookupType('inference.ModelConfig');
  }
  return schema;
}

/** Whether a ModelConfig is an ensemble's (Triton's `platform: "ensemble"`), read by repository/ensemble-config.ts. */
export const isEnsembleConfig = (config: TritonModelConfig): boolean => config.platform === 'ensemble';

/** Reads and parses a config.pbtxt; every problem is a ModelLoadError naming the file (and the line). */
export function readConfigPbtxt(file: string): TritonModelConfig {
  const info = statSync(file, { throwIfNoEntry: false });
  // A FIFO or a device would block this (main) thread in readFileSync for as long as it likes.
  if (info?.isFile() !== true) throw new ModelLoadError(`${file}: not a regular file`);
  if (info.size > TEXT_FORMAT_LIMITS.maxBytes)
    throw new ModelLoadError(
      `${file}: ${info.size} bytes, more than the ${TEXT_FORMAT_LIMITS.maxBytes} a config.pbtxt may have`,
    );
  try {
    return parseTextFormat(readFileSync(file, 'utf8'), modelConfigType());
  } catch (error) {
    throw new ModelLoadError(`${file}: ${(error as Error).message}`);
  }
}

/** Which versions of a model are served (Triton's ModelVersionPolicy). */
export type VersionPolicy =
  | { latest: { num_versions: number } }
  | { all: Record<string, never> }
  | { specific: { versions: number[] } };

/** A tensor as config.pbtxt declares it. */
export interface DeclaredTensor {
  name: string;
  /** Triton's type name (`TYPE_FP32`). */
  dataType: string;
  /** Without the batch dimension when the model batches (max_batch_size > 0), as Triton writes them. */
  dims: number[];
  labelFile?: string;
}

/** What a config says, in our terms; see `planFromConfig`. */
export interface TritonPlan {
  /** Which runner serves the version files. Undefined: decided by the file found (Triton's auto-complete of `backend`). */
  backend: 'onnxruntime' | 'js' | undefined;
  /** `default_model_filename`, a plain name in each version folder. */
  filename: string | undefined;
  versionPolicy: VersionPolicy;
  /** Our settings (config.json keys): what the config says, only. Defaults are the loader's to add. */
  settings: ModelConfigFile;
  /** Whether `dynamic_batching` was given (batching across requests); only meaningful with max_batch_size > 0. */
  dynamicBatching: boolean;
  /** `model_transaction_policy.decoupled`: a model answering many responses per request (a generator). */
  decoupled: boolean;
  /** Whether a request's own timeout may shorten the queue timeout (Triton's `allow_timeout_override`, with a default to shorten). */
  allowTimeoutOverride: boolean;
  /** True when neither inputs nor outputs are declared: the config is completed from the model file (Triton's auto-complete). */
  autoComplete: boolean;
  /** max_batch_size as given (0: none given, or no batch dimension; auto-complete decides, as Triton's does). */
  maxBatchSize: number;
  inputs: DeclaredTensor[];
  outputs: DeclaredTensor[];
  /** The instance count the config gives (summed over its groups); undefined: the loader's default. */
  instances: number | undefined;
}

/** Triton's DataType names → ours. TYPE_INVALID is refused. */
export const DATATYPE_OF: Readonly<Record<string, Datatype>> = Object.freeze({
  TYPE_BOOL: 'BOOL',
  TYPE_UINT8: 'UINT8',
  TYPE_UINT16: 'UINT16',
  TYPE_UINT32: 'UINT32',
  TYPE_UINT64: 'UINT64',
  TYPE_INT8: 'INT8',
  TYPE_INT16: 'INT16',
  TYPE_INT32: 'INT32',
  TYPE_INT64: 'INT64',
  TYPE_FP16: 'FP16',
  TYPE_FP32: 'FP32',
  TYPE_FP64: 'FP64',
  TYPE_STRING: 'BYTES',
  TYPE_BF16: 'BF16',
} as Record<string, Datatype>);

/** How one field of ModelConfig is read here. */
interface Mapping {
  /** What it does here (the README's table is these lines). */
  does: string;
  /**
   * A value it may only have (we serve nothing else yet): `preserve_ordering: false`. Any other is
   * refused as not supported yet.
   */
  only?: unknown;
}

/**
 * Every field of ModelConfig this server reads, by its path (repeated messages by their field
 * name: `input.dims` is the dims of every input). A path not here is refused ("not supported
 * yet") unless its value is the default, which proto3 cannot tell from a field left out; messages
 * whose mere presence changes Triton's behaviour (PRESENCE) are refused even empty.
 */
export const MAPPING: Readonly<Record<string, Mapping>> = Object.freeze({
  name: { does: 'must be the folder name (left out: the folder name)' },
  platform: {
    does: '`onnxruntime_onnx`, or `ensemble` (see Ensembles); any other platform is a load error naming it',
  },
  backend: {
    does: '`onnxruntime`, or `js` for a JS model; any other backend is a load error. Neither given: from the file found (`model.onnx`, `model.js`, `model.mjs`)',
  },
  default_model_filename: { does: 'the model file in each version folder (a plain name)' },
  version_policy: { does: 'which version folders are served (default `latest { num_versions: 1 }`)' },
  'version_policy.latest': { does: 'the highest versions' },
  'version_policy.latest.num_versions': { does: 'how many of them' },
  'version_policy.all': { does: 'every version folder' },
  'version_policy.specific': { does: 'the versions listed' },
  'version_policy.specific.versions': { does: 'their numbers (one missing is logged and skipped, as in Triton)' },
  max_batch_size: { does: '`maxBatchSize`; 0: a model without a batch dimension, one request per run' },
  input: { does: 'each input, checked against the model file: a name, type or dims mismatch is a load error' },
  'input.name': { does: 'its name' },
  'input.data_type': { does: 'its type (`TYPE_FP32`, `TYPE_STRING` for BYTES...)' },
  'input.dims': { does: 'its shape, without the batch dimension when max_batch_size > 0; -1 is any size' },
  'input.format': { does: 'accepted (it changes nothing served)' },
  output: { does: 'each output, checked like the inputs' },
  'output.name': { does: 'its name' },
  'output.data_type': { does: 'its type' },
  'output.dims': { does: 'its shape' },
  'output.label_filename': { does: '`labels`: a labels file of the model folder (the classification extension)' },
  dynamic_batching: {
    does: 'batching across requests; without it requests are not held to form batches (`maxDelay` 0)',
  },
  'dynamic_batching.max_queue_delay_microseconds': { does: '`maxDelay` (in ms; default 0)' },
  'dynamic_batching.preferred_batch_size': { does: '`preferredBatchSizes`' },
  'dynamic_batching.priority_levels': { does: '`priorityLevels`' },
  'dynamic_batching.default_priority_level': {
    does: '`defaultPriorityLevel` (from 1 to priority_levels, as Triton checks)',
  },
  'dynamic_batching.preserve_ordering': { does: 'only `false`', only: false },
  'dynamic_batching.default_queue_policy': { does: 'the queue' },
  'dynamic_batching.default_queue_policy.max_queue_size': { does: "`channelCap` (0: the server's `--channel-cap`)" },
  'dynamic_batching.default_queue_policy.default_timeout_microseconds': { does: '`timeout` (in ms; 0: none)' },
  'dynamic_batching.default_queue_policy.allow_timeout_override': {
    does: "true: a request's own `timeout` may shorten the default; false (the default): a request's timeout is ignored, as in Triton",
  },
  'dynamic_batching.default_queue_policy.timeout_action': { does: 'only `REJECT`', only: 'REJECT' },
  sequence_batching: {
    does: 'a stateful JS model (`model.mjs` exporting `handler`): requests carry `sequence_id`, `sequence_start`, `sequence_end`; one per sequence per batch, oldest first, its state kept in one worker thread',
  },
  'sequence_batching.max_sequence_idle_microseconds': {
    does: 'a sequence with nothing queued this long is freed (0: 1 s, as in Triton)',
  },
  'sequence_batching.oldest': { does: 'the strategy used, whichever is named' },
  'sequence_batching.oldest.max_queue_delay_microseconds': { does: '`maxDelay` (in ms)' },
  'sequence_batching.direct': { does: 'the strategy used, whichever is named' },
  instance_group: {
    does: "`workers`: the groups' counts added up (none given: `--workers` if given, else Triton's 2 for ONNX, 1 for JS)",
  },
  'instance_group.name': { does: 'accepted' },
  'instance_group.kind': { does: '`KIND_CPU`, or `KIND_AUTO` (the CPU here); `KIND_GPU` is a load error' },
  'instance_group.count': { does: 'its worker threads' },
  parameters: { does: 'the model\'s `parameters` (`{ key: "k" value: { string_value: "v" } }` is `k: "v"`)' },
  'optimization.input_pinned_memory': { does: 'accepted (pinned memory is for GPUs)' },
  'optimization.output_pinned_memory': { does: 'accepted (pinned memory is for GPUs)' },
  'model_transaction_policy.decoupled': {
    does: "`true` for a generator (a model.js exporting `step`: it answers many responses, as Triton's decoupled models); a generator may leave it out; `true` on any other model is a load error",
  },
  ensemble_scheduling: { does: "an ensemble's steps (platform `ensemble`), each run once its inputs exist" },
  'ensemble_scheduling.step': { does: "each step: one request to that model's own batcher" },
  'ensemble_scheduling.step.model_name': { does: 'the model it calls (the ensemble is READY only while it is)' },
  'ensemble_scheduling.step.model_version': { does: '-1 (or left out): the highest served; else that version' },
  'ensemble_scheduling.step.input_map': { does: "the step model's input → the ensemble tensor it reads" },
  'ensemble_scheduling.step.output_map': {
    does: "the step model's output → the ensemble tensor it writes (each tensor written once)",
  },
  'response_cache.enable': { does: 'only `false`', only: false },
});

/** The README's table of config.pbtxt fields, row by row, from MAPPING (a test holds the README to it). */
export function mappingRows(): string[] {
  return Object.entries(MAPPING).map(([path, mapping]) => `| \`${path}\` | ${mapping.does} |`);
}

/** Messages whose presence alone changes what Triton does, refused even when empty (`reshape { shape: [] }` is a scalar). */
const PRESENCE = new Set(['input.reshape', 'output.reshape']);

let zeroEnums: Set<string> | undefined;

/** The names of every enum value 0 of the schema (TYPE_INVALID, KIND_AUTO, REJECT...): an enum's default. */
function enumDefaults(): Set<string> {
  if (zeroEnums === undefined) {
    zeroEnums = new Set();
    const visit = (namespace: protobuf.NamespaceBase): void => {
      for (const nested of namespace.nestedArray) {
        if (nested instanceof protobuf.Enum) {
          const name = nested.valuesById[0];
          if (name !== undefined) zeroEnums?.add(name);
        } else if (nested instanceof protobuf.Namespace) visit(nested);
      }
    };
    visit(modelConfigType().root);
  }
  return zeroEnums;
}

/** Whether `value` is what proto3 makes of a field left out (0, false, '', an enum's 0, an empty list or map), or a message holding only such values. */
function isDefault(value: unknown): boolean {
  if (value === 0 || value === false || value === '') return true;
  if (typeof value === 'string') return enumDefaults().has(value);
  if (Array.isArray(value)) return value.length === 0;
  if (Buffer.isBuffer(value)) return value.length === 0;
  if (typeof value === 'object' && value !== null) return Object.values(value).every(isDefault);
  return false;
}

const isMessage = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value) && !Buffer.isBuffer(value);

/** Refuses every field the mapping does not read (see MAPPING); `where` names the file for the messages. */
export function checkFields(config: TritonModelConfig, where: string): void {
  const prefixes = new Set(
    Object.keys(MAPPING).flatMap((path) =>
      path
        .split('.')
        .slice(0, -1)
        .map((_, i, parts) => parts.slice(0, i + 1).join('.')),
    ),
  );
  const walk = (message: Record<string, unknown>, path: string): void => {
    for (const [key, value] of Object.entries(message)) {
      const at = path === '' ? key : `${path}.${key}`;
      const mapping = MAPPING[at];
      if (PRESENCE.has(at)) throw new ModelLoadError(`${where}: \`${at}\` is not supported yet`);
      if (mapping !== undefined) {
        if ('only' in mapping && value !== mapping.only)
          throw new ModelLoadError(`${where}: \`${at}\` is not supported yet (only ${JSON.stringify(mapping.only)})`);
        // A mapped message whose fields are mapped too: check them (input, instance_group...).
        if (prefixes.has(at))
          for (const item of Array.isArray(value) ? value : [value]) if (isMessage(item)) walk(item, at);
        continue;
      }
      if (prefixes.has(at) && isMessage(value)) {
        walk(value, at);
        continue;
      }
      if (isDefault(value)) continue;
      throw new ModelLoadError(`${where}: \`${at}\` is not supported yet`);
    }
  };
  walk(config, '');
}

const PLAIN_FILE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$/;
const int = (value: unknown): number => (typeof value === 'number' ? value : 0);

/**
 * Reads a ModelConfig (JSON form) into a plan: the backend, the version policy, our settings and
 * the declared tensors; refuses what we do not serve, naming the field. `folderName` is the model's
 * folder (a `name` must match it); `where` names the config in messages.
 */
export function planFromConfig(config: TritonModelConfig, folderName: string, where: string): TritonPlan {
  checkFields(config, where);
  const fail = (message: string): never => {
    throw new ModelLoadError(`${where}: ${message}`);
  };
  // An ensemble is read by repository/ensemble-config.ts; here it is only a model that says it is not one.
  if (config.ensemble_scheduling !== undefined)
    fail('`ensemble_scheduling` is for an ensemble: give it `platform: "ensemble"`');
  const name = config.name ?? '';
  if (name !== '' && name !== folderName)
    fail(`\`name\` is "${String(name)}", but the model's folder is "${folderName}": they must be the same`);

  const backend = backendOf(String(config.platform ?? ''), String(config.backend ?? ''), fail);
  const filename = String(config.default_model_filename ?? '');
  if (filename !== '' && !PLAIN_FILE.test(filename))
    fail(`\`default_model_filename\` must be a plain file name in the version folder, got ${JSON.stringify(filename)}`);

  const maxBatchSize = int(config.max_batch_size);
  const most = maxOf('maxBatchSize');
  if (maxBatchSize < 0) fail(`'max_batch_size' must be non-negative value for ${folderName}`);
  if (maxBatchSize > most) fail(`\`max_batch_size\` is ${maxBatchSize}, more than the ${most} this server allows`);

  const settings: ModelConfigFile = {};
  const db = config.dynamic_batching as Record<string, unknown> | undefined;
  let allowTimeoutOverride = false;
  if (db !== undefined) {
    settings.maxDelay = int(db.max_queue_delay_microseconds) / 1000;
    const preferred = (db.preferred_batch_size as number[] | undefined) ?? [];
    for (const size of preferred) {
      if (size <= 0) fail(`dynamic batching preferred size must be positive for ${folderName}`);
      if (maxBatchSize > 0 && size > maxBatchSize)
        fail(`dynamic batching preferred size must be <= max batch size for ${folderName}`);
    }
    if (preferred.length > 0) settings.preferredBatchSizes = preferred;
    const levels = int(db.priority_levels);
    if (levels > 0) {
      const level = int(db.default_priority_level);
      // Triton's own check and words (model_config_utils.cc).
      if (level === 0 || level > levels)
        fail(`default priority level must be in range [1, ${levels}] for ${folderName}`);
      settings.priorityLevels = levels;
      settings.defaultPriorityLevel = level;
    } else if (int(db.default_priority_level) !== 0) {
      fail('`dynamic_batching.default_priority_level` needs `priority_levels`');
    }
    const policy = (db.default_queue_policy as Record<string, unknown> | undefined) ?? {};
    const queue = int(policy.max_queue_size);
    if (queue > 0) settings.channelCap = queue;
    const timeoutUs = int(policy.default_timeout_microseconds);
    if (timeoutUs > 0) settings.timeout = timeoutUs / 1000;
    // As Triton's queue (scheduler_utils.cc): a request's timeout only ever shortens a default.
    allowTimeoutOverride = policy.allow_timeout_override === true && timeoutUs > 0;
  }

  const sb = config.sequence_batching as Record<string, unknown> | undefined;
  if (sb !== undefined) {
    if (backend === 'onnxruntime')
      fail('`sequence_batching` is served for stateful JS models (model.mjs) only, for now');
    // One batching for both strategies here (formats/sequence-table.ts); the oldest one's delay is maxDelay.
    settings.sequence_batching = { max_sequence_idle_microseconds: int(sb.max_sequence_idle_microseconds) };
    const oldest = sb.oldest as Record<string, unknown> | undefined;
    if (oldest !== undefined) settings.maxDelay = int(oldest.max_queue_delay_microseconds) / 1000;
  }

  let instances: number | undefined;
  const groups = (config.instance_group as Record<string, unknown>[] | undefined) ?? [];
  for (const [i, group] of groups.entries()) {
    const label = `instance group ${group.name === undefined || group.name === '' ? i : `"${String(group.name)}"`}`;
    // Left out, KIND_AUTO (the enum's 0), which Triton turns to KIND_CPU on a machine without GPUs.
    const kind = String(group.kind ?? 'KIND_AUTO');
    if (kind === 'KIND_GPU')
      fail(`${label} has kind KIND_GPU, but this server runs models on the CPU only: use KIND_CPU (or KIND_AUTO)`);
    if (kind !== 'KIND_CPU' && kind !== 'KIND_AUTO')
      fail(`${label} has kind ${kind}, which is not supported yet (KIND_CPU or KIND_AUTO)`);
    const count = int(group.count);
    if (count > 0) instances = (instances ?? 0) + count;
  }
  if (instances !== undefined && instances > maxOf('workers'))
    fail(`\`instance_group\` counts ${instances} instances, more than the ${maxOf('workers')} this server allows`);

  const parameters = config.parameters as Record<string, { string_value?: string }> | undefined;
  if (parameters !== undefined && Object.keys(parameters).length > 0) {
    settings.parameters = Object.fromEntries(
      Object.entries(parameters).map(([key, value]) => [key, value?.string_value ?? '']),
    );
  }

  const inputs = declaredTensors(config.input, 'input', fail);
  const outputs = declaredTensors(config.output, 'output', fail);
  const labels = Object.fromEntries(outputs.flatMap((o) => (o.labelFile === undefined ? [] : [[o.name, o.labelFile]])));
  if (Object.keys(labels).length > 0) settings.labels = labels;

  return {
    backend,
    filename: filename === '' ? undefined : filename,
    versionPolicy: versionPolicyOf(
      config.version_policy as Record<string, Record<string, unknown>> | undefined,
      folderName,
      fail,
    ),
    settings,
    dynamicBatching: db !== undefined,
    decoupled: (config.model_transaction_policy as { decoupled?: unknown } | undefined)?.decoupled === true,
    allowTimeoutOverride,
    // Triton's ONNX backend completes the config only when inputs or outputs are missing.
    autoComplete: inputs.length === 0 || outputs.length === 0,
    maxBatchSize,
    inputs,
    outputs,
    instances,
  };
}

function backendOf(platform: string, backend: string, fail: (message: string) => never): TritonPlan['backend'] {
  const served =
    'this server runs ONNX models (platform `onnxruntime_onnx`, backend `onnxruntime`) and JS models (backend `js`)';
  if (
    platform !== '' &&
    platform !== 'onnxruntime_onnx' &&
    !(platform === 'batched-fn_js' && (backend === '' || backend === 'js'))
  )
    fail(`platform "${platform}" is not served here: ${served}`);
  if (backend !== '' && backend !== 'onnxruntime' && backend !== 'js')
    fail(`backend "${backend}" is not served here: ${served}`);
  if (platform === 'onnxruntime_onnx' && backend === 'js')
    fail(`unexpected 'platform' and 'backend' pair, got:${platform}, ${backend}`);
  if (backend === 'js' || platform === 'batched-fn_js') return 'js';
  if (backend === 'onnxruntime' || platform === 'onnxruntime_onnx') return 'onnxruntime';
  return undefined;
}

export function versionPolicyOf(
  policy: Record<string, Record<string, unknown>> | undefined,
  folderName: string,
  fail: (message: string) => never,
): VersionPolicy {
  if (policy === undefined || Object.keys(policy).length === 0) return { latest: { num_versions: 1 } };
  if (policy.all !== undefined) return { all: {} };
  if (policy.specific !== undefined) {
    const versions = (policy.specific.versions as number[] | undefined) ?? [];
    if (versions.length === 0 || versions.some((v) => v < 1))
      fail(`\`version_policy.specific.versions\` must list versions from 1, got ${JSON.stringify(versions)}`);
    return { specific: { versions: [...new Set(versions)].sort((a, b) => a - b) } };
  }
  const count = int(policy.latest?.num_versions);
  // Triton's words when no version can be served (model_lifecycle.cc).
  if (count < 1)
    fail(
      `at least one version must be available under the version policy of model '${folderName}' (\`version_policy.latest.num_versions\` is 0)`,
    );
  return { latest: { num_versions: count } };
}

export function declaredTensors(
  value: unknown,
  which: 'input' | 'output',
  fail: (message: string) => never,
): DeclaredTensor[] {
  const list = (value as Record<string, unknown>[] | undefined) ?? [];
  const names = new Set<string>();
  return list.map((tensor, i) => {
    const name = String(tensor.name ?? '');
    if (name === '') fail(`\`${which}[${i}]\` has no \`name\``);
    if (names.has(name)) fail(`${which} \`${name}\` is declared twice`);
    names.add(name);
    const dataType = String(tensor.data_type ?? 'TYPE_INVALID');
    if (DATATYPE_OF[dataType] === undefined)
      fail(
        `${which} \`${name}\` has data_type ${dataType}, which is not served (${Object.keys(DATATYPE_OF).join(', ')})`,
      );
    const dims = (tensor.dims as number[] | undefined) ?? [];
    for (const d of dims)
      if (d !== -1 && d < 1)
        fail(`${which} \`${name}\` has dims ${JSON.stringify(dims)}: each must be -1 (any size) or at least 1`);
    const labelFile =
      tensor.label_filename === undefined || tensor.label_filename === '' ? undefined : String(tensor.label_filename);
    if (labelFile !== undefined && !PLAIN_FILE.test(labelFile))
      fail(
        `output \`${name}\` has label_filename ${JSON.stringify(labelFile)}: a plain file name in the model's folder`,
      );
    return { name, dataType, dims, ...(labelFile === undefined ? {} : { labelFile }) };
  });
}

/**
 * The signature a model is served with: the model file's, checked against what the config
 * declares, as Triton's ONNX Runtime backend checks it. Every declared tensor must be the model's
 * and every model input and output declared, with the same type; dims (the batch dimension aside
 * when `batched`) must agree in rank and in every size both state. Where one says -1 and the other
 * a size, the size is served: requests are checked against the tighter shape.
 */
export function checkSignature(
  fromFile: ModelSignature,
  plan: TritonPlan,
  batched: boolean,
  where: string,
): ModelSignature {
  const fail = (message: string): never => {
    throw new ModelLoadError(`${where}: ${message}`);
  };
  const side = (which: 'input' | 'output', declared: DeclaredTensor[], actual: TensorSpec[]): TensorSpec[] => {
    // A side the config leaves out is completed from the model (Triton's auto-complete).
    if (declared.length === 0) return actual;
    const byName = new Map(actual.map((spec) => [spec.name, spec]));
    for (const spec of actual)
      if (!declared.some((d) => d.name === spec.name))
        fail(
          `the model has ${which} \`${spec.name}\`, which config.pbtxt does not declare (it declares ${declared.map((d) => `\`${d.name}\``).join(', ')})`,
        );
    return declared.map((d) => {
      const spec =
        byName.get(d.name) ??
        fail(
          `config.pbtxt declares ${which} \`${d.name}\`, which the model does not have (its ${which}s: ${actual.map((s) => `\`${s.name}\``).join(', ')})`,
        );
      const datatype = DATATYPE_OF[d.dataType] as Datatype;
      if (spec.datatype !== datatype)
        fail(`${which} \`${d.name}\` is ${d.dataType} in config.pbtxt, but ${spec.datatype} in the model`);
      // An ONNX output without shape information reads as []: the config's dims stand.
      if (which === 'output' && spec.shape.length === 0)
        return { name: d.name, datatype, shape: batched ? [-1, ...d.dims] : d.dims };
      const shape = batched ? spec.shape.slice(1) : spec.shape;
      const full = batched ? [-1, ...d.dims] : d.dims;
      if (
        shape.length !== d.dims.length ||
        shape.some((size, i) => size !== -1 && d.dims[i] !== -1 && size !== d.dims[i])
      ) {
        fail(
          `${which} \`${d.name}\`: the model's shape is ${JSON.stringify(spec.shape)}, but config.pbtxt says dims ${JSON.stringify(d.dims)}${batched ? ` after the batch dimension (max_batch_size > 0), making ${JSON.stringify(full)}` : ' (max_batch_size 0: the whole shape)'}`,
        );
      }
      const served = shape.map((size, i) => (size === -1 ? (d.dims[i] as number) : size));
      return { name: d.name, datatype, shape: batched ? [-1, ...served] : served };
    });
  };
  return {
    inputs: side('input', plan.inputs, fromFile.inputs),
    outputs: side('output', plan.outputs, fromFile.outputs),
  };
}
