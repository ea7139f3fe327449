import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { BatchInfo, BatchTracing } from 'batched-fn';
import { expectDuration, expectInteger, validateMaxDelay } from 'batched-fn/adapter';
import { FLAGS } from '../flags.js';
import { MODEL_NAME } from '../kserve/repository-routes.js';
import { createJsModel } from './js-model.js';
import { createOnnxModel, type OnnxModelOptions, type ServedModel } from './onnx-model.js';
import type { ModelLoader } from './registry.js';

/**
 * A model repository, as Triton lays it out: `DIR/<name>/` holds
 * `model.onnx` or a JS model (`model.js`, `model.mjs`) and optionally `config.json`, whose keys
 * are the `serve` flags in camelCase plus `parameters` for the model itself.
 */
export interface ModelConfig extends Partial<Omit<OnnxModelOptions, 'path' | 'name' | 'onBatch' | 'tracing'>> {
  queueCap?: number;
  timeout?: number;
  parameters?: Record<string, unknown>;
}

/** The serve flags a model's config.json may set, by camelCase key. */
const CONFIG_KEYS = ['max-batch-size', 'max-delay', 'latency-target', 'preferred-batch-sizes', 'pad', 'queue-cap', 'workers', 'threads', 'timeout', 'batch-timeout'] as const;
const BY_KEY = new Map<string, (typeof FLAGS)[(typeof CONFIG_KEYS)[number]]>(CONFIG_KEYS.map((flag) => [FLAGS[flag].key, FLAGS[flag]]));

/** Checks one config value with the same rules (and messages) as the flag and the batcher option. */
function checkValue(key: string, kind: string, value: unknown): unknown {
  switch (kind) {
    case 'int1':
      return expectInteger(key, value, 1);
    case 'duration':
      return expectDuration(key, value);
    case 'positive-duration':
      return expectDuration(key, value, 0);
    case 'delay':
      return validateMaxDelay(value);
    case 'boolean':
      if (typeof value !== 'boolean') throw new TypeError(`Expected \`${key}\` to be true or false, got ${JSON.stringify(value)}`);
      return value;
    default: // list
      if (!Array.isArray(value) || value.length === 0) throw new TypeError(`Expected \`${key}\` to be a non-empty array of integers, got ${JSON.stringify(value)}`);
      return value.map((size, i) => expectInteger(`${key}[${i}]`, size, 1));
  }
}

/** Reads and checks `config.json`; every message names the file, the key, the rule and the value. */
export function readModelConfig(file: string): ModelConfig {
  if (!existsSync(file)) return {};
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new Error(`${file}: not valid JSON: ${(error as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error(`${file}: must be a JSON object`);
  const config: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw)) {
    if (key === 'parameters') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${file}: Expected \`parameters\` to be an object, got ${JSON.stringify(value)}`);
      config.parameters = value;
      continue;
    }
    const spec = BY_KEY.get(key);
    if (spec === undefined) throw new Error(`${file}: unknown key \`${key}\`; known keys are ${[...BY_KEY.keys(), 'parameters'].map((k) => `\`${k}\``).join(', ')}`);
    try {
      config[key] = checkValue(key, spec.kind, value);
    } catch (error) {
      throw new Error(`${file}: ${(error as Error).message}`);
    }
  }
  return config as ModelConfig;
}

/** The model folders of a repository, by name; other entries (files, odd names) are skipped. */
export function listRepository(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && MODEL_NAME.test(entry.name))
    .map((entry) => entry.name)
    .sort();
}

/** Builds a repository's model by name, with the server-wide settings as defaults under its config.json. */
export function repositoryLoader(dir: string, defaults: ModelConfig, onBatch: (info: BatchInfo) => void, tracing?: BatchTracing): ModelLoader {
  const has = (name: string): boolean => MODEL_NAME.test(name) && existsSync(join(dir, name)) && statSync(join(dir, name)).isDirectory();
  const load = async (name: string): Promise<ServedModel> => {
    const folder = join(dir, name);
    if (!MODEL_NAME.test(name) || !existsSync(folder) || !statSync(folder).isDirectory()) throw new Error(`No folder ${folder} in the repository`);
    const config = readModelConfig(join(folder, 'config.json'));
    const { queueCap, timeout, parameters: _parameters, ...settings } = { ...defaults, ...config };
    const common = { ...settings, name, onBatch, ...(tracing === undefined ? {} : { tracing }), ...(queueCap === undefined ? {} : { channelCap: queueCap }) };
    const onnx = join(folder, 'model.onnx');
    const script = ['model.js', 'model.mjs'].map((file) => join(folder, file)).find((file) => existsSync(file));
    let model: ServedModel;
    if (existsSync(onnx)) model = createOnnxModel({ ...common, path: onnx });
    else if (script !== undefined) model = await createJsModel({ ...common, path: script, config: config as Record<string, unknown> });
    else throw new Error(`${folder} holds no model.onnx, model.js or model.mjs`);
    return timeout === undefined ? model : { ...model, timeout };
  };
  return Object.assign(load, { has });
}
