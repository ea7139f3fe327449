import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import * as ort from 'onnxruntime-node';
import { buildMlpGraph, encodeModel, ensureMlpModel, readOnnxSignature } from '@batched-fn/server';
import { ocrClassifierPath, TEST_CACHE } from './helpers.js';
import { scratchDir } from './scratch.js';

const tiny = { inputs: 4, hidden: [8, 6], classes: 3, seed: 11 };

/** The same MLP computed by hand from the generated weights: Gemm, ReLU, ..., softmax. */
function reference(row: number[]): number[] {
  const graph = buildMlpGraph(tiny);
  let x = row;
  const layers = graph.initializers.length / 2;
  for (let l = 0; l < layers; l++) {
    const w = graph.initializers[2 * l] as { dims: number[]; data: Float32Array };
    const b = graph.initializers[2 * l + 1] as { data: Float32Array };
    const [fanIn, fanOut] = w.dims as [number, number];
    const next = Array.from({ length: fanOut }, (_, o) => {
      let acc = b.data[o] as number;
      for (let i = 0; i < fanIn; i++) acc += (x[i] as number) * (w.data[i * fanOut + o] as number);
      return acc;
    });
    x = l < layers - 1 ? next.map((v) => Math.max(0, v)) : next;
  }
  const max = Math.max(...x);
  const exps = x.map((v) => Math.exp(v - max));
  const sum = exps.reduce((a, c) => a + c, 0);
  return exps.map((e) => e / sum);
}

test('the generated MLP runs in onnxruntime and matches a hand-computed forward pass', async () => {
  const path = join(scratchDir('bfn-model-'), 'tiny-mlp.onnx');
  writeFileSync(path, encodeModel(buildMlpGraph(tiny)));
  const session = await ort.InferenceSession.create(path);
  const rows = [
    [0.5, -1, 2, 0.25],
    [1, 1, 1, 1],
  ];
  const result = await session.run({ input: new ort.Tensor('float32', Float32Array.from(rows.flat()), [2, 4]) });
  const probabilities = result.probabilities as ort.Tensor;
  expect(probabilities.dims).toEqual([2, 3]);
  const got = Array.from(probabilities.data as Float32Array);
  const expected = rows.flatMap(reference);
  got.forEach((value, i) => {
    expect(value).toBeCloseTo(expected[i] as number, 5);
  });
  await session.release();
});

test('model generation is deterministic: the same spec gives the same bytes', () => {
  const a = encodeModel(buildMlpGraph(tiny));
  const b = encodeModel(buildMlpGraph(tiny));
  expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
  const other = encodeModel(buildMlpGraph({ ...tiny, seed: 12 }));
  expect(Buffer.from(a).equals(Buffer.from(other))).toBe(false);
});

test('the default model is cached on disk and not rebuilt', () => {
  const first = ensureMlpModel(undefined, TEST_CACHE);
  const modified = readFileSync(first).length;
  const started = performance.now();
  expect(ensureMlpModel(undefined, TEST_CACHE)).toBe(first);
  expect(performance.now() - started).toBeLessThan(50);
  expect(first).toMatch(/mlp-256-4096-4096-16-seed\d+-v1\.onnx$/);
  // 256*4096 + 4096*4096 + 4096*16 weights plus biases, 4 bytes each.
  expect(modified).toBeGreaterThan((256 * 4096 + 4096 * 4096 + 4096 * 16) * 4);
});

test('signatures are read from the file, with -1 for open dimensions and initializers left out', () => {
  expect(readOnnxSignature(encodeModel(buildMlpGraph(tiny)))).toEqual({
    inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 4] }],
    outputs: [{ name: 'probabilities', datatype: 'FP32', shape: [-1, 3] }],
  });
  const ocr = ocrClassifierPath();
  expect(readOnnxSignature(readFileSync(ocr))).toEqual({
    inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 3, -1, -1] }],
    outputs: [{ name: 'softmax_0.tmp_0', datatype: 'FP32', shape: [-1, 2] }],
  });
  expect(() => readOnnxSignature(new Uint8Array([8, 1]))).toThrow('Not an ONNX model: no graph found');
});
