import { join } from 'node:path';
import { cachedModel, defaultCacheDir, random } from './default-model.js';
import { ONNX_INT64, type OnnxGraph } from './onnx-writer.js';

/**
 * `charlm`, a generated character-level recurrent language model with one
 * step graph, for streaming generation:
 *
 *     next_state = tanh(E[token] + state·W + b)      logits = next_state·U
 *
 * with inputs `token` INT64 [N] and `state` FP32 [N, H], outputs `logits`
 * FP32 [N, V] and `next_state` FP32 [N, H]. Its text means nothing, but it is
 * deterministic (seeded weights), and a step is mostly reading W (H×H), so
 * batching a step pays, as it does for real decoders.
 */
export const CHARLM = Object.freeze({ hidden: 1024, seed: 20_261_125 });

/** The vocabulary: newline, then the printable ASCII characters; a token is an index into it. */
export const CHARLM_VOCAB = `\n${Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join('')}`;

export interface CharLmSpec {
  hidden: number;
  seed: number;
}

export function buildCharLmGraph(spec: CharLmSpec = CHARLM): OnnxGraph {
  const next = random(spec.seed);
  const h = spec.hidden;
  const v = CHARLM_VOCAB.length;
  const uniform = (length: number, bound: number): Float32Array => {
    const out = new Float32Array(length);
    for (let i = 0; i < length; i++) out[i] = (next() * 2 - 1) * bound;
    return out;
  };
  // Scaled so the recurrence neither dies out nor saturates: W's spectral radius stays below 1.
  return {
    name: `charlm_${h}`,
    opset: 17,
    nodes: [
      { opType: 'Gather', inputs: ['E', 'token'], outputs: ['embedded'], name: 'embed' },
      { opType: 'MatMul', inputs: ['state', 'W'], outputs: ['recurrent'], name: 'recur' },
      { opType: 'Add', inputs: ['embedded', 'recurrent'], outputs: ['sum'], name: 'add' },
      { opType: 'Add', inputs: ['sum', 'b'], outputs: ['pre'], name: 'bias' },
      { opType: 'Tanh', inputs: ['pre'], outputs: ['next_state'], name: 'tanh' },
      { opType: 'MatMul', inputs: ['next_state', 'U'], outputs: ['logits'], name: 'project' },
    ],
    initializers: [
      { name: 'E', dims: [v, h], data: uniform(v * h, 1) },
      { name: 'W', dims: [h, h], data: uniform(h * h, 1.5 / Math.sqrt(h)) },
      { name: 'b', dims: [h], data: uniform(h, 0.1) },
      { name: 'U', dims: [h, v], data: uniform(h * v, 3 / Math.sqrt(h)) },
    ],
    inputs: [
      { name: 'token', elemType: ONNX_INT64, shape: ['batch'] },
      { name: 'state', shape: ['batch', h] },
    ],
    outputs: [
      { name: 'logits', shape: ['batch', v] },
      { name: 'next_state', shape: ['batch', h] },
    ],
  };
}

/** The generated model's path, built once per cache. */
export function ensureCharLm(spec: CharLmSpec = CHARLM, cacheDir = defaultCacheDir()): string {
  return cachedModel(join(cacheDir, `charlm-${spec.hidden}-seed${spec.seed}-v1.onnx`), () => buildCharLmGraph(spec));
}
