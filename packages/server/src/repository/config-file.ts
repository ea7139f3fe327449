import { existsSync, readFileSync, type Stats, statSync } from 'node:fs';
import { join } from 'node:path';
import type { OnnxModelOptions } from '../formats/onnx-model.js';
import { readSequenceBatching } from '../formats/sequence-table.js';
import { ModelLoadError } from '../model/errors.js';
import { checkPriorityLevels, type PriorityLevels } from '../model/served-model.js';
import { renameOldSettings } from '../settings/deprecated.js';
import { expectInteger } from 'batched-fn/adapter';
import { checkSetting, type SettingName } from '../settings/settings.js';

/**
 * A model's own `config.json` in our repository layout (`DIR/<name>/config.json`): its keys are the
 * server's settings (settings/settings.ts: the same names, rules and messages as the options and, in
 * kebab-case, the flags), plus what only a model folder can say: `loadTimeout`, the protocol's
 * priority levels and class labels, and `parameters` for the model itself.
 */
export interface ModelConfig
  extends Partial<Omit<OnnxModelOptions, 'path' | 'name' | 'onBatch' | 'tracing' | 'labels' | 'labelFiles'>> {
  timeout?: number;
  /** Longest the model may take to load, in ms: reading its exports, then every worker's `context()`. */
  loadTimeout?: number;
  parameters?: Record<string, unknown>;
  /** A stateful model's: Triton's `sequence_batching` and its most live sequences (formats/sequence-table.ts). */
  sequence_batching?: Record<string, unknown>;
  maxSequences?: number;
  /** A generator's (formats/generator.ts): most sequences per step, its batching, its token limits. */
  maxActive?: number;
  batching?: 'continuous' | 'static';
  maxTokens?: number;
  defaultMaxTokens?: number;
}

/** A model's config.json: its ModelConfig, and what only a model folder can say. */
export interface ModelConfigFile extends ModelConfig {
  /**
   * Class labels per output, for the classification extension: a file of the model's folder with
   * one label per line (Triton's `label_filename`), or the labels themselves.
   */
  labels?: Record<string, string | string[]>;
}

/** The server settings a model's config.json may set, checked by their own rows. */
const SETTING_KEYS: readonly SettingName[] = [
  'maxBatchSize',
  'maxDelay',
  'latencyTarget',
  'preferredBatchSizes',
  'pad',
  'channelCap',
  'workers',
  'threads',
  'timeout',
  'batchTimeout',
  'loadTimeout',
  // A generator's (formats/generator.ts).
  'maxActive',
  'batching',
  'maxTokens',
  'defaultMaxTokens',
  // A sequence model's (formats/sequence-table.ts).
  'maxSequences',
];
/** Keys of config.json alone (no setting of the server): what the protocol reads per model. */
const MODEL_KEYS = ['priorityLevels', 'defaultPriorityLevel', 'labels', 'sequence_batching'] as const;
const KNOWN = [...SETTING_KEYS, ...MODEL_KEYS, 'parameters'];

/** A labels file: a plain name in the model's folder, as Triton's `label_filename` is. */
const LABEL_FILE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$/;
/** Largest labels file read (a million labels of 16 bytes): it is read on the main thread at load. */
const MAX_LABELS_BYTES = 16 * 1024 * 1024;

/** `labels` → the labels of each output, and the file each came from, read from the model's folder. */
export function readLabels(
  folder: string,
  labels: Record<string, string | string[]>,
): { labels: Record<string, string[]>; labelFiles: Record<string, string> } {
  const out: Record<string, string[]> = {};
  const files: Record<string, string> = {};
  for (const [output, value] of Object.entries(labels)) {
    if (Array.isArray(value)) {
      out[output] = value;
      continue;
    }
    const file = join(folder, value);
    const info = stat(file);
    if (info?.isFile() !== true)
      throw new ModelLoadError(`${file} (the labels of output \`${output}\`) is not a regular file`);
    if (info.size > MAX_LABELS_BYTES)
      throw new ModelLoadError(
        `${file} (the labels of output \`${output}\`) is ${info.size} bytes, more than ${MAX_LABELS_BYTES}`,
      );
    // One label per line, as Triton reads label_filename; a final newline ends the last one.
    const lines = readFileSync(file, 'utf8').split(/\r?\n/);
    if (lines.at(-1) === '') lines.pop();
    out[output] = lines;
    files[output] = value;
  }
  return { labels: out, labelFiles: files };
}

const stat = (path: string): Stats | undefined => statSync(path, { throwIfNoEntry: false });

/** Checks one key of config.json by its rule; every message names the key, the rule and the value. */
function checkValue(key: string, value: unknown): unknown {
  if ((SETTING_KEYS as readonly string[]).includes(key)) return checkSetting(key as SettingName, value);
  if (key === 'priorityLevels' || key === 'defaultPriorityLevel') return expectInteger(key, value, 1);
  // Triton's field, as in config.pbtxt; checked here, read by the JS model (formats/sequence-table.ts).
  if (key === 'sequence_batching') {
    readSequenceBatching(value, undefined);
    return value;
  }
  // labels
  const rule = `Expected \`${key}\` to be an object of output name to a labels file in the model's folder or an array of strings`;
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new TypeError(`${rule}, got ${JSON.stringify(value)?.slice(0, 80)}`);
  for (const [output, labels] of Object.entries(value)) {
    const ok =
      typeof labels === 'string'
        ? LABEL_FILE.test(labels)
        : Array.isArray(labels) && labels.every((l) => typeof l === 'string');
    if (!ok) throw new TypeError(`${rule}, got ${JSON.stringify(output)}: ${JSON.stringify(labels)?.slice(0, 80)}`);
  }
  return value;
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
  // `queueCap` is `channelCap`'s old name: read as it, with one warning (settings/deprecated.ts).
  const given = renameOldSettings(raw as Record<string, unknown>, file);
  for (const [key, value] of Object.entries(given)) {
    if (key === 'parameters') {
      if (typeof value !== 'object' || value === null || Array.isArray(value))
        throw new Error(`${file}: Expected \`parameters\` to be an object, got ${JSON.stringify(value)}`);
      config.parameters = value;
      continue;
    }
    if (!KNOWN.includes(key))
      throw new Error(`${file}: unknown key \`${key}\`; known keys are ${KNOWN.map((k) => `\`${k}\``).join(', ')}`);
    try {
      config[key] = checkValue(key, value);
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
    throw new Error(
      `${file}: \`${config.pad === true ? 'pad' : 'preferredBatchSizes'}\` is for batches of rows, and \`maxBatchSize\` 0 is a model without a batch dimension (one request per run): leave one out`,
    );
  }
  return config as ModelConfigFile;
}
