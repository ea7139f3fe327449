import * as ort from 'onnxruntime-node';
import { expect, test } from 'vitest';
import { buildCharLmGraph, CHARLM_VOCAB, ensureCharLm } from '@batched-fn/server';
import { scratchDir } from './scratch.js';

// The generated recurrent LM computes exactly next_state = tanh(E[token] + state·W + b), logits = next_state·U.
test('charlm: one step matches a hand-computed step, for every row of a batch', async () => {
  const spec = { hidden: 16, seed: 7 };
  const path = ensureCharLm(spec, scratchDir('bfn-charlm-'));
  const session = await ort.InferenceSession.create(path, { intraOpNumThreads: 1 });
  const graph = buildCharLmGraph(spec);
  const weight = (name: string) => graph.initializers.find((i) => i.name === name)?.data as Float32Array;
  const [E, W, b, U] = ['E', 'W', 'b', 'U'].map(weight) as [Float32Array, Float32Array, Float32Array, Float32Array];
  const h = spec.hidden;
  const v = CHARLM_VOCAB.length;
  const tokens = [CHARLM_VOCAB.indexOf('h'), CHARLM_VOCAB.indexOf('\n'), CHARLM_VOCAB.indexOf('~')];
  const state = Float32Array.from({ length: tokens.length * h }, (_, i) => Math.sin(i) * 0.5);
  const out = await session.run({
    token: new ort.Tensor('int64', BigInt64Array.from(tokens.map(BigInt)), [tokens.length]),
    state: new ort.Tensor('float32', state, [tokens.length, h]),
  });
  const logits = out.logits?.data as Float32Array;
  const next = out.next_state?.data as Float32Array;
  expect(out.logits?.dims).toEqual([tokens.length, v]);
  tokens.forEach((token, row) => {
    const expectedState = Array.from({ length: h }, (_, j) => {
      let sum = (E[token * h + j] as number) + (b[j] as number);
      for (let k = 0; k < h; k++) sum += (state[row * h + k] as number) * (W[k * h + j] as number);
      return Math.tanh(sum);
    });
    for (const [j, value] of expectedState.entries()) expect(next[row * h + j]).toBeCloseTo(value, 5);
    for (let c = 0; c < v; c++) {
      let sum = 0;
      for (let j = 0; j < h; j++) sum += (expectedState[j] as number) * (U[j * v + c] as number);
      expect(logits[row * v + c]).toBeCloseTo(sum, 4);
    }
  });
  await session.release();
});

test('charlm: the vocabulary is newline and the 95 printable ASCII characters; the default model builds', () => {
  expect(CHARLM_VOCAB).toHaveLength(96);
  expect(CHARLM_VOCAB[0]).toBe('\n');
  expect(CHARLM_VOCAB.slice(1)).toBe(
    ' !"#$%&\'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~',
  );
  expect(buildCharLmGraph().initializers.find((i) => i.name === 'W')?.dims).toEqual([1024, 1024]);
});
