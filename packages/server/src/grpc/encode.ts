import { bytesToBinary } from '../kserve/bytes-data.js';
import type { BytesData, InferResult, Tensor, TypedArray } from '../model/tensor.js';
import { CONTENTS_FIELD } from './decode.js';

export interface GrpcInferResponse {
  model_name: string;
  model_version: string;
  id: string;
  outputs: { name: string; datatype: string; shape: number[]; contents?: Record<string, unknown[]> }[];
  raw_output_contents: Buffer[];
}

function typedContents(tensor: Tensor): Record<string, unknown[]> {
  const field = CONTENTS_FIELD[tensor.datatype];
  if (tensor.datatype === 'BYTES') return { [field]: (tensor.data as BytesData).map((e) => Buffer.from(e.buffer, e.byteOffset, e.byteLength)) };
  if (tensor.datatype === 'BOOL') return { [field]: Array.from(tensor.data as Uint8Array, (x) => x !== 0) };
  // Decimal strings: protobufjs writes them as exact 64-bit integers, where a number would round past 2^53.
  if (tensor.datatype === 'INT64' || tensor.datatype === 'UINT64') return { [field]: Array.from(tensor.data as BigInt64Array, String) };
  return { [field]: Array.from(tensor.data as Float32Array) };
}

function rawContents(tensor: Tensor): Buffer {
  if (tensor.datatype === 'BYTES') {
    const bytes = bytesToBinary(tensor.data as BytesData);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  const data = tensor.data as TypedArray;
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** The ModelInferResponse: outputs in the order asked, raw when the request was raw, typed contents otherwise. */
export function encodeGrpcInfer(modelName: string, modelVersion: string, id: string | undefined, result: InferResult, outputs: readonly { name: string; binary: boolean }[], raw: boolean): GrpcInferResponse {
  const described = outputs.map(({ name }) => {
    const tensor = result[name] as Tensor;
    return { name, datatype: tensor.datatype, shape: tensor.shape, ...(raw ? {} : { contents: typedContents(tensor) }) };
  });
  return {
    model_name: modelName,
    model_version: modelVersion,
    id: id ?? '',
    outputs: described,
    raw_output_contents: raw ? outputs.map(({ name }) => rawContents(result[name] as Tensor)) : [],
  };
}
