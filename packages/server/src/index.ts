// First, before any onnxruntime session: see model/ort-environment.ts.
import './model/ort-environment.js';
export { kservePlugin, type KServeOptions } from './kserve/plugin.js';
export { type RegionStatus, SharedMemoryError, type SharedMemoryOptions, SharedMemoryRegistry } from './kserve/shared-memory.js';
export { ServerMetrics } from './metrics.js';
export { buildMlpGraph, DEFAULT_MODEL, defaultCacheDir, ensureMlpModel, type MlpSpec } from './model/default-model.js';
export { buildCharLmGraph, CHARLM, CHARLM_VOCAB, type CharLmSpec, ensureCharLm } from './model/charlm.js';
export { createOnnxModel, type ModelProtocolOptions, type OnnxModelOptions, SERVER_DEFAULTS, type ServedModel, type ServedModelConfig } from './model/onnx-model.js';
export { DEFAULT_LOG_SETTINGS, type LogFormat, type LogSettings, ServerLog, serverLog } from './log.js';
export { encodeModel, ONNX_BFLOAT16, ONNX_FLOAT, ONNX_FLOAT16, ONNX_INT32, ONNX_INT64, type OnnxGraph } from './model/onnx-writer.js';
export { fromBFloat16Bits, fromFloat16Bits, toBFloat16Bits, toFloat16Bits } from './model/half.js';
export { type Datatype, type ModelSignature, readOnnxSignature, type TensorSpec } from './model/signature.js';
export type { InferItem, InferResult, Tensor } from './model/tensor.js';
export { type RunningServer, SERVE_DEFAULTS, type ServeOptions, serveModel, startServer } from './server.js';
export { bench, type BenchOptions } from './bench/command.js';
export { PROTO_OPTIONS, PROTO_PATH } from './grpc/proto.js';
