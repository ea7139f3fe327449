import { move } from 'batched-fn';
import { expect, test } from 'vitest';
import { COMPUTE_KEY } from '../src/model/compute-timing.js';
import { inferCodec, ownBuffersCodec, packStacked, stackedOf } from '../src/model/infer-codec.js';
import type { InferItem, InferResult, Tensor } from '../src/model/tensor.js';

const fp32 = (rows: number, width: number, from: number): Tensor => ({
  datatype: 'FP32',
  shape: [rows, width],
  data: Float32Array.from({ length: rows * width }, (_, i) => from + i),
});
const item = (input: Tensor, extras: Partial<InferItem> = {}): InferItem => ({
  rows: input.shape[0] as number,
  inputs: { input },
  ...extras,
});

/** What the worker thread reads: the message posted, cloned with its transfer list as postMessage would. */
function cross<T>(packed: { value: unknown; transfer?: ArrayBuffer[] }, decode: (value: unknown) => T): T {
  return decode(structuredClone(packed.value, { transfer: packed.transfer ?? [] }));
}

test('a batch of numeric requests crosses as one stacked tensor, and comes back as the same requests', () => {
  const items = [
    item(fp32(1, 4, 0)),
    item(fp32(2, 4, 100), { parameters: { temperature: 0.5 } }),
    item(fp32(1, 4, 200), { caller: { chain: ['pipeline'] } }),
  ].map((i) => move(i));
  const packed = inferCodec.encodeInputs(items);
  const value = packed.value as { stacked: { rows: number[]; tensors: Record<string, Tensor> } };
  expect(value.stacked.rows).toEqual([1, 2, 1]);
  expect(value.stacked.tensors.input?.shape).toEqual([4, 4]);
  // Three requests' own buffers, not adjacent: copied into one fresh buffer, which alone is transferred.
  expect(packed.transfer).toHaveLength(1);
  for (const i of items)
    expect(packed.transfer).not.toContain(((i.inputs.input as Tensor).data as Float32Array).buffer);
  const decoded = cross(packed, inferCodec.decodeInputs);
  expect(decoded.map((d) => d.rows)).toEqual([1, 2, 1]);
  expect(decoded.map((d) => Array.from(d.inputs.input?.data as Float32Array))).toEqual(
    items.map((i) => Array.from(i.inputs.input?.data as Float32Array)),
  );
  expect(decoded.map((d) => d.inputs.input?.shape)).toEqual([
    [1, 4],
    [2, 4],
    [1, 4],
  ]);
  expect(decoded[1]?.parameters).toEqual({ temperature: 0.5 });
  expect(decoded[2]?.caller).toEqual({ chain: ['pipeline'] });
  expect(decoded[0]).not.toHaveProperty('parameters');
});

test('rows already adjacent in one moved buffer cross without a copy; in a buffer not moved, copied', () => {
  const all = new Float32Array(12).map((_, i) => i);
  const parts = [0, 1, 2].map((k) => item({ datatype: 'FP32', shape: [1, 4], data: all.subarray(k * 4, k * 4 + 4) }));
  const kept = inferCodec.encodeInputs(parts);
  expect(kept.transfer).not.toContain(all.buffer);
  const moved = inferCodec.encodeInputs(parts.map((p) => move(p)));
  expect(moved.transfer).toEqual([all.buffer]);
  const tensor = (moved.value as { stacked: { tensors: Record<string, Tensor> } }).stacked.tensors.input as Tensor;
  expect((tensor.data as Float32Array).buffer).toBe(all.buffer);
  expect(tensor.shape).toEqual([3, 4]);
});

test('what cannot be stacked crosses as it is: BYTES, row shapes or datatypes that differ, rows that are not the first dimension', () => {
  const bytes: Tensor = { datatype: 'BYTES', shape: [1], data: [new TextEncoder().encode('hi')] };
  const cases: InferItem[][] = [
    [item(bytes), item(bytes)],
    [item(fp32(1, 4, 0)), item(fp32(1, 3, 0))],
    [item(fp32(1, 4, 0)), item({ datatype: 'FP64', shape: [1, 4], data: new Float64Array(4) })],
    [{ rows: 1, inputs: { input: fp32(2, 4, 0) } }],
  ];
  for (const items of cases) {
    const packed = inferCodec.encodeInputs(items.map((i) => move(i)));
    expect(packed.value).toHaveProperty('each');
    // As without a codec: the moved requests' buffers are handed over.
    const first = items[0]?.inputs.input?.data;
    const buffer = Array.isArray(first) ? first[0]?.buffer : first?.buffer;
    expect(packed.transfer).toContain(buffer);
    const decoded = cross(packed, inferCodec.decodeInputs);
    expect(decoded.map((d) => d.inputs.input?.shape)).toEqual(items.map((i) => i.inputs.input?.shape));
  }
});

test("requests that cross as they are, with views into a shared buffer (a small request's, from Node's pool), cross in copies of their own", () => {
  const shared = new ArrayBuffer(8192);
  const view = (at: number, width: number): Tensor => ({
    datatype: 'FP32',
    shape: [1, width],
    data: new Float32Array(shared, at, width).fill(at),
  });
  // Row shapes differ: not stacked. Neither request is moved (its tensor does not own its buffer).
  const items = [item(view(0, 4)), item(view(64, 3))];
  const packed = inferCodec.encodeInputs(items);
  expect(packed.value).toHaveProperty('each');
  expect(packed.transfer).toHaveLength(2);
  expect(packed.transfer).not.toContain(shared);
  expect(shared.byteLength).toBe(8192);
  const decoded = cross(packed, inferCodec.decodeInputs);
  // Only each tensor's own bytes crossed, not the 8 KB around them.
  expect(decoded.map((d) => ((d.inputs.input as Tensor).data as Float32Array).buffer.byteLength)).toEqual([16, 12]);
  expect(decoded.map((d) => Array.from(d.inputs.input?.data as Float32Array))).toEqual([
    [0, 0, 0, 0],
    [64, 64, 64],
  ]);
  // The callers' own views are untouched.
  expect(Array.from(items[1]?.inputs.input?.data as Float32Array)).toEqual([64, 64, 64]);
});

test("results come back per request with the worker's stamp; outputs whose row counts differ per name cross as they are", () => {
  const stamp = { inferStart: 1, inferEnd: 2 };
  const out = new Float32Array(6).map((_, i) => i);
  const results: InferResult[] = [0, 1, 2].map(
    (k) =>
      move({
        probabilities: { datatype: 'FP32', shape: [1, 2], data: out.subarray(k * 2, k * 2 + 2) },
        [COMPUTE_KEY]: stamp,
      }) as unknown as InferResult,
  );
  const packed = inferCodec.encodeOutputs(results);
  expect(packed.transfer).toEqual([out.buffer]);
  const back = cross(packed, (value) => inferCodec.decodeOutputs(value, []));
  expect(back.map((r) => Array.from(r.probabilities?.data as Float32Array))).toEqual([
    [0, 1],
    [2, 3],
    [4, 5],
  ]);
  expect(back.map((r) => (r as Record<string, unknown>)[COMPUTE_KEY])).toEqual([stamp, stamp, stamp]);

  const ragged: InferResult[] = [
    { boxes: fp32(2, 4, 0), scores: fp32(2, 1, 0) },
    { boxes: fp32(1, 4, 0), scores: fp32(3, 1, 0) },
  ];
  const asIs = inferCodec.encodeOutputs(ragged);
  expect(asIs.value).toHaveProperty('each');
  expect(cross(asIs, (value) => inferCodec.decodeOutputs(value, [])).map((r) => r.scores?.shape)).toEqual([
    [2, 1],
    [3, 1],
  ]);
});

test('a message that is not this codec packing is refused, not misread', () => {
  for (const garbage of [null, 3, {}, { stacked: { rows: 'x', tensors: {} } }, { each: 'x' }]) {
    expect(() => inferCodec.decodeInputs(garbage)).toThrow(/did not arrive as this codec packs them/);
    expect(() => inferCodec.decodeOutputs(garbage, [])).toThrow(/did not arrive as this codec packs them/);
  }
});

test("the JS-model worker's half gives each request's inputs a buffer of their own; the ONNX worker's keeps views of one", () => {
  const packed = inferCodec.encodeInputs([item(fp32(1, 4, 0)), item(fp32(2, 4, 10))].map((i) => move(i)));
  const views = cross(packed, inferCodec.decodeInputs).map((d) => d.inputs.input?.data as Float32Array);
  expect(views[0]?.buffer).toBe(views[1]?.buffer);
  const own = cross(inferCodec.encodeInputs([item(fp32(1, 4, 0)), item(fp32(2, 4, 10))]), ownBuffersCodec.decodeInputs);
  const datas = own.map((d) => d.inputs.input?.data as Float32Array);
  expect(datas.map((d) => d.buffer.byteLength)).toEqual([16, 32]);
  expect(datas.map((d) => Array.from(d))).toEqual([
    [0, 1, 2, 3],
    [10, 11, 12, 13, 14, 15, 16, 17],
  ]);
});

test('results in one buffer cross without a copy when the worker moved their array; not moved, copied; stamps that differ, as they are', () => {
  const out = new Float32Array(4).map((_, i) => i);
  const stamp = { inferStart: 1, inferEnd: 2 };
  const results = (): InferResult[] =>
    [0, 1].map(
      (k) =>
        ({
          y: { datatype: 'FP32', shape: [1, 2], data: out.subarray(k * 2, k * 2 + 2) },
          [COMPUTE_KEY]: stamp,
        }) as unknown as InferResult,
    );
  expect(inferCodec.encodeOutputs(move(results())).transfer).toEqual([out.buffer]);
  const copied = inferCodec.encodeOutputs(results());
  expect(copied.transfer).toHaveLength(1);
  expect(copied.transfer).not.toContain(out.buffer);
  const own = results();
  (own[1] as Record<string, unknown>)[COMPUTE_KEY] = { inferStart: 1, inferEnd: 3 };
  expect(inferCodec.encodeOutputs(own).value).toHaveProperty('each');
});

test('results that cannot be stacked, in an array the worker moved, still hand their buffers over', () => {
  const ragged = move([
    { boxes: fp32(2, 4, 0), scores: fp32(2, 1, 0) },
    { boxes: fp32(1, 4, 0), scores: fp32(3, 1, 0) },
  ] as InferResult[]);
  const packed = inferCodec.encodeOutputs(ragged);
  expect(packed.value).toHaveProperty('each');
  expect(packed.transfer).toHaveLength(4);
  expect(packed.transfer).toContain((((ragged[0] as InferResult).boxes as Tensor).data as Float32Array).buffer);
});

test("a worker's stacked results (packStacked) come back per request through decodeOutputs, with the stamp", () => {
  const packed = inferCodec.encodeInputs([item(fp32(1, 4, 0)), item(fp32(2, 4, 10))].map((i) => move(i)));
  const stacked = cross(packed, stackedOf);
  expect(stacked?.rows).toEqual([1, 2]);
  expect(stacked?.tensors.input?.shape).toEqual([3, 4]);
  expect(stackedOf(cross(inferCodec.encodeInputs([item(bytesOf('a'))]), (v) => v))).toBeUndefined();
  const out = fp32(3, 2, 100);
  const stamp = { inferStart: 5, inferEnd: 6 };
  const answer = packStacked([1, 2], { y: out }, stamp);
  expect(answer.transfer).toEqual([(out.data as Float32Array).buffer]);
  const results = cross(answer, (value) => inferCodec.decodeOutputs(value, []));
  expect(results.map((r) => Array.from(r.y?.data as Float32Array))).toEqual([
    [100, 101],
    [102, 103, 104, 105],
  ]);
  expect(results.map((r) => (r as Record<string, unknown>)[COMPUTE_KEY])).toEqual([stamp, stamp]);
});

function bytesOf(text: string): Tensor {
  return { datatype: 'BYTES', shape: [1], data: [new TextEncoder().encode(text)] };
}
