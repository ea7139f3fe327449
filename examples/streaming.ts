// file: examples/streaming.ts
import { batchedStream } from 'batched-fn';

// Stands in for a decoder: each step emits one more character of every active sequence, in one call.
export const spell = batchedStream<string, { word: string; at: number }, string>({
  start: (words) => words.map((word) => ({ word, at: 0 })), // the prefill of sequences joining now
  step: (states) =>
    states.map((s) => {
      const value = s.word[s.at++] as string;
      return { value, done: s.at === s.word.length };
    }),
  maxBatchSize: 16,
  maxDelay: 'auto',
});

// Each caller reads its own stream; short words leave early and waiting ones take their place.
export const words = await Promise.all(
  ['batch', 'me', 'continuously'].map(async (word) => {
    let out = '';
    for await (const letter of spell(word)) out += letter;
    return out;
  }),
);
console.log(words, 'in', spell.stats.steps, 'steps'); // [ 'batch', 'me', 'continuously' ] in 12 steps
