import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { endianness, homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { encodeModel, type OnnxGraph } from './onnx-writer.js';

/**
 * The model served when no `--model` is given: a deterministic MLP classifier,
 * 256 → 4096 → 4096 → 16 with ReLU and a softmax, about 17.9 M parameters.
 * It is big enough that batching pays (one run costs milliseconds, a batch of
 * 64 far less than 64 runs), while its input and output stay small enough
 * that HTTP and JSON do not drown the effect.
 */
export const DEFAULT_MODEL = Object.freeze({ inputs: 256, hidden: [4096, 4096], classes: 16, seed: 20_260_101 });

export interface MlpSpec {
  inputs: number;
  hidden: readonly number[];
  classes: number;
  seed: number;
}

/** xorshift32: fast, seedable and identical on every machine, unlike Math.random. */
export function random(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state / 4294967296;
  };
}

export function buildMlpGraph(spec: MlpSpec): OnnxGraph {
  const next = random(spec.seed);
  const widths = [spec.inputs, ...spec.hidden, spec.classes];
  const graph: OnnxGraph = {
    name: `mlp_${widths.join('_')}`,
    opset: 17,
    nodes: [],
    initializers: [],
    inputs: [{ name: 'input', shape: ['batch', spec.inputs] }],
    outputs: [{ name: 'probabilities', shape: ['batch', spec.classes] }],
  };
  let current = 'input';
  for (let layer = 0; layer < widths.length - 1; layer++) {
    const fanIn = widths[layer] as number;
    const fanOut = widths[layer + 1] as number;
    // He-uniform initialisation keeps activations in a sane range through the ReLUs.
    const bound = Math.sqrt(6 / fanIn);
    const weights = new Float32Array(fanIn * fanOut);
    for (let i = 0; i < weights.length; i++) weights[i] = (next() * 2 - 1) * bound;
    const bias = new Float32Array(fanOut);
    for (let i = 0; i < fanOut; i++) bias[i] = (next() * 2 - 1) * 0.01;
    graph.initializers.push({ name: `w${layer}`, dims: [fanIn, fanOut], data: weights });
    graph.initializers.push({ name: `b${layer}`, dims: [fanOut], data: bias });
    const isLast = layer === widths.length - 2;
    const out = isLast ? 'logits' : `h${layer}`;
    graph.nodes.push({
      opType: 'Gemm',
      inputs: [current, `w${layer}`, `b${layer}`],
      outputs: [out],
      name: `dense${layer}`,
    });
    if (isLast) {
      graph.nodes.push({ opType: 'Softmax', inputs: [out], outputs: ['probabilities'], name: 'softmax' });
    } else {
      graph.nodes.push({ opType: 'Relu', inputs: [out], outputs: [`${out}_relu`], name: `relu${layer}` });
      current = `${out}_relu`;
    }
  }
  return graph;
}

export function defaultCacheDir(): string {
  return process.env.BATCHED_FN_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'batched-fn');
}

/**
 * Returns the path of the generated model, building it only when the cache
 * does not have it yet. The file name carries every parameter, so a changed
 * spec never reuses a stale file; writing to a temporary name and renaming
 * means a crash mid-write never leaves a truncated model behind.
 */
export function ensureMlpModel(spec: MlpSpec = DEFAULT_MODEL, cacheDir = defaultCacheDir()): string {
  return cachedModel(
    join(cacheDir, `mlp-${[spec.inputs, ...spec.hidden, spec.classes].join('-')}-seed${spec.seed}-v1.onnx`),
    () => buildMlpGraph(spec),
  );
}

/** Writes a generated model once: to a temporary name, then renamed, so a crash never leaves half a file. */
export function cachedModel(file: string, build: () => OnnxGraph): string {
  if (endianness() !== 'LE') throw new Error('Generated models write little-endian weights; this host is big-endian');
  if (existsSync(file)) return file;
  mkdirSync(dirname(file), { recursive: true });
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, encodeModel(build()));
  renameSync(temporary, file);
  return file;
}
