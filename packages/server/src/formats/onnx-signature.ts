import { readFields, WIRE_BYTES, WIRE_VARINT } from '../builtin/protobuf.js';
import type { ModelSignature, NumericDatatype, TensorSpec } from '../model/signature.js';

/**
 * onnx.proto TensorProto.DataType → KServe datatype. STRING, complex and 8-bit float types are not
 * served. BFLOAT16 is read (so a model that has it is refused with that reason, onnx-model.ts).
 */
const ONNX_TO_KSERVE: Record<number, NumericDatatype> = {
  1: 'FP32',
  2: 'UINT8',
  3: 'INT8',
  4: 'UINT16',
  5: 'INT16',
  6: 'INT32',
  7: 'INT64',
  9: 'BOOL',
  10: 'FP16',
  11: 'FP64',
  12: 'UINT32',
  13: 'UINT64',
  16: 'BF16',
};

const text = new TextDecoder();

function readShape(bytes: Uint8Array): number[] {
  const shape: number[] = [];
  for (const dim of readFields(bytes)) {
    if (dim.field !== 1 || dim.wire !== WIRE_BYTES) continue;
    let size = -1;
    for (const part of readFields(dim.bytes))
      if (part.field === 1 && part.wire === WIRE_VARINT) size = Number(part.value);
    shape.push(size > 0 ? size : -1);
  }
  return shape;
}

function readValueInfo(bytes: Uint8Array): TensorSpec {
  let name = '';
  let elemType = 0;
  let shape: number[] = [];
  for (const field of readFields(bytes)) {
    if (field.field === 1 && field.wire === WIRE_BYTES) name = text.decode(field.bytes);
    if (field.field !== 2 || field.wire !== WIRE_BYTES) continue;
    for (const type of readFields(field.bytes)) {
      if (type.field !== 1 || type.wire !== WIRE_BYTES) continue;
      for (const tensor of readFields(type.bytes)) {
        if (tensor.field === 1 && tensor.wire === WIRE_VARINT) elemType = Number(tensor.value);
        if (tensor.field === 2 && tensor.wire === WIRE_BYTES) shape = readShape(tensor.bytes);
      }
    }
  }
  const datatype = ONNX_TO_KSERVE[elemType];
  if (datatype === undefined)
    throw new Error(`Tensor \`${name}\` has ONNX element type ${elemType}, which this server does not support`);
  return { name, datatype, shape };
}

/**
 * Reads a model's graph inputs and outputs straight from the ONNX file, so the
 * HTTP side can validate requests without loading a session (the sessions live
 * in the worker threads). Initializers listed as inputs, as older exporters do,
 * are not real inputs and are left out.
 */
export function readOnnxSignature(model: Uint8Array): ModelSignature {
  let graph: Uint8Array | undefined;
  for (const field of readFields(model)) if (field.field === 7 && field.wire === WIRE_BYTES) graph = field.bytes;
  if (graph === undefined) throw new Error('Not an ONNX model: no graph found');
  const initializers = new Set<string>();
  const inputs: Uint8Array[] = [];
  const outputs: Uint8Array[] = [];
  for (const field of readFields(graph)) {
    if (field.wire !== WIRE_BYTES) continue;
    if (field.field === 11) inputs.push(field.bytes);
    else if (field.field === 12) outputs.push(field.bytes);
    else if (field.field === 5) {
      for (const part of readFields(field.bytes))
        if (part.field === 8 && part.wire === WIRE_BYTES) initializers.add(text.decode(part.bytes));
    }
  }
  return {
    inputs: inputs.map(readValueInfo).filter((spec) => !initializers.has(spec.name)),
    outputs: outputs.map(readValueInfo),
  };
}
