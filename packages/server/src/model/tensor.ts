import type { Datatype, NumericDatatype } from './signature.js';

export type TypedArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Int16Array
  | Int32Array
  | BigInt64Array
  | Uint8Array
  | Uint16Array
  | Uint32Array
  | BigUint64Array;

/**
 * A BYTES tensor's elements: each a byte string (UTF-8 text, or any bytes).
 * The server keeps a tensor's elements as views of one buffer (packedBytes),
 * so handing it to a worker thread transfers one buffer, not one per string.
 */
export type BytesData = Uint8Array[];

/**
 * Elements (strings as UTF-8, or byte strings) as views of one fresh buffer of their own, never of a
 * buffer that holds anything else (a view of a pooled request body would hand a model other clients'
 * bytes through `element.buffer`). A tensor of 150,000 strings was 150,000 buffers, and posting them to
 * a thread cost seconds (Node checks a transfer list pairwise). Two passes, with no buffer per string:
 * encoding 1.68 M short strings one buffer each took 2.3 s and ~1 GB.
 */
export function packedBytes(elements: ArrayLike<string | Uint8Array>): BytesData {
  const count = elements.length;
  let total = 0;
  for (let i = 0; i < count; i++) {
    const element = elements[i] as string | Uint8Array;
    total += typeof element === 'string' ? Buffer.byteLength(element, 'utf8') : element.length;
  }
  // Buffer.alloc never takes from Node's shared pool: this buffer holds these elements only.
  const buffer = Buffer.alloc(total);
  const out: BytesData = new Array(count);
  let offset = 0;
  for (let i = 0; i < count; i++) {
    const element = elements[i] as string | Uint8Array;
    let length: number;
    if (typeof element === 'string') length = buffer.write(element, offset, 'utf8');
    else {
      buffer.set(element, offset);
      length = element.length;
    }
    out[i] = new Uint8Array(buffer.buffer, offset, length);
    offset += length;
  }
  return out;
}

/** One named tensor on its way to or from the model, row-major. */
export interface Tensor {
  datatype: Datatype;
  shape: number[];
  /** A typed array for numeric datatypes; one Uint8Array per element for BYTES. */
  data: TypedArray | BytesData;
}

/** What one HTTP request contributes to a batch: its tensors, all with the same number of rows. */
export interface InferItem {
  rows: number;
  inputs: Record<string, Tensor>;
  /** The request's `parameters` (a JSON object), for models written in JS; absent when it sent none. */
  parameters?: Record<string, unknown>;
  /** A stateful model's request: its sequence, as the sequence table admitted it (formats/sequence-table.ts). */
  sequence?: SequenceMark;
  /** A call from another model (model/model-calls.ts): on whose behalf, and until when. */
  caller?: CallerMark;
}

/** The typed arrays' own `slice`, whatever subclass a view is. */
const typedArraySlice = (Object.getPrototypeOf(Uint8Array.prototype) as { slice(this: TypedArray): TypedArray }).slice;

/**
 * A copy of `data` in a buffer of its own. Not `data.slice()`: on a Node Buffer (a Uint8Array that user
 * code may answer or pass) that is a view of the same memory, often Node's shared pool.
 */
export function copiedArray<T extends TypedArray>(data: T): T {
  return typedArraySlice.call(data) as T;
}

/**
 * Whether `data` is all its buffer holds: handing it to another thread, which may transfer the
 * buffer, takes nothing else. A request's small tensors are views into Node's shared Buffer pool
 * (protocol/tensor-data.ts) and do not; neither does a row range of a batch's result.
 */
export function ownsBuffer(data: Tensor['data']): boolean {
  if (!Array.isArray(data)) {
    const array = data as TypedArray;
    return array.byteOffset === 0 && array.byteLength === array.buffer.byteLength;
  }
  const first = data[0];
  if (first === undefined) return true;
  let total = 0;
  for (const element of data) {
    if (element.buffer !== first.buffer) return false;
    total += element.byteLength;
  }
  return total === first.buffer.byteLength;
}

/**
 * Whether `move(item)` gives up nothing shared: each input fills its whole buffer (a small request's
 * numeric tensors are views into Node's Buffer pool, and do not; the decoders pack BYTES elements
 * into a buffer of their own).
 */
export function ownsInputBuffers(item: InferItem): boolean {
  const inputs = item.inputs;
  for (const name in inputs) if (!ownsBuffer((inputs[name] as Tensor).data)) return false;
  return true;
}

/** `item`, or when some input is a view of a shared buffer, a copy of it whose inputs have buffers of their own. */
export function withOwnInputBuffers(item: InferItem): InferItem {
  if (ownsInputBuffers(item)) return item;
  const inputs: Record<string, Tensor> = {};
  for (const [name, tensor] of Object.entries(item.inputs)) {
    const data = tensor.data;
    if (ownsBuffer(data)) inputs[name] = tensor;
    else inputs[name] = { ...tensor, data: Array.isArray(data) ? packedBytes(data) : copiedArray(data as TypedArray) };
  }
  return { ...item, inputs };
}

/**
 * What a model-to-model call carries to the model it calls, so that model's own calls (an ensemble's
 * steps, a JS model's `models.infer` in its worker) inherit it: plain data, it crosses to threads.
 */
export interface CallerMark {
  /** The models the call is made on behalf of, outermost first (a call back to one of them is a cycle). */
  chain: string[];
  /** When the outermost request gives up, in ms since the Unix epoch (clocks of threads agree on it). */
  deadline?: number;
  /** The caller's span context (`{ traceId, spanId, traceFlags }`), for the target's batch to link to. */
  trace?: { traceId: string; spanId: string; traceFlags: number };
  /**
   * The requests the calls are made for, as numbered by the model that received them (its
   * RequestSignals): once every one of them is given up, so are the calls made for them.
   */
  origins?: number[];
}

/**
 * A request's place in its sequence, for the worker thread that keeps the sequence's state:
 * `incarnation` tells a restarted sequence from the one before it; `drop` lists states of
 * sequences of this worker that ended without telling it (idle, refused end), freed first.
 */
export interface SequenceMark {
  id: string;
  start: boolean;
  end: boolean;
  incarnation: number;
  /** The worker thread holding the state (the batcher's `affinity`). */
  worker: number;
  drop?: [id: string, incarnation: number][];
}

export type InferResult = Record<string, Tensor>;

type TypedArrayConstructor = { new (length: number): TypedArray; BYTES_PER_ELEMENT: number };

export const ARRAY_FOR: Record<NumericDatatype, TypedArrayConstructor> = {
  // Bit patterns (model/half.ts): Node 20 has no Float16Array, and bfloat16 has no array anywhere.
  FP16: Uint16Array,
  BF16: Uint16Array,
  FP32: Float32Array,
  FP64: Float64Array,
  INT8: Int8Array,
  INT16: Int16Array,
  INT32: Int32Array,
  INT64: BigInt64Array,
  UINT8: Uint8Array,
  UINT16: Uint16Array,
  UINT32: Uint32Array,
  UINT64: BigUint64Array,
  BOOL: Uint8Array,
};

/** onnxruntime's tensor type names ('bfloat16' is its name, though onnxruntime-node 1.30 cannot pass one in or out). */
export const ORT_TYPE: Record<NumericDatatype, string> = {
  FP16: 'float16',
  BF16: 'bfloat16',
  FP32: 'float32',
  FP64: 'float64',
  INT8: 'int8',
  INT16: 'int16',
  INT32: 'int32',
  INT64: 'int64',
  UINT8: 'uint8',
  UINT16: 'uint16',
  UINT32: 'uint32',
  UINT64: 'uint64',
  BOOL: 'bool',
};

export const DATATYPE_FOR_ORT: Record<string, NumericDatatype> = Object.fromEntries(
  Object.entries(ORT_TYPE).map(([k, v]) => [v, k as NumericDatatype]),
) as Record<string, NumericDatatype>;

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Stacks the same-named tensor of every item along the first dimension. */
export function concatRows(items: readonly InferItem[], name: string): Tensor {
  const first = items[0]?.inputs[name] as Tensor;
  const rowShape = first.shape.slice(1);
  const totalRows = items.reduce((sum, item) => sum + item.rows, 0);
  if (first.datatype === 'BYTES') {
    return {
      datatype: 'BYTES',
      shape: [totalRows, ...rowShape],
      data: items.flatMap((item) => (item.inputs[name] as Tensor).data as BytesData),
    };
  }
  const data = new ARRAY_FOR[first.datatype](totalRows * elementCount(rowShape));
  let offset = 0;
  for (const item of items) {
    const part = (item.inputs[name] as Tensor).data as TypedArray;
    (data as Float32Array).set(part as Float32Array, offset);
    offset += part.length;
  }
  return { datatype: first.datatype, shape: [totalRows, ...rowShape], data };
}

/** Splits a batch output back into one tensor per item, by their row counts. Views, not copies. */
export function splitRows(tensor: Tensor, rowsPerItem: readonly number[]): Tensor[] {
  const rowSize = elementCount(tensor.shape.slice(1));
  const parts: Tensor[] = [];
  let offset = 0;
  for (const rows of rowsPerItem) {
    const length = rows * rowSize;
    const data = Array.isArray(tensor.data)
      ? tensor.data.slice(offset, offset + length)
      : tensor.data.subarray(offset, offset + length);
    parts.push({ datatype: tensor.datatype, shape: [rows, ...tensor.shape.slice(1)], data });
    offset += length;
  }
  return parts;
}
