import { expect, test } from 'vitest';
import { ownsBuffer, ownsInputBuffers, type Tensor } from '../src/model/tensor.js';
import { bytesFromBinary } from '../src/protocol/bytes-data.js';
import { tensorFromBinary, tensorFromJson } from '../src/protocol/tensor-data.js';

// A request's small tensors are views into Node's Buffer pool (no buffer of their own to allocate
// and zero per request); from 4 KB up each gets its own buffer, which a batch of one may hand over.
const values = (n: number): number[] => Array.from({ length: n }, (_, i) => i - n / 2);

test('small tensors, from JSON or raw bytes, are views that do not own their buffer; their values are exact', () => {
  const json = tensorFromJson('FP32', values(256), 'x') as Float32Array;
  expect(Array.from(json)).toEqual(values(256));
  expect(ownsBuffer(json)).toBe(false);
  const raw = Buffer.alloc(1 + 256 * 4).subarray(1); // an odd offset, as in a real body
  for (const [i, v] of values(256).entries()) raw.writeFloatLE(v, i * 4);
  const binary = tensorFromBinary('FP32', raw) as Float32Array;
  expect(Array.from(binary)).toEqual(values(256));
  expect(ownsBuffer(binary)).toBe(false);
  // 64-bit elements stay aligned in the pool.
  const big = tensorFromJson('INT64', [1, -2, 3], 'n') as BigInt64Array;
  expect(big.byteOffset % 8).toBe(0);
  expect(Array.from(big)).toEqual([1n, -2n, 3n]);
});

test('tensors of 4 KB and more own their buffer, and so does the item they are in', () => {
  const small = tensorFromJson('FP32', values(1023), 'x') as Float32Array;
  const large = tensorFromJson('FP32', values(1024), 'x') as Float32Array;
  expect(ownsBuffer(large)).toBe(true);
  expect(Array.from(large)).toEqual(values(1024));
  const tensor = (data: Tensor['data']): Tensor => ({ datatype: 'FP32', shape: [1, data.length], data });
  expect(ownsInputBuffers({ rows: 1, inputs: { a: tensor(large) } })).toBe(true);
  expect(ownsInputBuffers({ rows: 1, inputs: { a: tensor(large), b: tensor(small) } })).toBe(false);
  // BYTES elements are packed into a buffer holding them alone (no length prefixes): they own it.
  const text = bytesFromBinary(Buffer.from([2, 0, 0, 0, 104, 105]), 1, 't');
  expect(
    ownsInputBuffers({ rows: 1, inputs: { a: tensor(large), t: { datatype: 'BYTES', shape: [1], data: text } } }),
  ).toBe(true);
});
