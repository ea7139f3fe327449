import { basename, dirname } from 'node:path';
import { pathToFileURL } from 'node:url';
import { move } from 'batched-fn';
import type { JsModelWorkerData } from './js-model.worker.js';
import { ModelLoadError, type OnnxModelOptions, type ServedModel } from './onnx-model.js';
import { servedBatcher } from './served-batcher.js';
import type { Datatype, ModelSignature, TensorSpec } from './signature.js';

const DATATYPES = new Set<Datatype>(['FP32', 'FP64', 'INT8', 'INT16', 'INT32', 'INT64', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'BOOL', 'BYTES']);

export interface JsModelOptions extends Omit<OnnxModelOptions, 'path' | 'threads'> {
  /** `model.js` or `model.mjs`, exporting `inputs`, `outputs`, `handler` and optionally `context` and `dispose`. */
  path: string;
  /** The folder's parsed config.json, handed to the module's `context(config)`. */
  config?: Record<string, unknown>;
}

function readSpecs(file: string, which: 'inputs' | 'outputs', value: unknown): TensorSpec[] {
  if (!Array.isArray(value) || value.length === 0) throw new ModelLoadError(`${file} must export \`${which}\`, a non-empty array of { name, datatype, shape }`);
  return value.map((spec: { name?: unknown; datatype?: unknown; shape?: unknown }, i) => {
    if (typeof spec?.name !== 'string' || !DATATYPES.has(spec.datatype as Datatype)) throw new ModelLoadError(`${file}: \`${which}[${i}]\` needs a string name and a KServe datatype`);
    const shape = spec.shape;
    if (!Array.isArray(shape) || shape[0] !== -1 || !shape.every((d) => Number.isInteger(d) && (d === -1 || d >= 1))) {
      throw new ModelLoadError(`${file}: \`${which}[${i}].shape\` must start with -1 (the rows) followed by sizes or -1, got ${JSON.stringify(shape)}`);
    }
    return { name: spec.name, datatype: spec.datatype as Datatype, shape: shape as number[] };
  });
}

/**
 * A model written in JS, served like an ONNX one: its metadata is read here
 * (keep the module's top level cheap), and its handler runs in worker threads
 * with the same batching, crash recovery and metrics.
 */
export async function createJsModel(options: JsModelOptions): Promise<ServedModel> {
  const url = pathToFileURL(options.path).href;
  let module: { inputs?: unknown; outputs?: unknown; handler?: unknown };
  try {
    module = (await import(url)) as typeof module;
  } catch (error) {
    throw new ModelLoadError(`${options.path} failed to load: ${(error as Error).message}`);
  }
  if (typeof module.handler !== 'function') throw new ModelLoadError(`${options.path} must export a \`handler(requests, context)\` function`);
  const signature: ModelSignature = { inputs: readSpecs(options.path, 'inputs', module.inputs), outputs: readSpecs(options.path, 'outputs', module.outputs) };
  const config = options.config ?? {};
  const parameters = (config.parameters ?? {}) as Record<string, unknown>;
  const workerData: JsModelWorkerData = { moduleUrl: url, config, outputs: signature.outputs, binary: parameters.binary === true };
  const name = options.name ?? basename(dirname(options.path));
  const { batcher, maxBatchSize } = servedBatcher(new URL('./js-model.worker.js', import.meta.url), workerData, signature, { ...options, name });
  return { name, version: '1', platform: 'batched-fn_js', signature, maxBatchSize, batcher, infer: (item, callOptions) => batcher(move(item), callOptions) };
}
