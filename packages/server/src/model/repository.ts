import { existsSync, lstatSync, readdirSync, readFileSync, type Stats, statSync } from 'node:fs';
import { join } from 'node:path';
import type { BatchInfo, BatchTracing } from 'batched-fn';
import { expectDuration, expectInteger, validateMaxDelay } from 'batched-fn/adapter';
import { FLAGS } from '../flags.js';
import { MODEL_NAME } from '../kserve/repository-routes.js';
import { checkPriorityLevels, type PriorityLevels } from '../kserve/schedule-policy.js';
import { createJsModel } from './js-model.js';
import { createOnnxModel, LoadTimeoutError, ModelLoadError, type OnnxModelOptions, type ServedModel } from './onnx-model.js';
import { type LoadOverride, loadWithOverride } from './load-override.js';
import { type ModelLoader, untilAborted } from './registry.js';
import { isTritonLayout, loadTritonModel, type TritonDefaults } from './triton-repository.js';

/**
 * A model repository, as Triton lays it out: `DIR/<name>/` holds
 * `model.onnx` or a JS model (`model.js`, `model.mjs`) and optionally `config.json`, whose keys
 * are the `serve` flags in camelCase plus `parameters` for the model itself. Triton's own layout
 * (`config.pbtxt`, version folders) is served beside it: model/triton-repository.ts.
 */
export interface ModelConfig extends Partial<Omit<OnnxModelOptions, 'path' | 'name' | 'onBatch' | 'tracing' | 'labels' | 'labelFiles'>> {
  queueCap?: number;
  timeout?: number;
  /** Longest the model may take to load, in ms: reading its exports, then every worker's `context()`. */
  loadTimeout?: number;
  parameters?: Record<string, unknown>;
}

/** A model's config.json: its ModelConfig, and what only a model folder can say. */
export interface ModelConfigFile extends ModelConfig {
  /**
   * Class labels per output, for the classification extension: a file of the model's folder with
   * one label per line (Triton's `label_filename`), or the labels themselves.
   */
  labels?: Record<string, string | string[]>;
}

/**
 * A load that takes longer fails with ERR_LOAD_TIMEOUT and its workers are stopped, so a `context()`
 * that never settles (or a module that spins at import) cannot hold the model LOADING, and its name,
 * forever. A minute covers building a large ONNX session on a busy machine; config.json's
 * `loadTimeout` sets it per model.
 */
export const DEFAULT_LOAD_TIMEOUT_MS = 60_000;

/** The serve flags a model's config.json may set, by camelCase key. */
const CONFIG_KEYS = ['max-batch-size', 'max-delay', 'latency-target', 'preferred-batch-sizes', 'pad', 'queue-cap', 'workers', 'threads', 'timeout', 'batch-timeout'] as const;
const BY_KEY = new Map<string, { kind: string; max?: number }>(CONFIG_KEYS.map((flag) => [FLAGS[flag].key, FLAGS[flag]]));
// Keys of config.json alone (no flag): how the repository treats the model rather than how it batches,
// and what the protocol reads per model (Triton's priority levels and class labels).
BY_KEY.set('loadTimeout', { kind: 'positive-duration' });
BY_KEY.set('priorityLevels', { kind: 'int1' });
BY_KEY.set('defaultPriorityLevel', { kind: 'int1' });
BY_KEY.set('labels', { kind: 'labels' });
// 0 is a model without a batch dimension (Triton's max_batch_size 0, batch-dimension.ts); the flag stays from 1.
BY_KEY.set('maxBatchSize', { kind: 'int0', max: FLAGS['max-batch-size'].max });

/** A labels file: a plain name in the model's folder, as Triton's `label_filename` is. */
const LABEL_FILE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$/;
/** Largest labels file read (a million labels of 16 bytes): it is read on the main thread at load. */
const MAX_LABELS_BYTES = 16 * 1024 * 1024;

/** `labels` → the labels of each output, and the file each came from, read from the model's folder. */
export function readLabels(folder: string, labels: Record<string, string | string[]>): { labels: Record<string, string[]>; labelFiles: Record<string, string> } {
  const out: Record<string, string[]> = {};
  const files: Record<string, string> = {};
  for (const [output, value] of Object.entries(labels)) {
    if (Array.isArray(value)) {
      out[output] = value;
      continue;
    }
    const file = join(folder, value);
    const info = stat(file);
    if (info?.isFile() !== true) throw new ModelLoadError(`${file} (the labels of output \`${output}\`) is not a regular file`);
    if (info.size > MAX_LABELS_BYTES) throw new ModelLoadError(`${file} (the labels of output \`${output}\`) is ${info.size} bytes, more than ${MAX_LABELS_BYTES}`);
    // One label per line, as Triton reads label_filename; a final newline ends the last one.
    const lines = readFileSync(file, 'utf8').split(/\r?\n/);
    if (lines.at(-1) === '') lines.pop();
    out[output] = lines;
    files[output] = value;
  }
  return { labels: out, labelFiles: files };
}

/** Checks one config value with the same rules (and messages) as the flag and the batcher option. */
function checkValue(key: string, kind: string, value: unknown, max: number | undefined): unknown {
  switch (kind) {
    case 'int0':
    case 'int1': {
      const n = expectInteger(key, value, kind === 'int0' ? 0 : 1);
      if (max !== undefined && n > max) throw new RangeError(`Expected \`${key}\` to be at most ${max}, got \`${n}\` (number)`);
      return n;
    }
    case 'duration':
      return expectDuration(key, value);
    case 'positive-duration':
      return expectDuration(key, value, 0);
    case 'delay':
      return validateMaxDelay(value);
    case 'boolean':
      if (typeof value !== 'boolean') throw new TypeError(`Expected \`${key}\` to be true or false, got ${JSON.stringify(value)}`);
      return value;
    case 'labels': {
      const rule = `Expected \`${key}\` to be an object of output name to a labels file in the model's folder or an array of strings`;
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new TypeError(`${rule}, got ${JSON.stringify(value)?.slice(0, 80)}`);
      for (const [output, labels] of Object.entries(value)) {
        const ok = typeof labels === 'string' ? LABEL_FILE.test(labels) : Array.isArray(labels) && labels.every((l) => typeof l === 'string');
        if (!ok) throw new TypeError(`${rule}, got ${JSON.stringify(output)}: ${JSON.stringify(labels)?.slice(0, 80)}`);
      }
      return value;
    }
    default: // list
      if (!Array.isArray(value) || value.length === 0) throw new TypeError(`Expected \`${key}\` to be a non-empty array of integers, got ${JSON.stringify(value)}`);
      return value.map((size, i) => expectInteger(`${key}[${i}]`, size, 1));
  }
}

/** Reads and checks `config.json`; every message names the file, the key, the rule and the value. */
export function readModelConfig(file: string): ModelConfigFile {
  if (!existsSync(file)) return {};
  // A FIFO or a device would block this (main) thread in readFileSync for as long as it likes.
  if (!statSync(file).isFile()) throw new Error(`${file}: not a regular file`);
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
      config[key] = checkValue(key, spec.kind, value, spec.max);
    } catch (error) {
      throw new Error(`${file}: ${(error as Error).message}`);
    }
  }
  try {
    checkPriorityLevels(config as PriorityLevels);
  } catch (error) {
    throw new Error(`${file}: ${(error as Error).message}`);
  }
  // Batching settings for a model that says it has no batch dimension: a contradiction, said rather than ignored.
  if (config.maxBatchSize === 0 && (config.pad === true || config.preferredBatchSizes !== undefined)) {
    throw new Error(`${file}: \`${config.pad === true ? 'pad' : 'preferredBatchSizes'}\` is for batches of rows, and \`maxBatchSize\` 0 is a model without a batch dimension (one request per run): leave one out`);
  }
  return config as ModelConfigFile;
}

const lstat = (path: string): Stats | undefined => lstatSync(path, { throwIfNoEntry: false });
const stat = (path: string): Stats | undefined => statSync(path, { throwIfNoEntry: false });

/**
 * The model entries of a repository, by name: its folders, and its symbolic links, which are listed
 * only so that they show as UNAVAILABLE with the reason (see `repositoryLoader`) rather than vanish.
 * Other entries (files, odd names) are skipped.
 */
export function listRepository(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((entry) => (entry.isDirectory() || entry.isSymbolicLink()) && MODEL_NAME.test(entry.name))
    .map((entry) => entry.name)
    .sort();
}

/**
 * Builds a repository's model by name, with the server-wide settings as defaults under its config.json.
 *
 * One rule for symbolic links, at start and on `/load` alike: a model folder must be a real
 * directory of the repository, and a link in its place is refused with that reason. Followed, a link
 * would give one folder two names (two batchers, two metric labels), or serve a name from a tree
 * outside the one the operator reviews. Files inside a model folder (`model.onnx` linked to a shared
 * cache) are followed as before: they are that model's business.
 *
 * The load as a whole (reading the module's exports, building the workers, every `context()`) must
 * finish within `loadTimeout`; past it, or once `signal` aborts (an unload), the workers are stopped
 * and the load fails with the reason.
 */
export function repositoryLoader(dir: string, defaults: ModelConfig, onBatch: (info: BatchInfo, version?: string) => void, tracing?: BatchTracing, triton: TritonDefaults = { given: {} }): ModelLoader {
  const has = (name: string): boolean => {
    if (!MODEL_NAME.test(name)) return false;
    const entry = lstat(join(dir, name));
    return entry !== undefined && (entry.isDirectory() || entry.isSymbolicLink());
  };
  const load = async (name: string, signal?: AbortSignal, override?: LoadOverride): Promise<ServedModel> => {
    // Triton's load overrides: the model's files alone (no repository folder), or its folder with another config (load-override.ts).
    const overridden = (folder: string | undefined) => loadWithOverride(override as LoadOverride, { folder, tritonLayout: folder !== undefined && isTritonLayout(folder), name, defaults, triton, onBatch, tracing, signal });
    if (override?.files !== undefined) return overridden(undefined);
    const folder = join(dir, name);
    const entry = MODEL_NAME.test(name) ? lstat(folder) : undefined;
    if (entry?.isSymbolicLink() === true) throw new ModelLoadError(`${folder} is a symbolic link: a model folder must be a real directory of the repository (links are not followed)`);
    if (entry?.isDirectory() !== true) throw new ModelLoadError(`No folder ${folder} in the repository`);
    if (override !== undefined) return overridden(folder);
    // Triton's layout (config.pbtxt, version folders): model/triton-repository.ts.
    if (isTritonLayout(folder)) return loadTritonModel({ folder, name, defaults, triton, onBatch, tracing, signal });
    const config = readModelConfig(join(folder, 'config.json'));
    // The server's maxBatchSize is a default for models that can batch; a model without a batch dimension gets 0 (batch-dimension.ts).
    const { maxBatchSize: defaultMaxBatchSize, ...otherDefaults } = defaults;
    const { queueCap, timeout, loadTimeout = DEFAULT_LOAD_TIMEOUT_MS, parameters, labels: labelSources, ...settings } = { ...otherDefaults, ...config, ...(defaultMaxBatchSize === undefined ? {} : { defaultMaxBatchSize }) };
    const labels = labelSources === undefined ? {} : readLabels(folder, labelSources);
    const path = ['model.onnx', 'model.js', 'model.mjs'].map((f) => join(folder, f)).find((f) => existsSync(f));
    if (path === undefined) throw new ModelLoadError(`${folder} holds no model.onnx, model.js or model.mjs`);
    // A FIFO (or a device) would block the thread that reads it for as long as it likes.
    if (stat(path)?.isFile() !== true) throw new ModelLoadError(`${path} is not a regular file`);
    const onnx = path.endsWith('.onnx');

    const deadline = new AbortController();
    let phase = onnx ? 'it was built' : `its exports were read from ${path}`;
    const timer = setTimeout(() => deadline.abort(new LoadTimeoutError(`${name} did not load within ${loadTimeout} ms (\`loadTimeout\`) while ${phase}; its threads were stopped`)), loadTimeout);
    // The threads being waited for keep the process alive; the deadline alone must not.
    timer.unref();
    const cancel = (): void => deadline.abort(signal?.reason);
    if (signal?.aborted === true) cancel();
    signal?.addEventListener('abort', cancel, { once: true });
    try {
      const common = { ...settings, ...labels, name, onBatch, ...(parameters === undefined ? {} : { parameters }), ...(tracing === undefined ? {} : { tracing }), ...(queueCap === undefined ? {} : { channelCap: queueCap }) };
      const model = onnx ? createOnnxModel({ ...common, path }) : await createJsModel({ ...common, path, config: config as Record<string, unknown>, signal: deadline.signal });
      phase = onnx ? 'its workers built their ONNX Runtime sessions' : 'its workers ran context()';
      try {
        await untilAborted(model.batcher.ready(), deadline.signal);
      } catch (error) {
        // Interruptible (JS) workers are terminated; ONNX ones, which may sit in native code, are
        // retired and exit once it returns: terminating them there would abort the process.
        model.batcher.destroy(error);
        throw error;
      }
      return timeout === undefined ? model : { ...model, timeout };
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', cancel);
    }
  };
  return Object.assign(load, { has, list: () => listRepository(dir) });
}
