import { bytesToBinary } from '../protocol/bytes-data.js';
import { type RegionRef, writeRegionOutputs } from '../protocol/shared-memory.js';
import type { BytesData, InferResult, Tensor, TypedArray } from '../model/tensor.js';
import {
  LENGTH_BOUND,
  outputBound,
  stringBound,
  type WireParameter,
  WireWriter,
  writeOutput,
} from './infer-response-wire.js';

/** A ModelInferResponse, as written to the wire (infer-response-wire.ts). */
export type GrpcInferResponse = Buffer;

const NO_BYTES = Buffer.alloc(0);

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
 *
 * Written to its wire bytes here, from the result itself: no object is made of the answer for a
 * serializer to read again.
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
  const raws: Buffer[] = [];
  // Most answers write to no region: then no parameters are made.
  const parameters =
    inRegions.size === 0 ? undefined : outputs.map(({ name }) => regionParameters(inRegions.get(name)));
  let bound = stringBound(modelName) + stringBound(modelVersion) + stringBound(id);
  for (let i = 0; i < outputs.length; i++) {
    const { name } = outputs[i] as (typeof outputs)[number];
    const tensor = result[name] as Tensor;
    const raw = inRegions.has(name) ? NO_BYTES : rawContents(tensor);
    raws.push(raw);
    bound += outputBound(name, tensor.datatype, tensor.shape, parameters?.[i]) + 1 + LENGTH_BOUND + raw.length;
  }
  const writer = new WireWriter(bound);
  writer.string(1, modelName);
  writer.string(2, modelVersion);
  writer.string(3, id);
  for (let i = 0; i < outputs.length; i++) {
    const { name } = outputs[i] as (typeof outputs)[number];
    const tensor = result[name] as Tensor;
    writeOutput(writer, name, tensor.datatype, tensor.shape, parameters?.[i]);
  }
  for (const raw of raws) writer.bytes(6, raw);
  return writer.done();
}

/** Where an output written to a region went, as its InferParameters. */
function regionParameters(
  region: Record<string, string | number> | undefined,
): Record<string, WireParameter> | undefined {
  if (region === undefined) return undefined;
  return Object.fromEntries(
    Object.entries(region).map(([key, value]) => [
      key,
      typeof value === 'string' ? { string_param: value } : { int64_param: value },
    ]),
  );
}
