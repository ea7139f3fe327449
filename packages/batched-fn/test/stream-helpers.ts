import { batchedStream, type BatchedStreamOptions } from 'batched-fn';

export interface Seq {
  id: string;
  length: number;
  fail?: number;
}

/** A generator whose sequence `id` emits `${id}:0`, `${id}:1`... `length` values; every step's members are recorded. */
export function counting(
  options: Partial<
    BatchedStreamOptions<Seq, { id: string; left: number; n: number; fail?: number }, string, undefined>
  > = {},
) {
  const steps: string[][] = [];
  const started: string[][] = [];
  const generate = batchedStream<Seq, { id: string; left: number; n: number; fail?: number }, string>({
    start: (inputs) => {
      started.push(inputs.map((s) => s.id));
      return inputs.map((s) => ({ id: s.id, left: s.length, n: 0, ...(s.fail === undefined ? {} : { fail: s.fail }) }));
    },
    step: (states) => {
      steps.push(states.map((s) => s.id));
      return states.map((s) => {
        if (s.fail === s.n) return new Error(`${s.id} failed`);
        s.left--;
        return { value: `${s.id}:${s.n++}`, done: s.left === 0 };
      });
    },
    maxBatchSize: 2,
    maxDelay: 0,
    ...options,
  });
  return { generate, steps, started };
}

export async function collect<T>(stream: AsyncIterable<T>): Promise<{ values: T[]; error?: unknown }> {
  const values: T[] = [];
  try {
    for await (const value of stream) values.push(value);
    return { values };
  } catch (error) {
    return { values, error };
  }
}
