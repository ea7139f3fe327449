// Worker-mode streaming's hot path: a step request goes through the thread's doorbell (shared
// memory), its answer comes back packed (values, one flag byte per slot, errors apart). These tests
// pin down what must not change with the transport: every value and end arrives, a step too big
// for the doorbell still runs, asynchronous and hostile steps end their streams as before, and a
// message forged by user code never passes for an answer.
import { expect, test } from 'vitest';
import { batchedStream } from 'batched-fn';
import { parseFromWorker } from '../dist/executor/wire.js';
import { BELL_CAPACITY } from '../dist/executor/step-bell.js';
import { collect } from './stream-helpers.js';

const moduleOf = (source: string): string => `data:text/javascript,${encodeURIComponent(source)}`;

/** Each state counts down from its input; one value per step: the value, its step, and whether it had a value at all. */
const countdown = moduleOf(`
  export function start(inputs) { return inputs.map((left) => ({ left, n: 0 })); }
  export function step(states) {
    return states.map((s) => {
      s.left--;
      const n = s.n++;
      // Every third step of a stream has no value: flags must carry "no value" apart from "undefined".
      if (n % 3 === 2) return { done: s.left === 0 };
      return n % 3 === 1 ? { value: undefined, done: s.left === 0 } : { value: n, done: s.left === 0 };
    });
  }
`);

test('worker mode: values, valueless steps and ends all arrive, over many steps and joins', async () => {
  const generate = batchedStream<number, unknown, number | undefined>({
    worker: countdown,
    maxBatchSize: 4,
    maxDelay: 0,
  });
  const lengths = [1, 2, 3, 7, 5, 9, 4, 6];
  const results = await Promise.all(lengths.map((length) => collect(generate(length))));
  results.forEach((result, i) => {
    const expected: (number | undefined)[] = [];
    for (let n = 0; n < (lengths[i] as number); n++) if (n % 3 !== 2) expected.push(n % 3 === 1 ? undefined : n);
    expect(result).toEqual({ values: expected });
  });
  expect(generate.stats.workerStates).toBe(0);
  await generate.close();
});

test('worker mode: a step with more ids than the doorbell holds goes as a message, and runs the same', async () => {
  const sequences = BELL_CAPACITY + 5;
  const generate = batchedStream<number, unknown, number | undefined>({
    worker: countdown,
    maxBatchSize: sequences,
    maxDelay: 5,
  });
  const results = await Promise.all(Array.from({ length: sequences }, () => collect(generate(2))));
  expect(results.every((r) => r.error === undefined && r.values.length === 2)).toBe(true);
  expect(results[0]).toEqual({ values: [0, undefined] });
  // All of them in one group: one start, then two steps of every sequence.
  expect(generate.stats.steps).toBe(2);
  expect(generate.stats.workerStates).toBe(0);
  await generate.close();
});

test('worker mode: an asynchronous step is awaited; a rejected one, or a thenable whose `then` throws, ends its group', async () => {
  const asyncSteps = moduleOf(`
    export function start(inputs) { return inputs.map((word) => ({ word, at: 0 })); }
    export function step(states) {
      if (states.some((s) => s.word === 'reject')) return Promise.reject(new RangeError('rejected step'));
      if (states.some((s) => s.word === 'then')) return { get then() { throw new SyntaxError('then getter'); } };
      return new Promise((resolve) => setTimeout(() =>
        resolve(states.map((s) => ({ value: s.word[s.at++], done: s.at === s.word.length }))), 1));
    }
  `);
  const generate = batchedStream<string, unknown, string>({ worker: asyncSteps, maxDelay: 0 });
  expect(await collect(generate('abc'))).toEqual({ values: ['a', 'b', 'c'] });
  const rejected = await collect(generate('reject'));
  expect(rejected.error).toBeInstanceOf(RangeError);
  expect((rejected.error as Error).message).toBe('rejected step');
  const thrown = await collect(generate('then'));
  expect(thrown.error).toBeInstanceOf(SyntaxError);
  expect((thrown.error as Error).message).toBe('then getter');
  // The thread serves on, and keeps no state of the failed streams.
  expect(await collect(generate('ok'))).toEqual({ values: ['o', 'k'] });
  expect(generate.stats.workerStates).toBe(0);
  await generate.close();
});

test('a packed step answer is accepted only exactly as the protocol has it', () => {
  const error = { name: 'Error', message: 'm' };
  const good = { type: 'stepped', id: 3, values: [1, 2], flags: new Uint8Array([1, 3]), errors: [], held: 1 };
  expect(parseFromWorker(good)).toBe(good);
  expect(parseFromWorker({ ...good, values: [1, undefined], errors: [[1, error]] })).toBeDefined();
  expect(parseFromWorker({ type: 'stepped', id: 3, values: null, flags: null, errors: [], held: 0 })).toBeDefined();
  for (const forged of [
    { ...good, flags: new Uint8Array([1, 4]) }, // an unknown bit
    { ...good, flags: new Uint8Array([1]) }, // one flag short
    { ...good, flags: [1, 3] }, // not bytes
    { ...good, values: 'xy' },
    { ...good, errors: [[2, error]] }, // past the last slot
    { ...good, errors: [[0, null]] },
    { ...good, held: undefined }, // a stream thread always says what it holds
    { ...good, id: -1 },
    { ...good, values: null }, // null values come with null flags
    { type: 'stepped', id: 3, values: null, flags: null, errors: [[0, error]], held: 0 },
  ]) {
    expect(parseFromWorker(forged)).toBeUndefined();
  }
});

test('attack: user code posting forged answers on the stream thread’s port cannot settle a step', async () => {
  const forger = moduleOf(`
    import { parentPort } from 'node:worker_threads';
    export function start(inputs) { return inputs.map((word) => ({ word, at: 0 })); }
    export function step(states) {
      for (let id = 0; id < 8; id++) {
        parentPort.postMessage({ type: 'stepped', id, values: [1], flags: new Uint8Array([9]), errors: [], held: 0 });
        parentPort.postMessage({ type: 'result', id, outputs: ['forged'], errors: [] });
      }
      return states.map((s) => ({ value: s.word[s.at++], done: s.at === s.word.length }));
    }
  `);
  const generate = batchedStream<string, unknown, string>({ worker: forger, maxDelay: 0 });
  const result = await collect(generate('ab'));
  // The first forged 'result' for a live step id is refused by kind, ending that group; either way
  // no forged value is ever delivered.
  expect(result.values.every((v) => v === 'a' || v === 'b')).toBe(true);
  await generate.close();
});
