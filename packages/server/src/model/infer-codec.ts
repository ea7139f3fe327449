/**
 * How a served model's batch crosses to its worker thread and back (the core's `codec` option):
 * the batch's rows stacked into one tensor per input, and its results into one tensor per output,
 * instead of a request object and a result object per call. Posting 30 requests of 256 floats one
 * object each cost the main thread about 110 µs more per batch than one stacked tensor, and the round
 * trip twice the time (a micro-benchmark; served figures in docs/benchmarks.md, "Session 9").
 *
 * A batch that cannot be stacked (BYTES, tensors that disagree, results that are not all numeric
 * tensors with a batch dimension) crosses as it is, with the moved buffers transferred as the core
 * would; the worker's `decodeInputs` and the main thread's `decodeOutputs` read either form.
 *
 * Two workers read the same form their own way: the ONNX worker's `packedHandler` runs the stacked
 * tensors as they are (`stackedOf`, `packStacked`: no object per request there), and the JS-model
 * worker gives each request's tensors a buffer of their own (`ownBuffersCodec`), as it had before:
 * user code may `models.infer` them on (moving them) or keep them past the batch.
 */
import { type BatchCodec, isMoved, move, type PackedBatch, transferListFor } from 'batched-fn';
import { COMPUTE_KEY } from './compute-timing.js';
import type { InferItem, InferResult, Tensor, TypedArray } from './tensor.js';
import { ARRAY_FOR, copiedArray, elementCount, ownsBuffer, withOwnInputBuffers } from './tensor.js';
import type { NumericDatatype } from './signature.js';

/** One tensor per name holding every call's rows, in call order; `rows[i]` of them are call i's. */
interface Stacked {
  rows: number[];
  tensors: Record<string, Tensor>;
  /** Per request: what else it carries (parameters, sequence, caller), or null. Results carry none but `stamp`. */
  extras: (Record<string, unknown> | null)[] | undefined;
  /** The worker's stamp (compute-timing.ts), once for a batch whose results all carry the same one. */
  stamp?: unknown;
}

type Packed = { stacked: Stacked } | { each: unknown[] };

const isTypedArray = (data: Tensor['data']): data is TypedArray => ArrayBuffer.isView(data);

/**
 * The parts (one per call, in order) as one tensor: a view when they already lie end to end in one
 * buffer their owners gave up (`owned`), else a copy into a fresh buffer; undefined when they
 * cannot be stacked (BYTES, datatypes or row shapes that differ, no batch dimension).
 */
function stack(
  parts: readonly (Tensor | undefined)[],
  owned: boolean,
): { tensor: Tensor; buffer: ArrayBuffer } | undefined {
  const first = parts[0];
  if (first === undefined || first.shape.length === 0 || !isTypedArray(first.data)) return undefined;
  const datatype = first.datatype;
  const tail = first.shape.slice(1);
  const rowSize = elementCount(tail);
  let rows = 0;
  let length = 0;
  let contiguous = first.data.buffer instanceof ArrayBuffer;
  let end = first.data.byteOffset;
  for (const part of parts) {
    if (part === undefined || part.datatype !== datatype || !isTypedArray(part.data)) return undefined;
    const shape = part.shape;
    if (shape.length !== tail.length + 1 || shape[0] === undefined) return undefined;
    for (let i = 0; i < tail.length; i++) if (shape[i + 1] !== tail[i]) return undefined;
    if (part.data.length !== shape[0] * rowSize) return undefined;
    contiguous &&= part.data.buffer === first.data.buffer && part.data.byteOffset === end;
    end = part.data.byteOffset + part.data.byteLength;
    rows += shape[0];
    length += part.data.length;
  }
  const shape = [rows, ...tail];
  if (owned && contiguous) {
    const data = first.data;
    // The datatype's own array (a Buffer's constructor, say, would not take these arguments quietly).
    const View = ARRAY_FOR[datatype as NumericDatatype] as unknown as new (
      buffer: ArrayBuffer,
      offset: number,
      length: number,
    ) => TypedArray;
    const view = new View(data.buffer as ArrayBuffer, data.byteOffset, length);
    return { tensor: { datatype, shape, data: view }, buffer: data.buffer as ArrayBuffer };
  }
  const data = new ARRAY_FOR[datatype as NumericDatatype](length);
  let offset = 0;
  for (const part of parts) {
    const values = (part as Tensor).data as Float32Array;
    (data as Float32Array).set(values, offset);
    offset += values.length;
  }
  return { tensor: { datatype, shape, data }, buffer: data.buffer as ArrayBuffer };
}

/** Stacks `names` of `records` (one per call, each with those names: sameNames), or undefined when one cannot be. */
function stackAll(
  records: readonly Record<string, Tensor>[],
  names: readonly string[],
  owned: boolean,
): { rows: number[]; tensors: Record<string, Tensor>; transfer: ArrayBuffer[] } | undefined {
  const tensors: Record<string, Tensor> = {};
  const transfer = new Set<ArrayBuffer>();
  let rows: number[] | undefined;
  for (const name of names) {
    const parts = records.map((record) => record[name]);
    const stacked = stack(parts, owned);
    if (stacked === undefined) return undefined;
    const counts = parts.map((part) => (part as Tensor).shape[0] as number);
    // Every name splits by the same row counts (a variable-length output per call goes as it is).
    if (rows !== undefined && counts.some((count, i) => count !== rows?.[i])) return undefined;
    rows ??= counts;
    tensors[name] = stacked.tensor;
    transfer.add(stacked.buffer);
  }
  return rows === undefined ? undefined : { rows, tensors, transfer: [...transfer] };
}

/** Each record has `names` and nothing more but, when `extra` is given, that key. */
function sameNames(records: readonly object[], names: readonly string[], extra?: string): boolean {
  for (const record of records) {
    let count = 0;
    for (const key in record) {
      if (key === extra) continue;
      if (!names.includes(key)) return false;
      count++;
    }
    if (count !== names.length) return false;
  }
  return true;
}

/** Splits the stacked tensors back, one record per call: views of the stacked buffers. */
function split(stacked: Stacked): Record<string, Tensor>[] {
  const records: Record<string, Tensor>[] = stacked.rows.map(() => ({}));
  for (const [name, tensor] of Object.entries(stacked.tensors)) {
    const tail = tensor.shape.slice(1);
    const rowSize = elementCount(tail);
    const data = tensor.data as TypedArray;
    let offset = 0;
    stacked.rows.forEach((rows, i) => {
      const length = rows * rowSize;
      (records[i] as Record<string, Tensor>)[name] = {
        datatype: tensor.datatype,
        shape: [rows, ...tail],
        data: data.subarray(offset, offset + length),
      };
      offset += length;
    });
  }
  return records;
}

/**
 * The batch as it is: each value cloned, the buffers of moved ones transferred (as without a codec),
 * or all of them when the array itself was moved (the ONNX worker moves its results so).
 */
const asItIs = (values: readonly unknown[]): PackedBatch => {
  const transfer = transferListFor(isMoved(values) ? [values] : values);
  return transfer === undefined ? { value: { each: values } } : { value: { each: values }, transfer };
};

/**
 * A request that crosses as it is, with its tensors in buffers of their own. A small request's tensor
 * is a view into Node's Buffer pool (protocol/tensor-data.ts): cloned as it is, the whole 8 KB pool
 * buffer would cross, other requests' bytes with it. The copies are the batch's own, so they move.
 */
function withOwnBuffers(item: InferItem): InferItem {
  if (isMoved(item)) return item;
  const own = withOwnInputBuffers(item);
  return own === item ? item : move(own);
}

function itemExtras(item: InferItem): Record<string, unknown> | null {
  const { rows: _rows, inputs: _inputs, ...extras } = item;
  for (const _ in extras) return extras;
  return null;
}

/** The stamp every result carries, when it is one object for all of them (a batch's), or undefined. */
function sharedStamp(results: readonly InferResult[]): { stamp: unknown } | undefined {
  const stamp = (results[0] as Record<string, unknown> | undefined)?.[COMPUTE_KEY];
  for (const result of results) if ((result as Record<string, unknown>)[COMPUTE_KEY] !== stamp) return undefined;
  return { stamp };
}

/** The packed form, checked: a thread reads only what the other half of this codec wrote. */
function packed(value: unknown, what: string): Packed {
  const candidate = value as { each?: unknown; stacked?: { rows?: unknown; tensors?: unknown } } | null;
  if (typeof candidate === 'object' && candidate !== null) {
    if (Array.isArray(candidate.each)) return candidate as Packed;
    const stacked = candidate.stacked;
    if (
      typeof stacked === 'object' &&
      stacked !== null &&
      Array.isArray(stacked.rows) &&
      typeof stacked.tensors === 'object'
    )
      return candidate as Packed;
  }
  throw new TypeError(
    `A packed batch's ${what} did not arrive as this codec packs them (do both threads use inferCodec?)`,
  );
}

/**
 * The served models' codec. The main thread packs requests and unpacks results; the worker
 * modules (onnx.worker.ts, js-model.worker.ts) export it as `codec` for the other half.
 */
export const inferCodec: BatchCodec<InferItem, InferResult> = {
  encodeInputs(items) {
    const first = items[0];
    const names = first === undefined ? [] : Object.keys(first.inputs);
    const inputs = items.map((item) => item.inputs);
    const stacked =
      names.length === 0 || !sameNames(inputs, names)
        ? undefined
        : stackAll(
            inputs,
            names,
            items.every((item) => isMoved(item)),
          );
    // A row count that is not the inputs' first dimension (a model without a batch dimension) goes as it is.
    if (stacked === undefined || items.some((item, i) => item.rows !== stacked.rows[i]))
      return asItIs(items.map(withOwnBuffers));
    const extras = items.map(itemExtras);
    const value: Packed = {
      stacked: {
        rows: stacked.rows,
        tensors: stacked.tensors,
        extras: extras.some((e) => e !== null) ? extras : undefined,
      },
    };
    return { value, transfer: stacked.transfer };
  },
  decodeInputs(value) {
    const batch = packed(value, 'inputs');
    if ('each' in batch) return batch.each as InferItem[];
    const { rows, extras } = batch.stacked;
    return split(batch.stacked).map((inputs, i) => ({ ...extras?.[i], rows: rows[i] as number, inputs }) as InferItem);
  },
  encodeOutputs(results) {
    // A batch's results carry one stamp (compute-timing.ts): it crosses once.
    const shared = sharedStamp(results);
    const first = results[0];
    const names = first === undefined ? [] : Object.keys(first).filter((key) => key !== COMPUTE_KEY);
    // The worker may move the array of results (its buffers are all the batch's own) rather than each.
    const owned = isMoved(results) || results.every((result) => isMoved(result));
    const stacked =
      shared === undefined || names.length === 0 || !sameNames(results, names, COMPUTE_KEY)
        ? undefined
        : stackAll(results, names, owned);
    if (stacked === undefined) return asItIs(results);
    const value: Packed = {
      stacked: {
        rows: stacked.rows,
        tensors: stacked.tensors,
        extras: undefined,
        ...(shared?.stamp === undefined ? {} : { stamp: shared.stamp }),
      },
    };
    return { value, transfer: stacked.transfer };
  },
  decodeOutputs(value) {
    const batch = packed(value, 'outputs');
    if ('each' in batch) return batch.each as InferResult[];
    const results = split(batch.stacked);
    const stamp = batch.stacked.stamp;
    if (stamp !== undefined) for (const result of results) (result as Record<string, unknown>)[COMPUTE_KEY] = stamp;
    return results;
  },
};

/** A packed batch's stacked form (rows per request, a tensor per name); undefined for one that crossed as it is. */
export function stackedOf(value: unknown): { rows: number[]; tensors: Record<string, Tensor> } | undefined {
  const batch = packed(value, 'inputs');
  return 'each' in batch ? undefined : batch.stacked;
}

/**
 * A batch's results, already stacked (one tensor per output, `rows` of it per request), packed as
 * `encodeOutputs` packs them, with the worker's stamp once. Their buffers are handed over: they are
 * the batch's own (a runtime's outputs).
 */
export function packStacked(rows: number[], tensors: Record<string, Tensor>, stamp: unknown): PackedBatch {
  const transfer = new Set<ArrayBuffer>();
  for (const tensor of Object.values(tensors))
    if (isTypedArray(tensor.data) && tensor.data.buffer instanceof ArrayBuffer) transfer.add(tensor.data.buffer);
  const value: Packed = { stacked: { rows, tensors, extras: undefined, stamp } };
  return { value, transfer: [...transfer] };
}

/** Each typed array that is a part of a larger buffer, copied into its own. */
function ownBuffer(tensor: Tensor): Tensor {
  const data = tensor.data;
  if (!isTypedArray(data) || ownsBuffer(data)) return tensor;
  return { ...tensor, data: copiedArray(data) };
}

/** inferCodec, with each request's inputs in buffers of their own once in the worker (for JS models: see above). */
export const ownBuffersCodec: BatchCodec<InferItem, InferResult> = {
  ...inferCodec,
  decodeInputs(value) {
    const items = inferCodec.decodeInputs(value);
    if (items.length < 2) return items;
    for (const item of items)
      for (const [name, tensor] of Object.entries(item.inputs)) item.inputs[name] = ownBuffer(tensor);
    return items;
  },
};
