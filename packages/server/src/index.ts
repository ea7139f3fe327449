// First, before any onnxruntime session: see formats/ort-environment.ts.
import './formats/ort-environment.js';
export { kservePlugin, type KServeOptions } from './rest/plugin.js';
export {
  type RegionStatus,
  SharedMemoryError,
  type SharedMemoryOptions,
  SharedMemoryRegistry,
} from './protocol/shared-memory.js';
export { ServerMetrics } from './metrics/metrics.js';
export {
  buildMlpGraph,
  DEFAULT_MODEL,
  defaultCacheDir,
  ensureMlpModel,
  type MlpSpec,
} from './builtin/default-model.js';
export { buildCharLmGraph, CHARLM, CHARLM_VOCAB, type CharLmSpec, ensureCharLm } from './builtin/charlm.js';
export { createOnnxModel, type OnnxModelOptions } from './formats/onnx-model.js';
export type { ModelProtocolOptions, ServedModel, ServedModelConfig } from './model/served-model.js';
export type { GenerateCall, ModelCallOptions, ModelCalls } from './model/model-calls.js';
export { ModelCycleError } from './model/model-calls.js';
export { SERVE_DEFAULTS, SERVER_DEFAULTS } from './settings/settings.js';
export { DEFAULT_LOG_SETTINGS, type LogFormat, type LogSettings, ServerLog, serverLog } from './log.js';
export {
  encodeModel,
  ONNX_BFLOAT16,
  ONNX_FLOAT,
  ONNX_FLOAT16,
  ONNX_INT32,
  ONNX_INT64,
  type OnnxGraph,
} from './builtin/onnx-writer.js';
export { fromBFloat16Bits, fromFloat16Bits, toBFloat16Bits, toFloat16Bits } from './model/half.js';
export type { Datatype, ModelSignature, TensorSpec } from './model/signature.js';
export { readOnnxSignature } from './formats/onnx-signature.js';
export type { InferItem, InferResult, Tensor } from './model/tensor.js';
export { type RunningServer, type ServeOptions, serveModel, startServer } from './server.js';
export { bench, type BenchOptions } from './cli/bench/command.js';
export { PROTO_OPTIONS, PROTO_PATH } from './grpc/proto.js';
