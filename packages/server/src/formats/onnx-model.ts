import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import type { BatchInfo, BatchTracing } from 'batched-fn';
import { ModelLoadError } from '../model/errors.js';
import type { ModelProtocolOptions, ServedModel } from '../model/served-model.js';
import type { ModelSignature } from '../model/signature.js';
import { maxOf, SETTING_DEFAULTS } from '../settings/settings.js';
import { readOnnxSignature } from './onnx-signature.js';
import type { OnnxWorkerData } from './onnx.worker.js';
import { type BatchingSettings, liveModel, servedBatcher } from './served-batcher.js';

function loadSignature(path: string): ModelSignature {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : (error as Error).message;
    throw new ModelLoadError(`Cannot read model ${path}: ${why}`);
  }
  try {
    return readOnnxSignature(bytes);
  } catch (error) {
    throw new ModelLoadError(`${path} is not an ONNX model we can serve: ${(error as Error).message}`);
  }
}

export interface OnnxModelOptions extends Partial<BatchingSettings>, ModelProtocolOptions {
  path: string;
  name?: string;
  workers?: number;
  threads?: number;
  onBatch?: (info: BatchInfo) => void;
  /** Traces each batch (OpenTelemetry, with `--otel`). */
  tracing?: BatchTracing;
}

/**
 * Loads an ONNX model into worker threads behind a batcher. The signature is
 * read from the file on this thread, so requests are validated before they
 * ever reach a worker.
 */
export function createOnnxModel(options: OnnxModelOptions): ServedModel {
  const threads = options.threads ?? SETTING_DEFAULTS.threads;
  // ONNX Runtime starts every intra-op thread while it builds the session: an absurd count never
  // finishes (or takes the machine down with it), so it is refused before any thread starts.
  if (!Number.isInteger(threads) || threads < 1 || threads > maxOf('threads'))
    throw new RangeError(`Expected \`threads\` to be an integer from 1 to ${maxOf('threads')}, got ${threads}`);
  const signature = loadSignature(options.path);
  // onnxruntime-node cannot hand a bfloat16 tensor across (1.30 fails "Unsupported data type: 16"
  // building the session, even for models it could run): say so, naming the tensor, before any worker starts.
  const bf16 = [...signature.inputs, ...signature.outputs].find((spec) => spec.datatype === 'BF16');
  if (bf16 !== undefined)
    throw new ModelLoadError(
      `${options.path}: tensor \`${bf16.name}\` is BF16, which onnxruntime-node cannot pass into or out of a session; serve it as FP16 or FP32 (a Cast in the graph), or from a JS model`,
    );
  const workerData: OnnxWorkerData = { modelPath: options.path, threads };
  const name = options.name ?? basename(options.path).replace(/\.onnx$/, '');
  const { batcher, batched, infer, config } = servedBatcher(
    new URL('./onnx.worker.js', import.meta.url),
    workerData,
    signature,
    { ...options, name },
  );
  return liveModel(
    { name, version: '1', platform: 'onnxruntime_onnx', signature, batcher, infer, config: { ...config, threads } },
    batched,
  );
}
