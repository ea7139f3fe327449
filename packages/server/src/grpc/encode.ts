import { bytesToBinary } from '../protocol/bytes-data.js';
import { type RegionRef, writeRegionOutputs } from '../protocol/shared-memory.js';
import type { BytesData, InferResult, Tensor, TypedArray } from '../model/tensor.js';

export interface GrpcInferResponse {
  model_name: string;
  model_version: string;
  id: string;
  outputs: {
    name: string;
    datatype: string;
    shape: number[];
    parameters?: Record<string, { string_param: string } | { int64_param: number }>;
  }[];
  raw_output_contents: Buffer[];
}

function rawContents(tensor: Tensor): Buffer {
  if (tensor.datatype === 'BYTES') {
    const bytes = bytesToBinary(tensor.data as BytesData);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  const data = tensor.data as TypedArray;
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * The ModelInferResponse: outputs in the order asked, their elements always in
 * `raw_output_contents`, whichever way the request came. Triton answers so, and its clients
 * (tritonclient's `as_numpy`, its explicit-content examples) read only that field: typed
 * `contents` in the answer were invisible to them. Raw is also exact for every datatype
 * (64-bit integers, FP16) and costs no per-element encoding.
 */
export function encodeGrpcInfer(
  modelName: string,
  modelVersion: string,
  id: string | undefined,
  result: InferResult,
  outputs: readonly { name: string; region?: RegionRef | undefined }[],
): GrpcInferResponse {
  // Outputs asked into a shared-memory region are written there; as Triton answers, each keeps
  // its place in raw_output_contents, empty, and says where it went in its parameters.
  const inRegions = writeRegionOutputs(outputs, result);
  return {
    model_name: modelName,
    model_version: modelVersion,
    id: id ?? '',
    outputs: outputs.map(({ name }) => {
      const tensor = result[name] as Tensor;
      const region = inRegions.get(name);
      if (region === undefined) return { name, datatype: tensor.datatype, shape: tensor.shape };
      const parameters = Object.fromEntries(
        Object.entries(region).map(([key, value]) => [
          key,
          typeof value === 'string' ? { string_param: value } : { int64_param: value },
        ]),
      );
      return { name, datatype: tensor.datatype, shape: tensor.shape, parameters };
    }),
    raw_output_contents: outputs.map(({ name }) =>
      inRegions.has(name) ? Buffer.alloc(0) : rawContents(result[name] as Tensor),
    ),
  };
}
