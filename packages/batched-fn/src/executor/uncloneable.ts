import type { Outputs } from './types.js';

/** Why `value` cannot be cloned to a thread (what postMessage would throw without a transfer list), or undefined. */
export function cloneError(value: unknown): unknown {
  try {
    structuredClone(value);
    return undefined;
  } catch (error) {
    return error;
  }
}

/** An error's message for another error's text; a thrown non-Error as it prints. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * A batch could not be posted to its worker because some input cannot be
 * cloned (a function, a socket). One such input must not sink its
 * neighbours: the others run (through `runGood`), and each bad one gets its
 * own TypeError, naming its own clone error. When no single input is to
 * blame, the original error stands.
 */
export async function runCloneable(
  inputs: unknown[],
  cause: unknown,
  runGood: (good: unknown[]) => Promise<Outputs<unknown>>,
): Promise<Outputs<unknown>> {
  const bad = new Map<number, unknown>();
  inputs.forEach((input, i) => {
    const error = cloneError(input);
    if (error !== undefined) bad.set(i, error);
  });
  if (bad.size === 0) throw cause;
  const good = inputs.filter((_, i) => !bad.has(i));
  const goodOutputs = good.length === 0 ? [] : await runGood(good);
  let next = 0;
  return inputs.map((_, i) =>
    bad.has(i)
      ? new TypeError(`Input ${i} of the batch cannot be sent to a worker thread: ${messageOf(bad.get(i))}`)
      : goodOutputs[next++],
  );
}
