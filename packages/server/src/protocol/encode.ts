import { fromBFloat16Bits, fromFloat16Bits } from '../model/half.js';
import type { BytesData, InferResult, Tensor } from '../model/tensor.js';
import { bytesToBinary, bytesToJson } from './bytes-data.js';
import { type RegionRef, writeRegionOutputs } from './shared-memory.js';

export interface EncodedResponse {
  body: string | Buffer;
  headers: Record<string, string>;
}

/**
 * 64-bit integers past 2^53 - 1 that a JS number would round: their JSON text
 * is written from the BigInt's own digits (JSON numbers have no size limit;
 * JSON.stringify just cannot write a BigInt), or undefined when every value
 * is exact as a number.
 */
function exactIntegerText(tensor: Tensor): string | undefined {
  if (tensor.datatype !== 'INT64' && tensor.datatype !== 'UINT64') return undefined;
  const values = tensor.data as BigInt64Array | BigUint64Array;
  for (let i = 0; i < values.length; i++) {
    const value = values[i] as bigint;
    if (value > MAX_SAFE || value < -MAX_SAFE) return `[${values.join(',')}]`;
  }
  return undefined;
}
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

function jsonData(tensor: Tensor): number[] | boolean[] | string[] {
  if (tensor.datatype === 'BYTES') return bytesToJson(tensor.data as BytesData);
  if (tensor.datatype === 'BOOL') return Array.from(tensor.data as Uint8Array, (x) => x !== 0);
  if (tensor.datatype === 'INT64' || tensor.datatype === 'UINT64')
    return Array.from(tensor.data as BigInt64Array, Number);
  // 16-bit patterns → the numbers they hold, exactly (Triton answers FP16/BF16 in binary only).
  if (tensor.datatype === 'FP16') return Array.from(tensor.data as Uint16Array, fromFloat16Bits);
  if (tensor.datatype === 'BF16') return Array.from(tensor.data as Uint16Array, fromBFloat16Bits);
  return Array.from(tensor.data as Float32Array);
}

/** One output's JSON: `data` spliced in as text when its integers must keep every digit. */
function describeJson(base: { name: string; datatype: string; shape: number[] }, tensor: Tensor): string {
  const exact = exactIntegerText(tensor);
  if (exact === undefined) return JSON.stringify({ ...base, data: jsonData(tensor) });
  return `${JSON.stringify(base).slice(0, -1)},"data":${exact}}`;
}

/**
 * `,"key":value` as JSON.stringify writes an object's member, or nothing where it leaves the member
 * out (an undefined value, a function).
 */
function member(key: string, value: unknown): string {
  const text = JSON.stringify(value);
  return text === undefined ? '' : `,"${key}":${text}`;
}

/** `{` and the members written so far, ready for one more: `{"a":1,` (or `{` when there are none). */
const opened = (members: string): string => (members === '' ? '{' : `{${members.slice(1)},`);

/**
 * Builds the KServe v2 response. Outputs asked for as binary are appended as
 * raw bytes after the JSON header, whose length goes in
 * Inference-Header-Content-Length, as Triton's clients expect.
 *
 * Every answer comes through here, so the header is written as text in one pass
 * (the same JSON, key for key, as JSON.stringify of the objects would give) and
 * a binary body is one buffer the header and tensors are written into.
 */
export function encodeInferResponse(
  modelName: string,
  modelVersion: string,
  id: string | undefined,
  result: InferResult,
  outputs: readonly { name: string; binary: boolean; region?: RegionRef | undefined }[],
): EncodedResponse {
  // Outputs asked into a shared-memory region are written there, and answered without data.
  const inRegions = writeRegionOutputs(outputs, result);
  // A model of the caller's own (kservePlugin) may leave a field undefined: left out, as JSON.stringify leaves it.
  const head = `${member('model_name', modelName)}${member('model_version', modelVersion)}${member('id', id)}`;
  let header = `${opened(head)}"outputs":[`;
  let chunks: Uint8Array[] | undefined;
  let binaryBytes = 0;
  for (let i = 0; i < outputs.length; i++) {
    const { name, binary } = outputs[i] as (typeof outputs)[number];
    const tensor = result[name] as Tensor;
    if (i > 0) header += ',';
    const region = inRegions.get(name);
    if (region !== undefined) {
      header += JSON.stringify({ name, datatype: tensor.datatype, shape: tensor.shape, parameters: region });
    } else if (!binary) {
      header += describeJson({ name, datatype: tensor.datatype, shape: tensor.shape }, tensor);
    } else {
      const data = tensor.data;
      const bytes = Array.isArray(data)
        ? bytesToBinary(data)
        : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      chunks ??= [];
      chunks.push(bytes);
      binaryBytes += bytes.byteLength;
      const fields = `${member('name', name)}${member('datatype', tensor.datatype)}${member('shape', tensor.shape)}`;
      header += `${opened(fields)}"parameters":{"binary_data_size":${bytes.byteLength}}}`;
    }
  }
  header += ']}';
  if (chunks === undefined) return { body: header, headers: { 'content-type': 'application/json' } };
  const headerBytes = Buffer.byteLength(header, 'utf8');
  const body = Buffer.allocUnsafe(headerBytes + binaryBytes);
  body.write(header, 0, 'utf8');
  let at = headerBytes;
  for (const bytes of chunks) {
    body.set(bytes, at);
    at += bytes.byteLength;
  }
  return {
    body,
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(headerBytes) },
  };
}
