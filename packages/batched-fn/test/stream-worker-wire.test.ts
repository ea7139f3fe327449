// Worker-mode streaming's hot path: the thread steps a group on its own (its run), a few steps
// ahead of the main thread, and each step comes back packed (the ids stepped, values, one flag byte
// per slot, errors apart). These tests pin down what must not change with the transport: every
// value and end arrives, a very large group runs, asynchronous and hostile steps end their streams
// as before, and a message forged by user code never passes for an answer.
import { expect, test } from 'vitest';
import { batchedStream, type StepInfo } from 'batched-fn';
import { parseFromWorker } from '../dist/executor/wire.js';
import { STEPS_AHEAD } from '../dist/stream/thread-run.js';
import { collect } from './stream-helpers.js';

const moduleOf = (source: string): string => `data:text/javascript,${encodeURIComponent(source)}`;

/**
 * The steps a thread has counted in `counter` once it has started and then stopped, this (main)
 * thread busy all along, hearing nothing: how far a thread runs without the main thread.
 */
function stepsWhenStill(counter: Int32Array): number {
  const until = performance.now() + 15_000;
  let last = 0;
  let stableSince = performance.now();
  while (performance.now() < until) {
    const now = Atomics.load(counter, 0);
    if (now !== last) {
      last = now;
      stableSince = performance.now();
    } else if (last > 0 && performance.now() - stableSince > 300) break;
  }
  return Atomics.load(counter, 0);
}

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
  const steps: StepInfo[] = [];
  const generate = batchedStream<number, unknown, number | undefined>({
    worker: countdown,
    maxBatchSize: 4,
    maxDelay: 0,
    onStep: (info) => steps.push(info),
  });
  const lengths = [1, 2, 3, 7, 5, 9, 4, 6];
  const results = await Promise.all(lengths.map((length) => collect(generate(length))));
  let values = 0;
  results.forEach((result, i) => {
    const expected: (number | undefined)[] = [];
    for (let n = 0; n < (lengths[i] as number); n++) if (n % 3 !== 2) expected.push(n % 3 === 1 ? undefined : n);
    expect(result).toEqual({ values: expected });
    values += expected.length;
  });
  // Every slot was stepped once; `values` counts the slots that handed one out.
  expect(steps.reduce((sum, info) => sum + info.sequences, 0)).toBe(lengths.reduce((a, b) => a + b, 0));
  expect(steps.reduce((sum, info) => sum + info.values, 0)).toBe(values);
  expect(steps.every((info) => info.sequences <= 4 && info.values <= info.sequences)).toBe(true);
  expect(generate.stats.workerStates).toBe(0);
  await generate.close();
});

test('the thread steps ahead of a busy main thread by STEPS_AHEAD steps, then waits for it', async () => {
  const counter = new Int32Array(new SharedArrayBuffer(4));
  const counted = moduleOf(`
    export const context = (data) => data.counter;
    export function step(states, counter) {
      Atomics.add(counter, 0, 1);
      return states.map(() => ({ value: 1 }));
    }
  `);
  const generate = batchedStream<number, unknown, number>({ worker: counted, workerData: { counter }, maxDelay: 0 });
  const stream = generate(0);
  expect((await stream.next()).value).toBe(1);
  // The main thread is busy now (it hears nothing): the thread runs to the end of its credit.
  expect(stepsWhenStill(counter)).toBe(STEPS_AHEAD);
  // Back in the event loop: the values stepped meanwhile arrive in order, and stepping goes on.
  for (let i = 1; i < STEPS_AHEAD + 10; i++) expect((await stream.next()).value).toBe(1);
  await stream.return?.();
  await generate.close();
});

test('while nobody waits to join, a stream ending does not pause the thread; while someone waits, it does', async () => {
  const counter = new Int32Array(new SharedArrayBuffer(4));
  const lengths = moduleOf(`
    export const context = (data) => data.counter;
    export function start(inputs) { return inputs.map((left) => ({ left })); }
    export function step(states, counter) {
      Atomics.add(counter, 0, 1);
      return states.map((s) => ({ value: 1, done: --s.left === 0 }));
    }
  `);
  const steps: number[] = [];
  const generate = batchedStream<number, unknown, number>({
    worker: lengths,
    workerData: { counter },
    maxBatchSize: 2,
    maxDelay: 0,
    onStep: (info) => steps.push(info.sequences),
  });
  // Nobody waits: the short stream ends at step 1 and the thread runs on to the end of its first
  // credit. The group's run and start are sent from microtasks; this thread then hears nothing (it
  // stays busy), so a thread that paused at the end of step 1 would stop there.
  const short = generate(1);
  const long = generate(-1);
  for (let i = 0; i < 10; i++) await Promise.resolve();
  expect(stepsWhenStill(counter)).toBe(STEPS_AHEAD);
  expect((await long.next()).value).toBe(1);
  await collect(short);
  await long.return?.();
  await generate.close();

  // Someone waits (three streams, room for two): the thread pauses after step 1, and the third joins at step 2.
  Atomics.store(counter, 0, 0);
  steps.length = 0;
  const again = batchedStream<number, unknown, number>({
    worker: lengths,
    workerData: { counter },
    maxBatchSize: 2,
    maxDelay: 0,
    onStep: (info) => steps.push(info.sequences),
  });
  const results = await Promise.all([collect(again(1)), collect(again(3)), collect(again(2))]);
  expect(results.map((r) => r.values.length)).toEqual([1, 3, 2]);
  expect(steps).toEqual([2, 2, 2]);
  await again.close();
});

test('worker mode: a group of 4,100 sequences runs as one, each of its steps one message', async () => {
  const sequences = 4_100;
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
  const good = {
    type: 'stepped',
    id: 3,
    ids: [7, 9],
    values: [1, 2],
    flags: new Uint8Array([1, 3]),
    errors: [],
    held: 1,
    ms: 0.25,
  };
  expect(parseFromWorker(good)).toBe(good);
  expect(parseFromWorker({ ...good, values: [1, undefined], errors: [[1, error]] })).toBeDefined();
  expect(
    parseFromWorker({ type: 'stepped', id: 3, ids: [7], values: null, flags: null, errors: [], held: 0, ms: 1 }),
  ).toBeDefined();
  const mismatch = { type: 'stepped', id: 3, ids: [7], values: null, flags: null, errors: [], held: 0, ms: 1 };
  expect(parseFromWorker({ ...mismatch, received: 2 })).toBeDefined();
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
    { ...good, values: null, flags: null, errors: [[0, error]] },
    { ...good, values: null, flags: null, received: -1 }, // a count the step returned, if any
    { ...good, values: null, flags: null, received: '2' },
    { ...good, ids: [7] }, // one id short
    { ...good, ids: [7, -9] },
    { ...good, ids: [7, 1.5] },
    { ...good, ids: undefined },
    { ...good, ms: -1 },
    { ...good, ms: Number.NaN },
    { ...good, ms: '1' },
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
