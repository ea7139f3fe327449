import { readFileSync, statSync } from 'node:fs';
import type { EnsembleStep } from '../model/ensemble-step.js';
import { ModelLoadError } from '../model/errors.js';
import { maxOf } from '../settings/settings.js';
import type { Datatype, TensorSpec } from '../model/signature.js';
import { ConfigJsonError, readConfigJson } from './config-json.js';
import { MODEL_NAME } from './model-name.js';
import { TEXT_FORMAT_LIMITS } from './pbtxt.js';
import {
  checkFields,
  DATATYPE_OF,
  type DeclaredTensor,
  declaredTensors,
  type TritonModelConfig,
  type VersionPolicy,
  versionPolicyOf,
} from './triton-config.js';

/**
 * An ensemble's config (Triton's `platform: "ensemble"` with `ensemble_scheduling`), from a
 * config.pbtxt or, in our layout, a config.json in Triton's field names; both come here in the
 * JSON form (pbtxt.ts, config-json.ts). Everything is checked before anything is built: the step
 * names and versions, and that the steps make one flow, as Triton's ensemble checks do: every
 * tensor written once, every step input written by an ensemble input or a step, no cycle, every
 * ensemble input read and every ensemble output written by a step.
 */

export interface EnsemblePlan {
  maxBatchSize: number;
  /** Whole shapes: with the leading -1 when the ensemble batches. */
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  steps: EnsembleStep[];
  versionPolicy: VersionPolicy;
  parameters?: Record<string, string>;
}

/** What an ensemble's config may not say: what it says belongs to the models of its steps. */
const NOT_FOR_ENSEMBLES: readonly string[] = [
  'backend',
  'default_model_filename',
  'dynamic_batching',
  'sequence_batching',
  'instance_group',
  'optimization',
];

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** Whether a field says anything: proto3 cannot tell a default (0, '', false, an empty message) from one left out. */
const given = (value: unknown): boolean =>
  Array.isArray(value)
    ? value.some(given)
    : isRecord(value)
      ? Object.values(value).some(given)
      : value !== undefined && value !== '' && value !== 0 && value !== false;

const show = (text: string): string => JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}...` : text);

/**
 * An ensemble's config.json: one that says `platform`, in Triton's field names (its ModelConfig as
 * JSON, read strictly by config-json.ts) rather than our keys; undefined for any other config.json.
 * `platform` says which: only `"ensemble"` is served this way (a model file's config uses our keys).
 */
export function readEnsembleConfigJson(file: string): TritonModelConfig | undefined {
  const info = statSync(file, { throwIfNoEntry: false });
  if (info === undefined || !info.isFile()) return undefined;
  // Read on the main thread: bounded as a config.pbtxt is.
  if (info.size > TEXT_FORMAT_LIMITS.maxBytes)
    throw new ModelLoadError(
      `${file}: ${info.size} bytes, more than the ${TEXT_FORMAT_LIMITS.maxBytes} a config may have`,
    );
  const text = readFileSync(file, 'utf8');
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined; // readModelConfig says what is wrong with it
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw) || !Object.hasOwn(raw, 'platform'))
    return undefined;
  const platform = (raw as Record<string, unknown>).platform;
  if (platform !== 'ensemble')
    throw new ModelLoadError(
      `${file}: \`platform\` is ${JSON.stringify(platform)?.slice(0, 80)}; a config.json says \`platform\` only for an ensemble (\`"ensemble"\`, with Triton's field names); a model file's config.json uses the keys of docs/server.md`,
    );
  try {
    return readConfigJson(text);
  } catch (error) {
    if (error instanceof ConfigJsonError) throw new ModelLoadError(`${file}: ${error.message}`);
    throw error;
  }
}

/** Reads and checks an ensemble's config; every problem is a ModelLoadError naming `where` and the field. */
export function ensemblePlan(config: TritonModelConfig, folderName: string, where: string): EnsemblePlan {
  checkFields(config, where);
  const fail = (message: string): never => {
    throw new ModelLoadError(`${where}: ${message}`);
  };
  const name = config.name ?? '';
  if (name !== '' && name !== folderName)
    fail(`\`name\` is "${String(name)}", but the model's folder is "${folderName}": they must be the same`);
  for (const field of NOT_FOR_ENSEMBLES)
    if (given(config[field]))
      fail(`\`${field}\` is not for an ensemble: its steps' models are batched and run each by its own config`);

  const maxBatchSize = typeof config.max_batch_size === 'number' ? config.max_batch_size : 0;
  const most = maxOf('maxBatchSize');
  if (maxBatchSize < 0) fail(`'max_batch_size' must be non-negative value for ${folderName}`);
  if (maxBatchSize > most) fail(`\`max_batch_size\` is ${maxBatchSize}, more than the ${most} this server allows`);

  const declaredIn = declaredTensors(config.input, 'input', fail);
  const declaredOut = declaredTensors(config.output, 'output', fail);
  // Nothing to complete them from: an ensemble has no model file.
  if (declaredIn.length === 0) fail('an ensemble must declare its `input`');
  if (declaredOut.length === 0) fail('an ensemble must declare its `output`');
  for (const tensor of declaredOut)
    if (tensor.labelFile !== undefined)
      fail(`output \`${tensor.name}\`: \`label_filename\` is not supported yet for an ensemble`);
  for (const tensor of declaredIn)
    if (declaredOut.some((o) => o.name === tensor.name))
      fail(`\`${tensor.name}\` is both an input and an output of the ensemble: an output must be written by a step`);
  const spec = (tensor: DeclaredTensor): TensorSpec => ({
    name: tensor.name,
    datatype: DATATYPE_OF[tensor.dataType] as Datatype,
    shape: maxBatchSize > 0 ? [-1, ...tensor.dims] : [...tensor.dims],
  });

  const steps = readSteps(config.ensemble_scheduling, folderName, fail);
  checkFlow(
    steps,
    declaredIn.map((t) => t.name),
    declaredOut.map((t) => t.name),
    fail,
  );

  const parameters = config.parameters as Record<string, { string_value?: string }> | undefined;
  return {
    maxBatchSize,
    inputs: declaredIn.map(spec),
    outputs: declaredOut.map(spec),
    steps,
    versionPolicy: versionPolicyOf(
      config.version_policy as Record<string, Record<string, unknown>> | undefined,
      folderName,
      fail,
    ),
    ...(parameters === undefined || Object.keys(parameters).length === 0
      ? {}
      : {
          parameters: Object.fromEntries(
            Object.entries(parameters).map(([key, value]) => [key, value?.string_value ?? '']),
          ),
        }),
  };
}

/** The steps as written, each checked on its own: a model name, a version, tensor names in both maps. */
function readSteps(scheduling: unknown, folderName: string, fail: (message: string) => never): EnsembleStep[] {
  const list = isRecord(scheduling) && Array.isArray(scheduling.step) ? (scheduling.step as unknown[]) : [];
  if (list.length === 0) fail('an ensemble needs `ensemble_scheduling` with at least one `step`');
  return list.map((raw, i) => {
    const at = `ensemble_scheduling.step[${i}]`;
    const step = isRecord(raw) ? raw : {};
    const model = typeof step.model_name === 'string' ? step.model_name : '';
    if (!MODEL_NAME.test(model))
      fail(
        `\`${at}.model_name\` must name a model of the repository (letters, digits, \`_\`, \`.\`, \`-\`; at most 64), got ${show(model)}`,
      );
    if (model === folderName) fail(`\`${at}.model_name\` is the ensemble itself: it would wait on itself`);
    // Left out (proto3's 0 is read as absent): the highest, as -1 says.
    const version = step.model_version ?? -1;
    if (typeof version !== 'number' || !(version === -1 || (Number.isSafeInteger(version) && version >= 1)))
      fail(`\`${at}.model_version\` must be -1 (the highest served) or a version from 1, got ${String(version)}`);
    const map = (field: 'input_map' | 'output_map'): Record<string, string> => {
      const value = isRecord(step[field]) ? (step[field] as Record<string, unknown>) : {};
      const entries = Object.entries(value);
      if (entries.length === 0)
        fail(
          field === 'input_map'
            ? `\`${at}.input_map\` is empty: each input of \`${model}\` must read an ensemble tensor`
            : `\`${at}.output_map\` is empty: nothing \`${model}\` answers would be used`,
        );
      for (const [key, tensor] of entries) {
        if (key === '') fail(`\`${at}.${field}\` has an empty tensor name of \`${model}\``);
        if (typeof tensor !== 'string' || tensor === '')
          fail(`\`${at}.${field}[${show(key)}]\` must name an ensemble tensor`);
      }
      return Object.freeze(Object.fromEntries(entries)) as Record<string, string>;
    };
    return {
      model_name: model,
      model_version: version as number,
      input_map: map('input_map'),
      output_map: map('output_map'),
    };
  });
}

const label = (steps: readonly EnsembleStep[], i: number): string => `step ${i} (\`${steps[i]?.model_name}\`)`;

/** The steps make one flow: every tensor written once, read once written, no cycle, nothing declared left out. */
function checkFlow(
  steps: readonly EnsembleStep[],
  inputs: readonly string[],
  outputs: readonly string[],
  fail: (message: string) => never,
): void {
  /** Who writes each tensor: -1 an ensemble input, else the step's index. */
  const writer = new Map<string, number>(inputs.map((name) => [name, -1]));
  steps.forEach((step, i) => {
    for (const tensor of Object.values(step.output_map)) {
      const other = writer.get(tensor);
      if (other !== undefined)
        fail(
          `ensemble tensor \`${tensor}\` is written twice: by ${label(steps, i)} and by ${
            other === -1 ? 'the ensemble input of that name' : label(steps, other)
          }`,
        );
      writer.set(tensor, i);
    }
  });
  const read = new Set<string>();
  steps.forEach((step, i) => {
    for (const [input, tensor] of Object.entries(step.input_map)) {
      read.add(tensor);
      if (!writer.has(tensor))
        fail(
          `${label(steps, i)} reads \`${tensor}\` (for its input \`${input}\`), which no ensemble input or step output writes`,
        );
    }
  });
  for (const name of inputs) if (!read.has(name)) fail(`ensemble input \`${name}\` is read by no step`);
  for (const name of outputs) if (!writer.has(name)) fail(`ensemble output \`${name}\` is written by no step`);
  checkCycles(steps, writer, fail);
}

/** Refuses steps that wait on each other, naming the cycle: a step reading its own outputs, maybe through others. */
function checkCycles(
  steps: readonly EnsembleStep[],
  writer: ReadonlyMap<string, number>,
  fail: (message: string) => never,
): void {
  const after = steps.map((step) =>
    [...new Set(Object.values(step.input_map).map((tensor) => writer.get(tensor) as number))].filter((w) => w >= 0),
  );
  // Depth-first, iteratively (a config may hold thousands of steps): 0 unseen, 1 on the path, 2 done.
  const state = new Array<number>(steps.length).fill(0);
  for (let root = 0; root < steps.length; root++) {
    if (state[root] !== 0) continue;
    const path: number[] = [root];
    const next: number[] = [0];
    state[root] = 1;
    while (path.length > 0) {
      const node = path.at(-1) as number;
      const edges = after[node] as number[];
      const k = next[next.length - 1] as number;
      if (k < edges.length) {
        next[next.length - 1] = k + 1;
        const to = edges[k] as number;
        if (state[to] === 1) {
          const cycle = [...path.slice(path.indexOf(to)), to].reverse();
          fail(`the steps wait on each other: ${cycle.map((i) => label(steps, i)).join(' → ')}`);
        }
        if (state[to] === 0) {
          state[to] = 1;
          path.push(to);
          next.push(0);
        }
      } else {
        state[node] = 2;
        path.pop();
        next.pop();
      }
    }
  }
}
