// A text model written in JS: it tokenizes, extracts hashed bag-of-words features and scores them
// with a small linear layer, all inside the batcher's worker threads. Pre- and post-processing live
// with the model, as in Triton's Python backend.
export const inputs = [{ name: 'text', datatype: 'BYTES', shape: [-1] }];
export const outputs = [
  { name: 'label', datatype: 'BYTES', shape: [-1] },
  { name: 'positive', datatype: 'FP32', shape: [-1] },
];

const POSITIVE = ['good', 'great', 'love', 'excellent', 'happy', 'fast', 'nice', 'best', 'wonderful', 'like'];
const NEGATIVE = ['bad', 'terrible', 'hate', 'awful', 'sad', 'slow', 'poor', 'worst', 'broken', 'dislike'];
const NEGATORS = new Set(['not', 'never', "don't", 'no']);

/** FNV-1a: a stable hash for the hashing trick. */
function hash(token) {
  let h = 0x811c9dc5;
  for (let i = 0; i < token.length; i++) h = Math.imul(h ^ token.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

export function tokenize(text) {
  return text.toLowerCase().match(/[\p{L}']+/gu) ?? [];
}

/** Built once per worker: the weight of every hashed feature, from the lexicon. */
export function context(config) {
  const size = config.parameters?.features ?? 256;
  const weights = new Float32Array(size);
  for (const word of POSITIVE) weights[hash(word) % size] += 1.5;
  for (const word of NEGATIVE) weights[hash(word) % size] -= 1.5;
  return { size, weights };
}

function score(text, { size, weights }) {
  const features = new Float32Array(size);
  let sign = 1;
  for (const token of tokenize(text)) {
    if (NEGATORS.has(token)) {
      sign = -1;
      continue;
    }
    features[hash(token) % size] += sign;
    sign = 1;
  }
  let logit = 0;
  for (let i = 0; i < size; i++) logit += features[i] * weights[i];
  return 1 / (1 + Math.exp(-logit));
}

export function handler(requests, ctx) {
  return requests.map((request) => {
    const texts = request.inputs.text.data;
    if (texts.some((text) => text.length > 10_000))
      return Object.assign(new Error('each text must be at most 10,000 characters'), { status: 400 });
    const positive = texts.map((text) => score(text, ctx));
    return {
      label: { data: positive.map((p) => (p > 0.5 ? 'positive' : p < 0.5 ? 'negative' : 'neutral')) },
      positive: { data: positive },
    };
  });
}
