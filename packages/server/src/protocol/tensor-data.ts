import type { NumericDatatype as Datatype } from '../model/signature.js';
import { HALF_OVERFLOW, toBFloat16Bits, toFloat16Bits } from '../model/half.js';
import { ARRAY_FOR, type TypedArray } from '../model/tensor.js';
import { invalidArgument } from './errors.js';

/**
 * Turning a client's tensor data into a typed array. Every check that can
 * fail runs before the allocation: the element count is compared with what
 * the body really holds, so a lying shape (`[100000000, 256]` with 256
 * values) is a 400, never a 17 GB allocation or a 500.
 */

const FP32_MAX = 3.4028234663852886e38;
const INT64_LIMIT = 2 ** 63;
const UINT64_LIMIT = 2 ** 64;

/** Inclusive integer ranges of the types a JS number holds exactly. */
const INT_RANGE: Partial<Record<Datatype, readonly [number, number]>> = {
  INT8: [-128, 127],
  INT16: [-32768, 32767],
  INT32: [-2147483648, 2147483647],
  UINT8: [0, 255],
  UINT16: [0, 65535],
  UINT32: [0, 4294967295],
};

const show = (value: unknown): string => {
  // JSON.stringify writes NaN and the infinities as `null`, which is not what arrived.
  const text =
    typeof value === 'number' && !Number.isFinite(value) ? String(value) : (JSON.stringify(value) ?? String(value));
  return text.length > 40 ? `${text.slice(0, 40)}...` : text;
};

/**
 * Triton's bound on `data` nesting (HTTP_MAX_JSON_NESTING_DEPTH in its http_server.cc): `data` itself
 * is depth 0, and a value (array or element) at depth 100 or deeper is refused, in Triton's words.
 */
export const MAX_DATA_DEPTH = 100;

/**
 * Leaf values of `data`, row-major, without recursion. As Triton reads it, any nesting is
 * flattened: nested as the shape, deeper, ragged, or mixed with values; only the element count
 * must equal the shape's. The walk keeps a stack of arrays (never the call stack), refuses a
 * value at depth MAX_DATA_DEPTH (so a body nested 100,000 levels costs 100 steps, not a stack
 * overflow), and stops at the first element past `count`, so it never holds more than the shape
 * needs. Flat data, the common case, is returned as it is, with nothing allocated.
 */
function leaves(data: unknown, count: number, name: string): readonly unknown[] {
  if (!Array.isArray(data)) throw invalidArgument(`Input \`${name}\`: \`data\` must be an array, got ${show(data)}`);
  let flat = true;
  for (let i = 0; i < data.length && flat; i++) flat = !Array.isArray(data[i]);
  if (flat) return data;
  const out: unknown[] = [];
  // The arrays being walked and the position reached in each; arrays[d] is at depth d.
  const arrays: unknown[][] = [data];
  const positions: number[] = [0];
  while (arrays.length > 0) {
    const depth = arrays.length - 1;
    const array = arrays[depth] as unknown[];
    const position = positions[depth] as number;
    if (position === array.length) {
      arrays.pop();
      positions.pop();
      continue;
    }
    positions[depth] = position + 1;
    if (depth + 1 >= MAX_DATA_DEPTH)
      throw invalidArgument(
        `Input \`${name}\`: \`data\` is nested too deeply: JSON nesting depth exceeds maximum allowed limit (${MAX_DATA_DEPTH})`,
      );
    const value = array[position];
    if (Array.isArray(value)) {
      arrays.push(value);
      positions.push(0);
    } else {
      if (out.length === count)
        throw invalidArgument(`Input \`${name}\` has more than ${count} elements, but its shape needs ${count}`);
      out.push(value);
    }
  }
  return out;
}

/** Checks one JSON value against the datatype; returns the number to store. */
function element(datatype: Datatype, value: unknown, index: number, name: string): number {
  let number: number;
  if (typeof value === 'number') number = value;
  else if (typeof value === 'boolean' && datatype === 'BOOL') return value ? 1 : 0;
  else throw invalidArgument(`Input \`${name}\`: element ${index} is ${show(value)}, not a number`);
  if (datatype === 'FP32' || datatype === 'FP64') {
    // JSON.parse turns 1e400 into Infinity, and a float32 overflows past FP32_MAX: neither is what the client sent.
    if (!Number.isFinite(number) || (datatype === 'FP32' && Math.abs(number) > FP32_MAX)) {
      throw invalidArgument(`Input \`${name}\`: element ${index} (${show(value)}) overflows ${datatype}`);
    }
    return number;
  }
  if (datatype === 'FP16' || datatype === 'BF16') {
    // Past the rounding threshold a number would become infinity, which is not what the client sent.
    if (!(Math.abs(number) < HALF_OVERFLOW[datatype]))
      throw invalidArgument(`Input \`${name}\`: element ${index} (${show(value)}) overflows ${datatype}`);
    return number;
  }
  if (!Number.isInteger(number))
    throw invalidArgument(`Input \`${name}\` is ${datatype}: element ${index} (${number}) is not an integer`);
  const range = datatype === 'BOOL' ? ([0, 1] as const) : INT_RANGE[datatype];
  const fits =
    range !== undefined
      ? number >= range[0] && number <= range[1]
      : datatype === 'INT64'
        ? number >= -INT64_LIMIT && number < INT64_LIMIT
        : number >= 0 && number < UINT64_LIMIT;
  if (!fits)
    throw invalidArgument(`Input \`${name}\` is ${datatype}: element ${index} (${number}) is out of its range`);
  // A JSON number is a double: past 2^53 - 1 it is no longer the integer the client wrote (2^53 + 1 reads as 2^53),
  // so the model would run on a rounded value. Such values travel exactly in the binary extension or gRPC raw.
  if (!Number.isSafeInteger(number)) {
    throw invalidArgument(
      `Input \`${name}\` is ${datatype}: element ${index} (${show(value)}) is beyond 2^53 - 1, which a JSON number cannot carry exactly; send it as binary data`,
    );
  }
  return number;
}

/** JSON `data` (flat, or nested in any way, as Triton reads it), checked to hold exactly `count` elements; nothing is allocated for flat data. */
export function jsonElements(data: unknown, count: number, name: string): readonly unknown[] {
  const values = leaves(data, count, name);
  if (values.length !== count)
    throw invalidArgument(`Input \`${name}\` has ${values.length} elements, but its shape needs ${count}`);
  return values;
}

/**
 * Checked elements → a typed array. Floating-point tensors carry every IEEE 754 value, NaN and infinities
 * included, wherever the encoding can express them (`typed` contents, raw bytes); from JSON, which cannot,
 * a non-finite number is an overflow (1e400) and a 400, as is a finite value past FP32's range.
 */
export function tensorFromJson(
  datatype: Datatype,
  values: readonly unknown[],
  name: string,
  typed = false,
): TypedArray {
  const count = values.length;
  const out = decodedArray(datatype, count);
  if (datatype === 'INT64' || datatype === 'UINT64') {
    const big = out as BigInt64Array;
    // Typed 64-bit contents arrive as the decimal strings of values the wire already bounds: exact as BigInts.
    if (typed) for (let i = 0; i < count; i++) big[i] = BigInt(values[i] as string);
    else for (let i = 0; i < count; i++) big[i] = BigInt(element(datatype, values[i], i, name));
  } else if (datatype === 'FP32' || datatype === 'FP64') {
    // The hot path (a float model over JSON): the common case checked inline, in one pass.
    const floats = out as Float32Array;
    const limit = datatype === 'FP32' ? FP32_MAX : Number.MAX_VALUE;
    for (let i = 0; i < count; i++) {
      const value = values[i];
      if (typeof value === 'number' && ((value <= limit && value >= -limit) || (typed && !Number.isFinite(value))))
        floats[i] = value;
      else floats[i] = element(datatype, value, i, name);
    }
  } else if (datatype === 'FP16' || datatype === 'BF16') {
    // Numbers → 16-bit patterns, each rounded once, to nearest (model/half.ts). Triton refuses
    // FP16/BF16 in JSON altogether; here a JSON client can send and read them as numbers.
    const bits = out as Uint16Array;
    const encode = datatype === 'FP16' ? toFloat16Bits : toBFloat16Bits;
    const limit = HALF_OVERFLOW[datatype];
    for (let i = 0; i < count; i++) {
      const value = values[i];
      bits[i] = encode(
        typeof value === 'number' && value < limit && value > -limit ? value : element(datatype, value, i, name),
      );
    }
  } else {
    const ints = out as Int32Array;
    for (let i = 0; i < count; i++) ints[i] = element(datatype, values[i], i, name);
  }
  return out;
}

/** Raw bytes (the binary extension), checked to hold exactly `count` elements. */
export function checkBinarySize(datatype: Datatype, bytes: Uint8Array, count: number, name: string): void {
  const needed = count * ARRAY_FOR[datatype].BYTES_PER_ELEMENT;
  if (bytes.length !== needed) {
    throw invalidArgument(
      `Input \`${name}\` has ${bytes.length} bytes of binary data, but ${count} ${datatype} elements need ${needed}`,
    );
  }
}

/** Checked raw little-endian bytes → a typed array. */
export function tensorFromBinary(datatype: Datatype, bytes: Uint8Array): TypedArray {
  const out = decodedArray(datatype, bytes.length / ARRAY_FOR[datatype].BYTES_PER_ELEMENT);
  // Copy rather than view: the body's offset need not be aligned for this element size.
  new Uint8Array(out.buffer, out.byteOffset, out.byteLength).set(bytes);
  return out;
}

/**
 * Tensors below this many bytes are decoded into Node's shared Buffer pool. Fixed here, not read from
 * Buffer.poolSize (8 KB on Node 20 and 22, 64 KB on Node 24): a batch of one larger tensor keeps a buffer
 * of its own, which crosses to the model's thread without a copy. (Past half the pool's size,
 * `Buffer.allocUnsafe` gives a buffer of its own anyway.)
 */
const POOLED_BELOW_BYTES = 4096;

/**
 * The array a request's tensor is decoded into, which the caller fills to the last element. A small
 * one (under POOLED_BELOW_BYTES) is a view into Node's shared Buffer pool, not a buffer of its own:
 * allocating and zeroing a buffer for each request cost the main thread about 0.8 µs for 1 KB, several
 * times the pool's price. Such a view does not own its buffer (`ownsBuffer`), so nothing transfers it:
 * served-batcher.ts moves only requests whose tensors own theirs, and the codec copies the rest, as it
 * did before. Larger tensors get a buffer each, which a batch of one hands to its thread without a copy.
 */
function decodedArray(datatype: Datatype, length: number): TypedArray {
  const Elements = ARRAY_FOR[datatype];
  const bytes = length * Elements.BYTES_PER_ELEMENT;
  if (bytes >= POOLED_BELOW_BYTES) return new Elements(length);
  // The pool hands out offsets aligned to 8 bytes, which every element size here divides.
  const pooled = Buffer.allocUnsafe(bytes);
  return new (Elements as unknown as new (buffer: ArrayBufferLike, offset: number, length: number) => TypedArray)(
    pooled.buffer,
    pooled.byteOffset,
    length,
  );
}
