/**
 * The charlm step loop's worker module (batchedStream worker mode): the ONNX
 * session and every sequence's hidden state live in this thread.
 *
 * Prefill is chunked and shared. `start` runs nothing: it only reads the
 * prompt into tokens. Each `step` then feeds every sequence at most
 * `prefillChunk` tokens, position by position, and every sequence that has a
 * token at position j (a decoder's last pick, or a joiner's next prompt
 * character) shares the j-th batched `session.run`. So a step costs at most
 * `prefillChunk` runs whoever joins, and N joiners prefill in O(prompt length)
 * runs, not O(N × length). Running prefill whole in `start` stalled every
 * stream of the group for the sum of all joiners' prompts (15 joiners with
 * 1,000 characters each: 15,000 runs, about 3 s), because the core awaits
 * `start` before the next step. A sequence still prefilling answers `{}` (no
 * value) for that step; it answers its first character in the step its
 * prompt ends.
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

/** What the generator hands each worker thread. */
export interface CharLmWorkerData {
  modelPath: string;
  hidden: number;
  /** Most prompt tokens a sequence is fed per step. */
  prefillChunk: number;
}

interface State {
  hidden: Float32Array;
  logits: Float32Array;
  /** The prompt as tokens, and how many of them have been run. */
  prompt: number[];
  fed: number;
  /** The last character picked, to run at the next step (decoding). */
  pending: number;
  produced: string;
  left: number;
  stop: string;
  temperature: number;
  random: () => number;
  /** Bad sampling parameters: the sequence fails alone at its first step. */
  error?: Error;
}

interface Context {
  session: ort.InferenceSession;
  hidden: number;
  prefillChunk: number;
}

/**
 * Never terminate this thread mid-step: onnxruntime-node aborts the whole process when its thread
 * is terminated inside session.run. After a step timeout the stream retires the thread instead.
 */
export const interruptible = false;

export async function context(data: CharLmWorkerData): Promise<Context> {
  const session = await ort.InferenceSession.create(data.modelPath, {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    executionMode: 'sequential',
  });
  return { session, hidden: data.hidden, prefillChunk: data.prefillChunk };
}

/** One batched run: each row's token advances its hidden state; states are updated in place of the old ones. */
async function advance(ctx: Context, rows: State[], tokens: number[]): Promise<void> {
  const n = rows.length;
  const h = ctx.hidden;
  const v = CHARLM_VOCAB.length;
  const state = new Float32Array(n * h);
  for (const [i, row] of rows.entries()) state.set(row.hidden, i * h);
  const out = await ctx.session.run({
    token: new ort.Tensor('int64', BigInt64Array.from(tokens, BigInt), [n]),
    state: new ort.Tensor('float32', state, [n, h]),
  });
  const logits = out.logits?.data as Float32Array;
  const next = out.next_state?.data as Float32Array;
  rows.forEach((row, i) => {
    row.hidden = next.slice(i * h, (i + 1) * h);
    row.logits = logits.slice(i * v, (i + 1) * v);
  });
}

/** Greedy at temperature 0 (the first of equal maxima), else a seeded softmax sample. */
function pick(logits: Float32Array, temperature: number, draw: () => number): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if ((logits[i] as number) > (logits[best] as number)) best = i;
  if (temperature === 0) return best;
  const max = logits[best] as number;
  const weights = Array.from(logits, (l) => Math.exp((l - max) / temperature));
  let r = draw() * weights.reduce((a, b) => a + b, 0);
  for (let i = 0; i < weights.length; i++) {
    r -= weights[i] as number;
    if (r <= 0) return i;
  }
  return best;
}

const tokenOf = (char: string): number => Math.max(0, CHARLM_VOCAB.indexOf(char));

/** A prompt as the generator contract gives it (model/generator.ts): the server applies max_tokens and stop. */
export interface CharLmPrompt {
  text: string;
  parameters: { temperature?: number; seed?: number };
}

/** Sampling parameters a client sent are only checked by name: their values are checked here, per sequence. */
function sampling(parameters: CharLmPrompt['parameters']): { temperature: number; seed: number } {
  const { temperature = 0, seed = 1 } = parameters;
  if (typeof temperature !== 'number' || !(temperature >= 0 && temperature <= 10))
    throw Object.assign(
      new RangeError(`temperature must be a number from 0 to 10, got ${JSON.stringify(temperature)}`),
      {
        status: 400,
      },
    );
  if (typeof seed !== 'number' || !Number.isInteger(seed) || seed < 0 || seed > 2 ** 32 - 1)
    throw Object.assign(new RangeError(`seed must be an integer from 0 to 4294967295, got ${JSON.stringify(seed)}`), {
      status: 400,
    });
  return { temperature, seed };
}

/**
 * Runs nothing: the prompt is fed by the steps, a chunk at a time (an empty prompt starts from a
 * newline). Takes the generator contract's `{ text, parameters }`, or, run directly, a
 * CharLmRequest that ends itself after `maxTokens` or at `stop`.
 */
export function start(requests: (CharLmRequest | CharLmPrompt)[], ctx: Context): State[] {
  return requests.map((request) => {
    const own = 'text' in request;
    const prompt = own ? request.text : request.prompt;
    let error: Error | undefined;
    let chosen = { temperature: 0, seed: 1 };
    try {
      chosen = own ? sampling(request.parameters) : request;
    } catch (failure) {
      error = failure as Error;
    }
    const { temperature, seed } = chosen;
    return {
      ...(error === undefined ? {} : { error }),
      hidden: new Float32Array(ctx.hidden),
      logits: new Float32Array(CHARLM_VOCAB.length),
      prompt: Array.from(prompt.length === 0 ? '\n' : prompt, tokenOf),
      fed: 0,
      pending: -1,
      produced: '',
      left: own ? Number.POSITIVE_INFINITY : request.maxTokens,
      stop: own ? '' : request.stop,
      temperature,
      random: random(seed),
    };
  });
}

/** The token a state runs at position `j` of this step, or -1: a decoder has one, a prefilling sequence up to `prefillChunk`. */
const tokenAt = (s: State, j: number, chunk: number): number => {
  if (s.fed < s.prompt.length) return j < chunk ? (s.prompt[s.fed + j] ?? -1) : -1;
  return j === 0 ? s.pending : -1;
};

export async function step(all: State[], ctx: Context): Promise<({ value?: string; done?: boolean } | Error)[]> {
  const chunk = ctx.prefillChunk;
  const states = all.filter((s) => s.error === undefined);
  // Position j's run takes every sequence with a j-th token: decoders ride along with the prefill's first position.
  const prefilling = states
    .filter((s) => s.fed < s.prompt.length)
    .map((s) => ({ s, take: Math.min(chunk, s.prompt.length - s.fed) }));
  const positions = prefilling.reduce(
    (most, p) => Math.max(most, p.take),
    states.some((s) => s.fed >= s.prompt.length) ? 1 : 0,
  );
  for (let j = 0; j < positions; j++) {
    const rows: State[] = [];
    const tokens: number[] = [];
    for (const s of states) {
      const token = tokenAt(s, j, chunk);
      if (token >= 0) {
        rows.push(s);
        tokens.push(token);
      }
    }
    await advance(ctx, rows, tokens);
  }
  for (const { s, take } of prefilling) s.fed += take;
  return all.map((s) => {
    if (s.error !== undefined) return s.error;
    if (s.fed < s.prompt.length) return {};
    const token = pick(s.logits, s.temperature, s.random);
    const char = CHARLM_VOCAB[token] as string;
    if (s.stop !== '') s.produced += char;
    s.left--;
    s.pending = token;
    return { value: char, done: s.left === 0 || (s.stop !== '' && s.produced.endsWith(s.stop)) };
  });
}

export async function dispose(ctx: Context): Promise<void> {
  await ctx.session.release();
}
