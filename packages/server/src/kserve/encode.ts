import type { BytesData, InferResult, Tensor } from '../model/tensor.js';
import { bytesToBinary, bytesToJson } from './bytes-data.js';

export interface EncodedResponse {
  body: string | Buffer;
  headers: Record<string, string>;
}

function jsonData(tensor: Tensor): number[] | boolean[] | string[] {
  if (tensor.datatype === 'BYTES') return bytesToJson(tensor.data as BytesData);
  if (tensor.datatype === 'BOOL') return Array.from(tensor.data as Uint8Array, (x) => x !== 0);
  if (tensor.datatype === 'INT64' || tensor.datatype === 'UINT64') return Array.from(tensor.data as BigInt64Array, Number);
  return Array.from(tensor.data as Float32Array);
}

/**
 * Builds the KServe v2 response. Outputs asked for as binary are appended as
 * raw bytes after the JSON header, whose length goes in
 * Inference-Header-Content-Length, as Triton's clients expect.
 */
export function encodeInferResponse(
  modelName: string,
  modelVersion: string,
  id: string | undefined,
  result: InferResult,
  outputs: readonly { name: string; binary: boolean }[],
): EncodedResponse {
  const chunks: Uint8Array[] = [];
  const described = outputs.map(({ name, binary }) => {
    const tensor = result[name] as Tensor;
    const base = { name, datatype: tensor.datatype, shape: tensor.shape };
    if (!binary) return { ...base, data: jsonData(tensor) };
    const data = tensor.data;
    const bytes = Array.isArray(data) ? bytesToBinary(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    chunks.push(bytes);
    return { ...base, parameters: { binary_data_size: bytes.byteLength } };
  });
  const header = JSON.stringify({ model_name: modelName, model_version: modelVersion, ...(id === undefined ? {} : { id }), outputs: described });
  if (chunks.length === 0) return { body: header, headers: { 'content-type': 'application/json' } };
  const json = Buffer.from(header, 'utf8');
  return {
    body: Buffer.concat([json, ...chunks]),
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(json.length) },
  };
}
