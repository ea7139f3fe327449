import fc from 'fast-check';
import { expect, test } from 'vitest';
import type { InferResult, Tensor } from '../src/model/tensor.js';
import { encodeInferResponse } from '../src/protocol/encode.js';

// encodeInferResponse writes its JSON header as text, not through JSON.stringify of objects. The
// reference here is that plain form: the same text, key for key, must come out for any names, ids,
// shapes and mix of binary and JSON outputs, and a binary body must be the header, then each binary
// output's bytes in the order asked.

const name = fc.string({ unit: 'binary', maxLength: 12 });
const shape = fc.array(fc.integer({ min: 0, max: 5 }), { minLength: 1, maxLength: 3 });
const output = fc.record({
  name,
  binary: fc.boolean(),
  shape,
  kind: fc.constantFrom('FP32', 'INT32', 'BYTES', 'BOOL'),
  seed: fc.integer({ min: 0, max: 1000 }),
  // A model of the caller's own may leave `shape` (or, here for FP32, `datatype`) undefined.
  leftOut: fc.constantFrom(undefined, 'shape', 'datatype'),
});

function tensorOf(kind: string, dims: number[], seed: number, leftOut?: 'shape' | 'datatype'): Tensor {
  const tensor = fullTensorOf(kind, dims, seed);
  if (leftOut === 'shape') return { ...tensor, shape: undefined as unknown as number[] };
  if (leftOut === 'datatype' && kind === 'FP32') return { ...tensor, datatype: undefined as unknown as 'FP32' };
  return tensor;
}

function fullTensorOf(kind: string, dims: number[], seed: number): Tensor {
  const count = dims.reduce((a, b) => a * b, 1);
  const values = Array.from({ length: count }, (_, i) => seed + i);
  if (kind === 'FP32') return { datatype: 'FP32', shape: dims, data: Float32Array.from(values, (v) => v / 8) };
  if (kind === 'INT32') return { datatype: 'INT32', shape: dims, data: Int32Array.from(values, (v) => v - 500) };
  if (kind === 'BOOL') return { datatype: 'BOOL', shape: dims, data: Uint8Array.from(values, (v) => v % 2) };
  return { datatype: 'BYTES', shape: dims, data: values.map((v) => new TextEncoder().encode(`é${v}"`)) };
}

/** What the header was before: JSON.stringify of the response's objects. */
function referenceHeader(
  model: string,
  version: string | undefined,
  id: string | undefined,
  outputs: { name: string; binary: boolean; tensor: Tensor }[],
): string {
  const jsonData = (t: Tensor): unknown =>
    t.datatype === 'BYTES'
      ? (t.data as Uint8Array[]).map((b) => new TextDecoder().decode(b))
      : t.datatype === 'BOOL'
        ? Array.from(t.data as Uint8Array, (x) => x !== 0)
        : Array.from(t.data as Float32Array);
  return JSON.stringify({
    model_name: model,
    model_version: version,
    ...(id === undefined ? {} : { id }),
    outputs: outputs.map(({ name, binary, tensor }) => {
      const base = { name, datatype: tensor.datatype, shape: tensor.shape };
      if (!binary) return { ...base, data: jsonData(tensor) };
      return { ...base, parameters: { binary_data_size: binaryOf(tensor).byteLength } };
    }),
  });
}

function binaryOf(tensor: Tensor): Uint8Array {
  if (tensor.datatype !== 'BYTES') {
    const data = tensor.data as Float32Array;
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  // BYTES in binary: each element as a 4-byte little-endian length, then its bytes.
  const parts = (tensor.data as Uint8Array[]).flatMap((b) => {
    const length = Buffer.alloc(4);
    length.writeUInt32LE(b.length);
    return [length, Buffer.from(b)];
  });
  return Buffer.concat(parts);
}

test('the header is the JSON the objects would give, and the binary outputs follow it in order', () => {
  fc.assert(
    fc.property(
      name,
      fc.option(name, { nil: undefined }),
      fc.option(name, { nil: undefined }),
      fc.uniqueArray(output, { selector: (o) => o.name, minLength: 1, maxLength: 4 }),
      (model, version, id, drawn) => {
        const outputs = drawn.map((o) => ({
          name: o.name,
          binary: o.binary,
          tensor: tensorOf(o.kind, o.shape, o.seed, o.leftOut),
        }));
        const result: InferResult = Object.fromEntries(outputs.map((o) => [o.name, o.tensor]));
        const answer = encodeInferResponse(
          model,
          version as string,
          id,
          result,
          outputs.map(({ name, binary }) => ({ name, binary })),
        );
        const header = referenceHeader(model, version, id, outputs);
        const binaries = outputs.filter((o) => o.binary).map((o) => binaryOf(o.tensor));
        if (binaries.length === 0) {
          expect(answer.headers).toEqual({ 'content-type': 'application/json' });
          expect(answer.body).toBe(header);
          return;
        }
        const headerBytes = Buffer.from(header, 'utf8');
        expect(answer.headers).toEqual({
          'content-type': 'application/octet-stream',
          'inference-header-content-length': String(headerBytes.length),
        });
        expect(Buffer.isBuffer(answer.body)).toBe(true);
        expect(Buffer.compare(answer.body as Buffer, Buffer.concat([headerBytes, ...binaries]))).toBe(0);
      },
    ),
    { numRuns: 300 },
  );
});
