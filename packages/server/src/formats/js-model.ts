import { basename, dirname } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type MessagePort, Worker } from 'node:worker_threads';
import type { StepInfo } from 'batched-fn';
import type { ExportsMessage, ExportsWorkerData, ModuleExports } from './js-model.exports.js';
import type { JsModelWorkerData } from './js-model.worker.js';
import { ModelLoadError } from '../model/errors.js';
import { type ModelCalls, spanContextOf } from '../model/model-calls.js';
import type { CallerMark } from '../model/tensor.js';
import { RequestSignals, serveModelCalls } from './model-calls-host.js';
import type { ServedModel } from '../model/served-model.js';
import type { OnnxModelOptions } from './onnx-model.js';
import { createGeneratorModel, readParameters } from './generator.js';
import { liveModel, servedBatcher } from './served-batcher.js';
import { sequenceModel } from './sequence-model.js';
import { readSequenceBatching, type SequenceBatching, SequenceTable } from './sequence-table.js';
import { type Datatype, isDatatype, type ModelSignature, type TensorSpec } from '../model/signature.js';

export interface JsModelOptions extends Omit<OnnxModelOptions, 'path' | 'threads'> {
  /** `model.js` or `model.mjs`, exporting `inputs`, `outputs`, `handler` and optionally `context` and `dispose`. */
  path: string;
  /** The folder's parsed config.json, handed to the module's `context(config)`. */
  config?: Record<string, unknown>;
  /** Gives up reading the module's exports (the thread reading them is terminated) and rejects with its reason. */
  signal?: AbortSignal;
  /** A generator's steps (formats/generator.ts), for the metrics. */
  onStep?: (info: StepInfo) => void;
  /** The server's other models, for the module's `models` handle (its `context(config, { models })`). */
  calls?: ModelCalls;
}

/**
 * Imports the module in a thread of its own and answers its exports; see js-model.exports.ts for
 * why. The thread is terminated as soon as it has answered (or `signal` aborts): a module that
 * spins, or starts timers, at its top level cannot keep it.
 */
function readExports(path: string, moduleUrl: string, signal: AbortSignal | undefined): Promise<ModuleExports> {
  if (signal?.aborted === true) return Promise.reject(signal.reason);
  return new Promise<ModuleExports>((resolve, reject) => {
    const worker = new Worker(new URL('./js-model.exports.js', import.meta.url), {
      workerData: { readExportsOf: moduleUrl } satisfies ExportsWorkerData,
      name: `${basename(dirname(path))} exports`,
    });
    let settled = false;
    const settle = (finish: () => void): void => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      void worker.terminate();
      finish();
    };
    const onAbort = (): void => settle(() => reject(signal?.reason));
    signal?.addEventListener('abort', onAbort, { once: true });
    worker.on('message', (message: ExportsMessage | undefined) => {
      if (message?.kind !== 'bfn-exports') return;
      settle(() =>
        message.ok
          ? resolve(message.exports)
          : reject(new ModelLoadError(`${path} failed to load: ${message.message}`)),
      );
    });
    worker.once('error', (error) =>
      settle(() => reject(new ModelLoadError(`${path} failed to load: ${error.message}`))),
    );
    worker.once('exit', (code) =>
      settle(() =>
        reject(
          new ModelLoadError(`${path} failed to load: its thread exited (code ${code}) before its exports were read`),
        ),
      ),
    );
  });
}

function readSpecs(file: string, which: 'inputs' | 'outputs', value: unknown): TensorSpec[] {
  if (!Array.isArray(value) || value.length === 0)
    throw new ModelLoadError(`${file} must export \`${which}\`, a non-empty array of { name, datatype, shape }`);
  return value.map((spec: { name?: unknown; datatype?: unknown; shape?: unknown }, i) => {
    if (typeof spec?.name !== 'string' || !isDatatype(spec.datatype))
      throw new ModelLoadError(`${file}: \`${which}[${i}]\` needs a string name and a KServe datatype`);
    const shape = spec.shape;
    // A leading -1 is the batch dimension (the rows); a model declared without one is served one
    // request at a time, its shapes as declared (batch-dimension.ts).
    if (
      !Array.isArray(shape) ||
      shape.length === 0 ||
      !shape.every((d) => Number.isInteger(d) && (d === -1 || d >= 1))
    ) {
      throw new ModelLoadError(
        `${file}: \`${which}[${i}].shape\` must be a non-empty array of sizes or -1 (any size), starting with -1 (the rows) for a model that batches, got ${JSON.stringify(shape)}`,
      );
    }
    return { name: spec.name, datatype: spec.datatype as Datatype, shape: shape as number[] };
  });
}

/**
 * A model written in JS, served like an ONNX one: its metadata is read in a thread of its own, and
 * its handler runs in worker threads with the same batching, crash recovery and metrics. Each load
 * is the file as it is now, entirely: the exports are read afresh, and the workers run only that
 * content (a worker restarted after the file changed refuses to run it; load the model again).
 */
export async function createJsModel(options: JsModelOptions): Promise<ServedModel> {
  const url = pathToFileURL(options.path).href;
  const module = await readExports(options.path, url, options.signal);
  // A module that steps and does not answer requests is a generator (formats/generator.ts).
  if (!module.hasHandler && module.hasStep) return jsGenerator(options, url, module);
  if (!module.hasHandler)
    throw new ModelLoadError(`${options.path} must export a \`handler(requests, context)\` function`);
  const signature: ModelSignature = {
    inputs: readSpecs(options.path, 'inputs', module.inputs),
    outputs: readSpecs(options.path, 'outputs', module.outputs),
  };
  const config = options.config ?? {};
  const parameters = (config.parameters ?? {}) as Record<string, unknown>;
  const name = options.name ?? basename(dirname(options.path));
  const declared = readCalls(options.path, module.calls);
  const workerData: JsModelWorkerData = {
    name,
    moduleUrl: url,
    sha256: module.sha256,
    config,
    outputs: signature.outputs,
    // config.json gives a boolean; config.pbtxt's parameters are strings (Triton's string_value).
    binary: parameters.binary === true || parameters.binary === 'true',
  };
  // A stateful model (Triton's sequence batcher): its sequences' states live in its workers.
  let sequences: SequenceBatching | undefined;
  if (config.sequence_batching !== undefined) {
    try {
      sequences = readSequenceBatching(config.sequence_batching, config.maxSequences as number | undefined);
    } catch (error) {
      throw new ModelLoadError(`${options.path}: ${(error as Error).message}`);
    }
    workerData.sequences = true;
  }
  const calls = options.calls;
  // The requests in its workers, so the calls made for them are given up with them.
  const requests = new RequestSignals();
  const {
    batcher,
    batched,
    infer,
    config: served,
  } = servedBatcher(new URL('./js-model.worker.js', import.meta.url), workerData, signature, {
    ...options,
    name,
    ...(sequences === undefined ? {} : { sequences: true }),
    ...(calls === undefined
      ? {}
      : { connectWorker: (port: MessagePort) => serveModelCalls(port, calls, { name, declared, requests }) }),
  });
  const model = liveModel(
    {
      name,
      version: '1',
      platform: 'batched-fn_js',
      signature,
      batcher,
      infer: calls === undefined ? infer : withCaller(infer, requests),
      config: served,
      ...(declared === undefined ? {} : { dependencies: declared }),
    },
    batched,
  );
  if (sequences === undefined) return model;
  const workers = batcher.stats.workers.length;
  return sequenceModel(model, new SequenceTable(name, workers, sequences));
}

/**
 * The module's `calls` export: the models it calls, by name. Declared, they are checked at load (a
 * cycle is refused, and the model is READY only while they are: repository/registry.ts) and are the
 * only ones it may call; left out, it may call any model, and a cycle is found when a call makes it.
 */
function readCalls(file: string, value: unknown): readonly string[] | undefined {
  if (value === undefined) return undefined;
  if (
    !Array.isArray(value) ||
    !value.every((name) => typeof name === 'string' && name.length > 0 && name.length <= 64) ||
    new Set(value).size !== value.length
  )
    throw new ModelLoadError(`${file}: \`calls\` must be an array of distinct model names`);
  return Object.freeze([...value] as string[]);
}

/**
 * A request from a client starts a chain of calls: its deadline and trace go with it to the worker,
 * whose calls to other models inherit them (model-calls.worker.ts). A call from another model
 * carries its own already.
 */
function withCaller(infer: ServedModel['infer'], requests: RequestSignals): ServedModel['infer'] {
  return (item, options) => {
    const trace = spanContextOf(options.trace);
    const origin = requests.register(options.signal);
    const caller: CallerMark = item.caller ?? {
      chain: [],
      ...(options.timeout === undefined ? {} : { deadline: Date.now() + options.timeout }),
      ...(trace === undefined ? {} : { trace }),
    };
    return infer({ ...item, caller: { ...caller, origins: [origin.id] } }, options).finally(origin.release);
  };
}

/** A repository generator: the module steps in worker threads; its config.json is what `context()` receives. */
function jsGenerator(options: JsModelOptions, url: string, module: ModuleExports): ServedModel {
  const settings = options as JsModelOptions & {
    maxActive?: number;
    batching?: 'continuous' | 'static';
    maxTokens?: number;
    defaultMaxTokens?: number;
  };
  const defined = <T>(key: string, value: T | undefined) => (value === undefined ? {} : { [key]: value });
  return createGeneratorModel({
    name: options.name ?? basename(dirname(options.path)),
    module: new URL(url),
    workerData: options.config ?? {},
    parameters: readParameters(options.path, module.parameters),
    hasChatTemplate: module.hasChatTemplate,
    ...defined('maxActive', settings.maxActive),
    ...defined('batching', settings.batching),
    ...defined('maxTokens', settings.maxTokens),
    ...defined('defaultMaxTokens', settings.defaultMaxTokens),
    ...defined('channelCap', settings.channelCap),
    ...defined('batchTimeout', settings.batchTimeout),
    ...defined('workers', settings.workers),
    ...defined('priorityLevels', settings.priorityLevels),
    ...defined('defaultPriorityLevel', settings.defaultPriorityLevel),
    ...defined('configParameters', settings.parameters),
    ...defined('onStep', options.onStep),
    platform: 'batched-fn_js',
  });
}
