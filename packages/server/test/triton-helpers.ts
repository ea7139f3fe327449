import type { EventEmitter } from 'node:events';
import { cpSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { scratchDir } from './scratch.js';

/** Triton's test-model stand-ins (fixtures/triton-models), copied into a fresh repository with `extra` model folders. */
export function tritonRepository(extra: Record<string, string> = {}): string {
  const repo = scratchDir('bfn-triton-');
  const fixtures = fileURLToPath(new URL('./fixtures/triton-models', import.meta.url));
  for (const name of ['simple', 'simple_string']) cpSync(join(fixtures, name), join(repo, name), { recursive: true });
  for (const [name, source] of Object.entries(extra)) {
    mkdirSync(join(repo, name));
    writeFileSync(join(repo, name, 'model.mjs'), source);
  }
  return repo;
}

/** The messages of a readable call, in order, awaited one at a time; and how the call ended. */
export function messages<T = any>(call: EventEmitter) {
  const buffered: T[] = [];
  const waiters: ((message: T) => void)[] = [];
  call.on('data', (message: T) => {
    const waiter = waiters.shift();
    if (waiter === undefined) buffered.push(message);
    else waiter(message);
  });
  // A non-OK status arrives as 'error' too: it is read from 'status'.
  call.on('error', () => {});
  const status = new Promise<{ code: number; details: string }>((resolve) =>
    call.once('status', (s: { code: number; details: string }) => resolve({ code: s.code, details: s.details })),
  );
  return {
    next: (ms = 5_000): Promise<T> =>
      new Promise<T>((resolve, reject) => {
        if (buffered.length > 0) return resolve(buffered.shift() as T);
        const timer = setTimeout(() => reject(new Error(`no message within ${ms} ms`)), ms);
        waiters.push((message) => {
          clearTimeout(timer);
          resolve(message);
        });
      }),
    /** Messages received and not yet read. */
    buffered: () => buffered.length,
    status,
  };
}

export const until = async (condition: () => boolean, ms = 5_000): Promise<void> => {
  const end = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > end) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
};

/** A 16-element INT32 row of `simple`'s inputs. */
export const row16 = (start: number): number[] => Array.from({ length: 16 }, (_, i) => start + i);

/** A ModelInferRequest for `simple`, typed. */
export const simpleRequest = (id: string, a: number[], b: number[], extra: object = {}) => ({
  model_name: 'simple',
  id,
  inputs: [
    { name: 'INPUT0', datatype: 'INT32', shape: [a.length / 16, 16], contents: { int_contents: a } },
    { name: 'INPUT1', datatype: 'INT32', shape: [b.length / 16, 16], contents: { int_contents: b } },
  ],
  ...extra,
});

/** A raw_output_contents entry as INT32 numbers. */
export const int32sOf = (buffer: Buffer): number[] => Array.from(new Int32Array(Uint8Array.from(buffer).buffer));
