import type { Outputs } from './types.js';

/**
 * A batch could not be posted to its worker because some input cannot be
 * cloned (a function, a socket). One such input must not sink its
 * neighbours: the others run (through `runGood`), and each bad one gets its
 * own TypeError. When no single input is to blame, the original error stands.
 */
export async function runCloneable(
  inputs: unknown[],
  cause: unknown,
  runGood: (good: unknown[]) => Promise<Outputs<unknown>>,
): Promise<Outputs<unknown>> {
  const bad = new Set<number>();
  inputs.forEach((input, i) => {
    try {
      structuredClone(input);
    } catch {
      bad.add(i);
    }
  });
  if (bad.size === 0) throw cause;
  const good = inputs.filter((_, i) => !bad.has(i));
  const goodOutputs = good.length === 0 ? [] : await runGood(good);
  let next = 0;
  return inputs.map((_, i) =>
    bad.has(i)
      ? new TypeError(`Input ${i} of the batch cannot be sent to a worker thread: ${(cause as Error).message}`)
      : goodOutputs[next++],
  );
}
