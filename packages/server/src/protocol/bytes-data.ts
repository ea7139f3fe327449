import { type BytesData, packedBytes } from '../model/tensor.js';
import { invalidArgument } from './errors.js';

/**
 * The BYTES datatype. In JSON each element is a string; with the binary
 * extension, Triton's encoding: each element is a 4-byte little-endian length
 * followed by that many bytes. Inside the server an element is a Uint8Array
 * (lossless for any bytes); text is UTF-8.
 */
const decoder = new TextDecoder();

export function bytesFromJson(values: readonly unknown[], name: string): BytesData {
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    if (typeof value !== 'string')
      throw invalidArgument(
        `Input \`${name}\` is BYTES: element ${i} must be a string, got ${JSON.stringify(value)?.slice(0, 40)}`,
      );
  }
  return packedBytes(values as readonly string[]);
}

/** Reads exactly `count` length-prefixed elements that fill `bytes`; every length is checked before it is used. */
export function bytesFromBinary(bytes: Uint8Array, count: number, name: string): BytesData {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // The elements are found as views of the body, then packed into one buffer holding them alone
  // (packedBytes): not the body's pooled block, which holds other requests, nor the length prefixes,
  // so the tensor owns its buffer (`ownsBuffer`) and may be handed to a thread as it is.
  const out: Uint8Array[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    if (out.length === count) break;
    if (offset + 4 > bytes.length)
      throw invalidArgument(`Input \`${name}\`: BYTES element ${out.length} has a truncated length prefix`);
    const length = view.getUint32(offset, true);
    offset += 4;
    if (length > bytes.length - offset)
      throw invalidArgument(
        `Input \`${name}\`: BYTES element ${out.length} says ${length} bytes, but only ${bytes.length - offset} remain`,
      );
    out.push(bytes.subarray(offset, offset + length));
    offset += length;
  }
  if (out.length !== count || offset !== bytes.length) {
    throw invalidArgument(
      `Input \`${name}\` has ${out.length} BYTES elements in ${offset} of ${bytes.length} bytes, but its shape needs ${count}`,
    );
  }
  return packedBytes(out);
}

export const bytesToJson = (data: BytesData): string[] => data.map((element) => decoder.decode(element));

export function bytesToBinary(data: BytesData): Uint8Array {
  const total = data.reduce((sum, element) => sum + 4 + element.length, 0);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  let offset = 0;
  for (const element of data) {
    view.setUint32(offset, element.length, true);
    out.set(element, offset + 4);
    offset += 4 + element.length;
  }
  return out;
}
