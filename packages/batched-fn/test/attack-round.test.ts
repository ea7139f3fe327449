import { expect, test } from 'vitest';
import { batchedStream, InvalidOutputError } from 'batched-fn';
import { collect } from './stream-helpers.js';

// An attack round on the fixes of the stream hardening (note 19): slots that still got past
// readSlot. Each test is named after its attack, and failed before its fix.

// A stream worker module written in the test itself.
const moduleOf = (source: string): string => `data:text/javascript,${encodeURIComponent(source)}`;

/**
 * Streams whose input is a word, one letter a step; the word `revoked` gets a revoked Proxy in its
 * slot (what an immer draft is once its producer has returned), `index` a slot whose array index
 * getter throws, and `thrown` a slot whose getter throws a non-Error.
 */
const SOURCE = `
  export function start(inputs) { return inputs.map((word) => ({ word, at: 0 })); }
  export function step(states) {
    const outputs = states.map((s) => {
      if (s.word === 'revoked') { const { proxy, revoke } = Proxy.revocable({ value: 'x' }, {}); revoke(); return proxy; }
      if (s.word === 'thrown') return { get value() { throw 42; } };
      return { value: s.word[s.at++], done: s.at === s.word.length };
    });
    const at = states.findIndex((s) => s.word === 'index');
    if (at >= 0) Object.defineProperty(outputs, at, { get() { throw new RangeError('no slot here'); } });
    return outputs;
  }
`;

for (const mode of ['inline', 'worker'] as const) {
  test(`attack: step puts a revoked Proxy (a finished immer draft) in one slot, or throws from a slot's index getter (${mode}): that stream alone ends`, async () => {
    const generate =
      mode === 'worker'
        ? batchedStream<string, unknown, string>({ worker: moduleOf(SOURCE), maxBatchSize: 8, maxDelay: 0 })
        : batchedStream<string, unknown, string>({
            ...((await import(moduleOf(SOURCE))) as object),
            maxBatchSize: 8,
            maxDelay: 0,
          });
    const results = await Promise.all(
      ['good', 'revoked', 'index', 'thrown', 'fine'].map((word) => collect(generate(word))),
    );
    // Before: `instanceof Error` on the revoked Proxy, and the index getter, threw outside readSlot's
    // guard: the whole step failed, and every stream of the group ended with that TypeError.
    expect(results[0]).toEqual({ values: ['g', 'o', 'o', 'd'] });
    expect(results[4]).toEqual({ values: ['f', 'i', 'n', 'e'] });
    expect((results[1]?.error as Error | undefined)?.message).toBe(
      "Cannot perform 'getPrototypeOf' on a proxy that has been revoked",
    );
    expect(results[2]?.error).toBeInstanceOf(RangeError);
    expect((results[2]?.error as Error | undefined)?.message).toBe('no slot here');
    // A getter that throws something that is not an Error ends its stream with ERR_INVALID_OUTPUT.
    expect(results[3]?.error).toBeInstanceOf(InvalidOutputError);
    expect((results[3]?.error as InvalidOutputError | undefined)?.index).toBe(3);
    expect(generate.stats.ended).toEqual({ done: 2, error: 3, aborted: 0, timeout: 0 });
    if (mode === 'worker') expect(generate.stats.workerStates).toBe(0);
    await generate.close();
  });
}
