import { type BatchedFn, type BatchedStream, batchedFn, batchedStream, type StepInfo } from 'batched-fn';
import { CHARLM, ensureCharLm } from '../builtin/charlm.js';
import type { CharLmWorkerData } from '../builtin/charlm.worker.js';
import { ModelLoadError } from '../model/errors.js';
import type { ChatMessage, GeneratorPrompt, ServedGenerator } from '../model/generator.js';
import { checkPriorityLevels, type ServedModel, type ServedModelConfig } from '../model/served-model.js';
import { type Datatype, isDatatype, type ModelSignature, type TensorSpec } from '../model/signature.js';
import { maxOf, SETTING_DEFAULTS } from '../settings/settings.js';
import type { ChatTemplateWorkerData } from './chat-template.worker.js';
import { generatorBatcher } from './generator-batcher.js';

/**
 * The generator kind (issue #23): a module that exports `step` (and no `handler`) is stepped by a
 * batchedStream in worker threads. Its contract is batchedStream's worker-module contract, so the
 * module itself is the worker module: `context(config)` once per thread, `start(prompts, ctx)` with
 * `{ text, parameters }`, `step(states, ctx)` one value each, `dispose(ctx)`. The server, not the
 * model, applies `max_tokens` and `stop` (protocol/generation.ts).
 */

/** A sampling parameter the model accepts: its name, and the datatype its metadata input declares. */
export interface ParameterSpec {
  name: string;
  datatype: Datatype;
}

/** Names a parameter may have: it becomes an input name and a key of every request. */
const PARAMETER_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
/** Names the server applies itself, and the prompt's: a model cannot take them as its own. */
const RESERVED = new Set(['max_tokens', 'stop', 'text_input', 'text_output', 'stream']);
const MAX_PARAMETERS = 64;
/** The longest prompt of a generator that sets none, in UTF-16 code units (a few hundred pages). */
export const DEFAULT_MAX_PROMPT = 1_048_576;

/**
 * A module's `parameters` export, checked at load: an array of names (declared FP64 [1], the type of
 * a JSON number) or of `{ name, datatype }`. Absent: none.
 */
export function readParameters(file: string, value: unknown): ParameterSpec[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.length > MAX_PARAMETERS)
    throw new ModelLoadError(
      `${file}: \`parameters\` must be an array of at most ${MAX_PARAMETERS} names or { name, datatype }`,
    );
  const seen = new Set<string>();
  return value.map((entry: unknown, i) => {
    const spec: { name?: unknown; datatype?: unknown } =
      typeof entry === 'string' ? { name: entry, datatype: 'FP64' } : ((entry ?? {}) as object);
    if (typeof spec.name !== 'string' || !PARAMETER_NAME.test(spec.name) || RESERVED.has(spec.name))
      throw new ModelLoadError(
        `${file}: \`parameters[${i}]\` must be a name of letters, digits and _ (not ${[...RESERVED].join(', ')}), got ${JSON.stringify(spec.name)?.slice(0, 80)}`,
      );
    if (seen.has(spec.name)) throw new ModelLoadError(`${file}: \`parameters\` names \`${spec.name}\` twice`);
    seen.add(spec.name);
    const datatype = spec.datatype as Datatype;
    if (!isDatatype(datatype))
      throw new ModelLoadError(`${file}: \`parameters[${i}].datatype\` must be a KServe datatype`);
    return { name: spec.name, datatype };
  });
}

/** What Triton's vLLM backend declares: the prompt, one input per sampling parameter, the text. */
export function generatorSignature(parameters: readonly ParameterSpec[]): ModelSignature {
  const inputs: TensorSpec[] = [
    { name: 'text_input', datatype: 'BYTES', shape: [1] },
    ...parameters.map((p) => ({ name: p.name, datatype: p.datatype, shape: [1] })),
  ];
  return { inputs, outputs: [{ name: 'text_output', datatype: 'BYTES', shape: [-1] }] };
}

/** A generator's settings (settings/settings.ts rows; config.json over the server's flags). */
export interface GeneratorSettings {
  /** Most sequences in one step. @default SETTING_DEFAULTS.maxActive */
  maxActive?: number;
  /** 'continuous' re-forms the batch at every step; 'static' runs a group to its longest sequence. @default SETTING_DEFAULTS.batching */
  batching?: 'continuous' | 'static';
  /** Sequences waiting to join; beyond it, 503. @default SETTING_DEFAULTS.channelCap */
  channelCap?: number;
  /** Longest a step (or a prefill) may run, in ms, before its group's streams end with ERR_BATCH_TIMEOUT. */
  batchTimeout?: number;
  /** The most tokens a request may ask for. @default SETTING_DEFAULTS.maxTokens */
  maxTokens?: number;
  /** Tokens generated when a request sets none. @default SETTING_DEFAULTS.defaultMaxTokens */
  defaultMaxTokens?: number;
  /** Worker threads, one running group each. @default 1 */
  workers?: number;
  /** Priority levels of its requests, as a batched model's (1 the highest); checked by checkPriorityLevels. */
  priorityLevels?: number;
  /** The level of requests without a priority. @default priorityLevels (the lowest) */
  defaultPriorityLevel?: number;
}

export interface GeneratorModelOptions extends GeneratorSettings {
  name: string;
  /** The module that steps: a repository model.js, or a builtin's worker. */
  module: URL;
  /** What the module's `context()` receives in each thread (a repository model's config.json). */
  workerData: unknown;
  parameters: readonly ParameterSpec[];
  /** Whether `module` exports `chatTemplate` (run in a thread of its own when asked). */
  hasChatTemplate: boolean;
  /** The longest prompt, in UTF-16 code units. @default DEFAULT_MAX_PROMPT */
  maxPrompt?: number;
  platform?: string;
  /** config.json's `parameters`, shown by the model configuration. */
  configParameters?: Record<string, unknown>;
  onStep?: (info: StepInfo) => void;
}

function checkRange(name: string, value: number, least: number, most: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < least || value > most)
    throw new (typeof value === 'number' ? RangeError : TypeError)(
      `Expected \`${name}\` to be an integer from ${least} to ${most}, got \`${String(value)}\` (${typeof value})`,
    );
  return value;
}

/** A generator served like any model: READY, listed, with metadata, config and statistics. */
export function createGeneratorModel(options: GeneratorModelOptions): ServedModel {
  const maxActive = checkRange('maxActive', options.maxActive ?? SETTING_DEFAULTS.maxActive, 1, maxOf('maxActive'));
  const maxTokens = checkRange('maxTokens', options.maxTokens ?? SETTING_DEFAULTS.maxTokens, 1, maxOf('maxTokens'));
  const defaultMaxTokens = checkRange(
    'defaultMaxTokens',
    options.defaultMaxTokens ?? Math.min(SETTING_DEFAULTS.defaultMaxTokens, maxTokens),
    1,
    maxTokens,
  );
  const batching = options.batching ?? SETTING_DEFAULTS.batching;
  const channelCap = options.channelCap ?? SETTING_DEFAULTS.channelCap;
  const workers = options.workers ?? 1;
  checkPriorityLevels(options);
  const stream = batchedStream<GeneratorPrompt, unknown, string>({
    worker: options.module,
    workerData: options.workerData,
    workers,
    maxBatchSize: maxActive,
    maxDelay: 'auto',
    channelCap,
    mode: batching,
    name: options.name,
    ...(options.batchTimeout === undefined ? {} : { batchTimeout: options.batchTimeout }),
    ...(options.onStep === undefined ? {} : { onStep: options.onStep }),
  }) as BatchedStream<GeneratorPrompt, string>;
  let templates: BatchedFn<ChatMessage[], string> | undefined;
  const chatTemplate = (messages: readonly ChatMessage[]): Promise<string> => {
    if (!options.hasChatTemplate) return Promise.reject(new Error(`${options.name} exports no chatTemplate`));
    // Started on first use: most generators serve completions only.
    templates ??= batchedFn<ChatMessage[], string>({
      worker: new URL('./chat-template.worker.js', import.meta.url),
      workerData: { moduleUrl: options.module.href } satisfies ChatTemplateWorkerData,
      maxBatchSize: 16,
      maxDelay: 0,
      channelCap,
      name: `${options.name} chatTemplate`,
    });
    return templates([...messages]);
  };
  const generator: ServedGenerator = {
    stream,
    parameters: options.parameters.map((p) => p.name),
    maxTokens,
    defaultMaxTokens,
    maxPrompt: options.maxPrompt ?? DEFAULT_MAX_PROMPT,
    maxActive,
    batching,
    created: Math.floor(Date.now() / 1000),
    hasChatTemplate: options.hasChatTemplate,
    chatTemplate,
  };
  const facade = generatorBatcher(stream as BatchedStream<unknown, string>, {
    maxBatchSize: maxActive,
    maxDelay: 0,
    channelCap,
    concurrency: workers,
  });
  // The template thread stops with the model.
  const batcher = Object.defineProperties(((...args: Parameters<typeof facade>) => facade(...args)) as typeof facade, {
    ...Object.getOwnPropertyDescriptors(facade),
    close: { value: () => Promise.all([facade.close(), templates?.close()]).then(() => {}) },
    destroy: {
      value: (reason?: unknown) => {
        facade.destroy(reason);
        templates?.destroy(reason);
      },
    },
  });
  const config: ServedModelConfig = {
    dynamicBatching: false,
    ...(options.priorityLevels === undefined ? {} : { priorityLevels: options.priorityLevels }),
    ...(options.defaultPriorityLevel === undefined ? {} : { defaultPriorityLevel: options.defaultPriorityLevel }),
    ...(options.batchTimeout === undefined ? {} : { batchTimeout: options.batchTimeout }),
    ...(options.configParameters === undefined ? {} : { parameters: options.configParameters }),
  };
  return {
    name: options.name,
    version: '1',
    platform: options.platform ?? 'batched-fn_generator',
    signature: generatorSignature(options.parameters),
    // One request is one sequence, never rows of a batch: Triton's 0, as its vLLM backend declares.
    maxBatchSize: 0,
    config,
    batcher,
    generator,
    infer: (item, callOptions) => batcher(item, callOptions),
  };
}

/** A generative model as RunningServer.generators lists it: its name and its stream. */
export interface GenerativeModel {
  readonly name: string;
  readonly version: string;
  readonly generate: BatchedStream<GeneratorPrompt, string>;
}

/** The generators among models, as RunningServer lists them. */
export function generativeModels(models: readonly ServedModel[]): GenerativeModel[] {
  return models.flatMap((m) =>
    m.generator === undefined ? [] : [{ name: m.name, version: m.version, generate: m.generator.stream }],
  );
}

export interface CharLmOptions extends GeneratorSettings {
  name?: string;
  /**
   * Most prompt characters a sequence is fed per decode step (chunked prefill): a step costs at
   * most this many runs however many long prompts join, so running streams keep their pace,
   * and a prompt of L characters answers its first token after ⌈L / prefillChunk⌉ steps.
   * @default SETTING_DEFAULTS.prefillChunk
   */
  prefillChunk?: number;
  cacheDir?: string;
  /** After every step that produced tokens; `sequences` counts the sequences that produced one (rows still prefilling produce none). */
  onStep?: (info: StepInfo) => void;
}

/**
 * The prompt is prefilled one character per run (a recurrent model), about 0.2 ms each, a chunk
 * of `--prefill-chunk` characters per step shared with the running streams, so a long prompt no
 * longer stalls them; it still delays its own first token (1,000 characters: about 0.25 s idle)
 * and holds a slot of the group meanwhile.
 */
const CHARLM_MAX_PROMPT = 1_000;

/** charlm, the builtin generator: served through the generator kind like any repository generator. */
export function createCharLmGenerator(options: CharLmOptions = {}): ServedModel {
  const name = options.name ?? 'charlm';
  const prefillChunk = checkRange(
    'prefillChunk',
    options.prefillChunk ?? SETTING_DEFAULTS.prefillChunk,
    1,
    maxOf('prefillChunk'),
  );
  const onStep = options.onStep;
  const workerData: CharLmWorkerData = {
    modelPath: ensureCharLm(CHARLM, options.cacheDir),
    hidden: CHARLM.hidden,
    prefillChunk,
  };
  const { prefillChunk: _chunk, cacheDir: _cache, onStep: _onStep, name: _name, ...settings } = options;
  return createGeneratorModel({
    ...settings,
    name,
    module: new URL('../builtin/charlm.worker.js', import.meta.url),
    workerData,
    parameters: [
      { name: 'temperature', datatype: 'FP32' },
      { name: 'seed', datatype: 'UINT32' },
    ],
    hasChatTemplate: false,
    maxPrompt: CHARLM_MAX_PROMPT,
    platform: 'batched-fn_generator',
    configParameters: { prefill_chunk: prefillChunk },
    ...(onStep === undefined
      ? {}
      : {
          onStep: (info: StepInfo) => {
            if (info.values > 0) onStep({ ...info, sequences: info.values });
          },
        }),
  });
}
