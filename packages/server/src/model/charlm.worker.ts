/**
 * The charlm step loop's worker module (batchedStream worker mode): the ONNX
 * session and every sequence's hidden state live in this thread. `start`
 * prefills each prompt; `step` picks every active sequence's next character
 * and runs one batched `session.run` to advance them all.
 */
import * as ort from 'onnxruntime-node';
import { CHARLM_VOCAB } from './charlm.js';
import { random } from './default-model.js';

export interface CharLmRequest {
  prompt: string;
  maxTokens: number;
  stop: string;
  temperature: number;
  seed: number;
}

interface State {
  hidden: Float32Array;
  logits: Float32Array;
  produced: string;
  left: number;
  stop: string;
  temperature: number;
  random: () => number;
}

interface Context {
  session: ort.InferenceSession;
  hidden: number;
}

export async function context(data: { modelPath: string; hidden: number }): Promise<Context> {
  const session = await ort.InferenceSession.create(data.modelPath, { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential' });
  return { session, hidden: data.hidden };
}

/** One batched step: tokens advance their hidden states; returns the new logits and states, row by row. */
async function advance(ctx: Context, tokens: number[], hidden: Float32Array[]): Promise<{ logits: Float32Array[]; hidden: Float32Array[] }> {
  const n = tokens.length;
  const h = ctx.hidden;
  const v = CHARLM_VOCAB.length;
  const state = new Float32Array(n * h);
  hidden.forEach((row, i) => state.set(row, i * h));
  const out = await ctx.session.run({ token: new ort.Tensor('int64', BigInt64Array.from(tokens, BigInt), [n]), state: new ort.Tensor('float32', state, [n, h]) });
  const logits = out.logits?.data as Float32Array;
  const next = out.next_state?.data as Float32Array;
  return { logits: tokens.map((_, i) => logits.slice(i * v, (i + 1) * v)), hidden: tokens.map((_, i) => next.slice(i * h, (i + 1) * h)) };
}

/** Greedy at temperature 0 (the first of equal maxima), else a seeded softmax sample. */
function pick(logits: Float32Array, temperature: number, draw: () => number): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if ((logits[i] as number) > (logits[best] as number)) best = i;
  if (temperature === 0) return best;
  const max = logits[best] as number;
  const weights = Array.from(logits, (l) => Math.exp((l - max) / temperature));
  let r = draw() * weights.reduce((a, b) => a + b, 0);
  for (let i = 0; i < weights.length; i++) if ((r -= weights[i] as number) <= 0) return i;
  return best;
}

const tokenOf = (char: string): number => Math.max(0, CHARLM_VOCAB.indexOf(char));

export async function start(requests: CharLmRequest[], ctx: Context): Promise<State[]> {
  const states: State[] = [];
  for (const request of requests) {
    // The prompt runs one character at a time (a recurrent prefill); an empty prompt starts from a newline.
    let hidden: Float32Array = new Float32Array(ctx.hidden);
    let logits: Float32Array = new Float32Array(CHARLM_VOCAB.length);
    for (const char of request.prompt.length === 0 ? '\n' : request.prompt) {
      const out = await advance(ctx, [tokenOf(char)], [hidden]);
      hidden = out.hidden[0] as Float32Array;
      logits = out.logits[0] as Float32Array;
    }
    states.push({ hidden, logits, produced: '', left: request.maxTokens, stop: request.stop, temperature: request.temperature, random: random(request.seed) });
  }
  return states;
}

export async function step(states: State[], ctx: Context): Promise<{ value: string; done: boolean }[]> {
  const outputs = states.map((s) => {
    const char = CHARLM_VOCAB[pick(s.logits, s.temperature, s.random)] as string;
    s.produced += char;
    s.left--;
    return { value: char, done: s.left === 0 || (s.stop !== '' && s.produced.endsWith(s.stop)) };
  });
  // Only the sequences that go on need their next state: one batched run for all of them.
  const going = states.filter((_, i) => !(outputs[i] as { done: boolean }).done);
  if (going.length > 0) {
    const out = await advance(ctx, going.map((s) => tokenOf(s.produced.at(-1) as string)), going.map((s) => s.hidden));
    going.forEach((s, i) => {
      s.hidden = out.hidden[i] as Float32Array;
      s.logits = out.logits[i] as Float32Array;
    });
  }
  return outputs;
}

export async function dispose(ctx: Context): Promise<void> {
  await ctx.session.release();
}
