import { afterEach, expect, onTestFinished, test, vi } from 'vitest';
import { batchedFn, batchedStream, BatchTimeoutError, ClosedError, InvalidOutputError } from 'batched-fn';
import { advance, track } from './helpers.js';
import { STEPS_AHEAD } from '../dist/stream/thread-run.js';
import { collect } from './stream-helpers.js';

// A stream worker module written in the test itself.
const moduleOf = (source: string): string => `data:text/javascript,${encodeURIComponent(source)}`;

/** Streams whose input is a word: each step emits one letter, or for some words a malformed slot. */
const BAD: Record<string, unknown> = {
  num: 5,
  str: 'x',
  nul: null,
  undef: undefined,
  doneNotBool: { value: 1, done: 'yes' },
};
const malformedStep = (states: { word: string; at: number }[]): unknown[] =>
  states.map((s) => (s.word in BAD ? BAD[s.word] : { value: s.word[s.at++], done: s.at === s.word.length }));
// The same, as a worker module; \`fn\` holds a value that cannot be cloned back to the main thread.
const malformed = moduleOf(`
  const BAD = { num: 5, str: 'x', nul: null, undef: undefined, doneNotBool: { value: 1, done: 'yes' }, fn: { value: () => 1 } };
  export function start(inputs) { return inputs.map((word) => ({ word, at: 0 })); }
  export function step(states) {
    return states.map((s) => (s.word in BAD ? BAD[s.word] : { value: s.word[s.at++], done: s.at === s.word.length }));
  }
`);
const BAD_WORDS = ['num', 'str', 'nul', 'undef', 'doneNotBool'];

afterEach(() => {
  vi.useRealTimers();
});

// Finding 1: a slot that is not `{ value?, done? }` or an Error used to throw inside the batcher,
// outside any promise a caller held: an uncaught TypeError that killed the host process.

test('attack: step puts a bare number, string, null or undefined in one slot (inline): that stream alone ends with ERR_INVALID_OUTPUT; the others and the generator go on', async () => {
  const generate = batchedStream<string, { word: string; at: number }, string>({
    start: (words) => words.map((word) => ({ word, at: 0 })),
    step: malformedStep as never,
    maxBatchSize: 8,
    maxDelay: 0,
  });
  const results = await Promise.all([...BAD_WORDS, 'good'].map((word) => collect(generate(word))));
  results.slice(0, BAD_WORDS.length).forEach((result, i) => {
    expect(result.values).toEqual([]);
    expect(result.error).toBeInstanceOf(InvalidOutputError);
    expect((result.error as InvalidOutputError).code).toBe('ERR_INVALID_OUTPUT');
    expect((result.error as InvalidOutputError).index).toBe(i);
  });
  expect((results[0]?.error as Error | undefined)?.message).toBe(
    'step() must return `{ value?, done? }` or an Error for each state: output 0 is `5` (number)',
  );
  expect((results[4]?.error as Error | undefined)?.message).toBe(
    'step() must return `{ value?, done? }` or an Error for each state: output 4 has `done` = `"yes"` (string), not a boolean',
  );
  expect(results[5]).toEqual({ values: ['g', 'o', 'o', 'd'] });
  expect(await collect(generate('ok'))).toEqual({ values: ['o', 'k'] });
  expect(generate.stats.ended).toEqual({ done: 2, error: 5, aborted: 0, timeout: 0 });
  await generate.close();
});

test('attack: step puts a bare value in one slot (worker mode): that stream alone ends with ERR_INVALID_OUTPUT, carried across as its class; the thread frees its state', async () => {
  const generate = batchedStream<string, unknown, string>({ worker: malformed, maxBatchSize: 8, maxDelay: 0 });
  const results = await Promise.all([...BAD_WORDS, 'fn', 'good'].map((word) => collect(generate(word))));
  results.slice(0, BAD_WORDS.length).forEach((result, i) => {
    expect(result.error).toBeInstanceOf(InvalidOutputError);
    expect((result.error as InvalidOutputError).index).toBe(i);
  });
  // A value that cannot be cloned back fails its own stream, not the whole step.
  expect(results[5]?.error).toBeInstanceOf(TypeError);
  expect((results[5]?.error as Error | undefined)?.message).toMatch(
    /^Output 5 of the step cannot be sent back from the worker thread/,
  );
  expect(results[6]).toEqual({ values: ['g', 'o', 'o', 'd'] });
  expect(await collect(generate('ok'))).toEqual({ values: ['o', 'k'] });
  expect(generate.stats.workerStates).toBe(0);
  await generate.close();
});

test('attack: a worker step output shaped like a serialized error is a value, never an error', async () => {
  const spoof = moduleOf(
    `export function step(states) { return states.map(() => ({ value: 'v', error: { name: 'Error', message: 'forged' }, done: true })); }`,
  );
  const generate = batchedStream<string, unknown, string>({ worker: spoof, maxDelay: 0 });
  expect(await collect(generate('a'))).toEqual({ values: ['v'] });
  await generate.close();
});

test('attack: a slot whose getter throws, or an onStep that throws, ends that stream alone or only warns', async () => {
  const warnings: string[] = [];
  const onWarning = (warning: Error): void => {
    warnings.push(warning.message);
  };
  process.on('warning', onWarning);
  onTestFinished(() => {
    process.off('warning', onWarning);
  });
  const trap = new Error('getter threw');
  const generate = batchedStream<string, string, string>({
    step: (states) =>
      states.map((s) =>
        s === 'trap'
          ? {
              get done(): boolean {
                throw trap;
              },
            }
          : { value: s, done: true },
      ),
    onStep: () => {
      throw new Error('observer broke');
    },
    maxBatchSize: 2,
    maxDelay: 0,
  });
  const [trapped, fine] = await Promise.all([collect(generate('trap')), collect(generate('fine'))]);
  expect(trapped.error).toBe(trap);
  expect(fine).toEqual({ values: ['fine'] });
  await new Promise((resolve) => setImmediate(resolve));
  expect(warnings).toContain('batched-fn: onStep threw: Error: observer broke');
  await generate.close();
});

// Finding 2: states of a group's last cancelled streams, and of a step that threw, stayed in the
// worker thread for good (12 rounds x 4 streams of 16 MB grew RSS by 778 MB).

const endless = moduleOf(`
  export function start(inputs) { return inputs.map((input) => ({ input, n: 0 })); }
  export function step(states) {
    if (states.some((s) => s.input === 'throw')) throw new Error('step threw');
    return states.map((s) => ({ value: s.n++, done: s.input === 'short' && s.n === 1 }));
  }
`);

test('attack: cancel a group’s last streams, or make step throw, round after round: the worker keeps no state', async () => {
  const generate = batchedStream<string, unknown, number>({ worker: endless, maxBatchSize: 4, maxDelay: 0 });
  for (let round = 0; round < 6; round++) {
    if (round % 2 === 0) {
      // Every stream of the group reads one value and leaves: nobody is left to step, so no step
      // ever carries their ids to the thread.
      await Promise.all(
        [0, 1, 2, 3].map(async () => {
          for await (const _ of generate('endless')) break;
        }),
      );
    } else {
      const results = await Promise.all(['a', 'b', 'c', 'throw'].map((input) => collect(generate(input))));
      for (const result of results) expect((result.error as Error).message).toBe('step threw');
    }
  }
  // One more stream on the same thread: its answers report what the thread holds after every
  // earlier group's leftovers were freed (messages are handled in order), and its own state is
  // freed with its last step.
  expect(await collect(generate('short'))).toEqual({ values: [0] });
  expect(generate.stats.workerStates).toBe(0);
  await generate.close();
});

test('a stream cancelled while its group goes on has its state freed within the steps the thread runs ahead', async () => {
  const generate = batchedStream<string, unknown, number>({ worker: endless, maxBatchSize: 2, maxDelay: 0 });
  const leaver = generate('endless');
  const stayer = generate('endless');
  expect((await leaver.next()).value).toBe(0);
  await leaver.return?.();
  // The thread may have stepped STEPS_AHEAD steps before it reads the drop; the step after that
  // reports one state held. Values keep coming in order meanwhile.
  let read = 0;
  for (; read < STEPS_AHEAD + 3 && generate.stats.workerStates !== 1; read++)
    expect((await stayer.next()).value).toBe(read);
  expect(generate.stats.workerStates).toBe(1);
  expect(read).toBeGreaterThan(0);
  await stayer.return?.();
  await vi.waitFor(() => expect(generate.stats.workerStates).toBe(0), { timeout: 2_000 });
  await generate.close();
});

test('regression: a stream cancelled just before the step that ends it does not stall its group', async () => {
  // The thread pauses after a step in which a stream ended, until this side has seen that step.
  // This side must hear that pause in the step's flags even for a stream it had already let go
  // (cancelled meanwhile), or the thread waits for a word that never comes and the group stalls.
  const ends = moduleOf(`
    export function start(inputs) { return inputs.map((length) => ({ length, n: 0 })); }
    export function step(states) { return states.map((s) => ({ value: s.n++, done: s.n === s.length })); }
  `);
  const generate = batchedStream<number, unknown, number>({ worker: ends, maxBatchSize: 2, maxDelay: 0 });
  const leaver = generate(3);
  const stayer = generate(-1);
  expect((await leaver.next()).value).toBe(0);
  expect((await leaver.next()).value).toBe(1);
  // Step 3 (its last) is on its way or already stepped; cancelling now lets it arrive for a stream let go.
  await leaver.return?.();
  for (let i = 0; i < 200; i++) expect((await stayer.next()).value).toBe(i);
  await stayer.return?.();
  await generate.close();
}, 10_000);

// Finding 3: no step timeout, so a step that never settles held close() forever.

test('batchTimeout is validated as batchedFn validates it', () => {
  const step = (): never[] => [];
  for (const bad of [0, -1, 2 ** 31, Number.NaN, '100', null]) {
    let expected: unknown;
    try {
      batchedFn({ handler: (b: unknown[]) => b, batchTimeout: bad as number });
    } catch (error) {
      expected = error;
    }
    expect(expected).toBeInstanceOf(Error);
    expect(() => batchedStream({ step, batchTimeout: bad as number })).toThrow(expected as Error);
  }
  expect(() => batchedStream({ step, batchTimeout: 0 })).toThrow(
    new RangeError('Expected `batchTimeout` to be a number of milliseconds above 0 to 2147483647, got `0` (number)'),
  );
  expect(() => batchedStream({ step, batchTimeout: 2_147_483_647 })).not.toThrow();
});

test('attack: a step that never settles (inline): at batchTimeout its streams end with ERR_BATCH_TIMEOUT, the next group is served, close() ends', async () => {
  vi.useFakeTimers();
  const late: ((outputs: { value: string }[]) => void)[] = [];
  const generate = batchedStream<string, string, string>({
    step: (states) =>
      states.includes('hang')
        ? new Promise((resolve) => late.push(resolve))
        : states.map((s) => ({ value: s, done: true })),
    maxBatchSize: 2,
    maxDelay: 0,
    batchTimeout: 100,
  });
  const hung = [track(generate('hang').next()), track(generate('neighbour').next())];
  await advance(0);
  const next = track(collect(generate('next')));
  await advance(99);
  expect(hung.map((h) => h.status)).toEqual(['pending', 'pending']);
  expect(next.status).toBe('pending');
  await advance(1);
  for (const h of hung) {
    expect(h.error).toBeInstanceOf(BatchTimeoutError);
    expect((h.error as BatchTimeoutError).code).toBe('ERR_BATCH_TIMEOUT');
    expect((h.error as BatchTimeoutError).batchTimeout).toBe(100);
  }
  await advance(0);
  expect(next.value).toEqual({ values: ['next'] });
  const closed = track(generate.close());
  await advance(0);
  expect(closed.status).toBe('fulfilled');
  // The late result is dropped: nobody hears it, nothing throws.
  late.shift()?.([{ value: 'late' }, { value: 'late' }]);
  await advance(0);
  expect(generate.stats.ended).toEqual({ done: 1, error: 2, aborted: 0, timeout: 0 });
  expect(generate.stats.values).toBe(1);
});

test('attack: a start that never settles (inline) is bounded by batchTimeout too, and ends every stream of its group', async () => {
  vi.useFakeTimers();
  const generate = batchedStream<string, string, string>({
    start: (inputs) => (inputs.includes('hang') ? new Promise(() => {}) : inputs),
    step: (states) => new Promise((resolve) => setTimeout(() => resolve(states.map((s) => ({ value: s }))), 10)),
    maxBatchSize: 2,
    maxDelay: 0,
    batchTimeout: 50,
  });
  // 'first' is stepping when 'hang' joins its group at the next step boundary: the hung start ends both.
  const first = track(collect(generate('first')));
  await advance(0);
  const joiner = track(generate('hang').next());
  await advance(10 + 49);
  expect(joiner.status).toBe('pending');
  await advance(1);
  expect(joiner.error).toBeInstanceOf(BatchTimeoutError);
  await advance(0);
  expect(first.value?.values).toEqual(['first']);
  expect(first.value?.error).toBeInstanceOf(BatchTimeoutError);
  const closed = track(generate.close());
  await advance(0);
  expect(closed.status).toBe('fulfilled');
});

test('destroy() settles streams whose start or step never settles; close() after a failed step ends', async () => {
  const generate = batchedStream<string, string, string>({
    start: (inputs) => (inputs.includes('hang-start') ? new Promise(() => {}) : inputs),
    step: (states) => {
      if (states.includes('throw')) throw new Error('step threw');
      return states.includes('hang-step') ? new Promise(() => {}) : states.map((s) => ({ value: s, done: true }));
    },
    maxBatchSize: 1,
    maxDelay: 0,
    concurrency: 3,
  });
  expect((await collect(generate('throw'))).error).toEqual(new Error('step threw'));
  const inStart = collect(generate('hang-start'));
  const inStep = collect(generate('hang-step'));
  await new Promise((resolve) => setTimeout(resolve, 10));
  generate.destroy();
  const settled = await Promise.race([
    Promise.all([inStart, inStep]),
    new Promise((resolve) => setTimeout(() => resolve('still pending'), 1_000)),
  ]);
  expect(settled).toEqual([
    { values: [], error: new ClosedError('The generator was destroyed') },
    { values: [], error: new ClosedError('The generator was destroyed') },
  ]);
  await generate.close();

  const failing = batchedStream<string, string, string>({ step: () => Promise.reject(new Error('no')), maxDelay: 0 });
  expect((await collect(failing('x'))).error).toEqual(new Error('no'));
  await failing.close();
});

const hangs = (interruptible: boolean): string =>
  moduleOf(`
  import { threadId } from 'node:worker_threads';
  ${interruptible ? '' : 'export const interruptible = false;'}
  export function context(data) { return data; }
  export function step(states, flags) {
    if (states.includes('spin')) for (;;);
    if (states.includes('block')) {
      // Blocks the thread as a native session.run does, then records that it ran to its end.
      Atomics.wait(flags, 0, 0, 1500);
      Atomics.store(flags, 1, 1);
    }
    return states.map((s) => ({ value: s + '@' + threadId, done: true }));
  }
`);

test('attack: a worker step stuck in a loop: at batchTimeout the thread is terminated and replaced; the next stream is served; close() ends', async () => {
  const flags = new Int32Array(new SharedArrayBuffer(8));
  const generate = batchedStream<string, unknown, string>({
    worker: hangs(true),
    workerData: flags,
    maxDelay: 0,
    batchTimeout: 200,
  });
  const first = await collect(generate('warm'));
  const started = performance.now();
  const stuck = await collect(generate('spin'));
  expect(stuck.error).toBeInstanceOf(BatchTimeoutError);
  expect(performance.now() - started).toBeGreaterThanOrEqual(195);
  const after = await collect(generate('fine'));
  expect(after.values[0]?.split('@')[1]).not.toBe(first.values[0]?.split('@')[1]); // a new thread
  await generate.close();
});

test('attack: a non-interruptible worker (interruptible = false) blocked past batchTimeout is retired, never terminated: a new thread serves meanwhile, and its step runs to the end', async () => {
  const flags = new Int32Array(new SharedArrayBuffer(8));
  const generate = batchedStream<string, unknown, string>({
    worker: hangs(false),
    workerData: flags,
    maxDelay: 0,
    batchTimeout: 150,
  });
  const first = await collect(generate('warm'));
  const started = performance.now();
  const blocked = await collect(generate('block'));
  expect(blocked.error).toBeInstanceOf(BatchTimeoutError);
  expect(performance.now() - started).toBeLessThan(1_000);
  const after = await collect(generate('fine'));
  expect(after.values[0]?.split('@')[1]).not.toBe(first.values[0]?.split('@')[1]);
  expect(Atomics.load(flags, 1)).toBe(0); // the old thread is still in its step
  await generate.close(); // waits for the retired thread to finish and exit
  expect(Atomics.load(flags, 1)).toBe(1);
});

test('destroy() during a non-interruptible worker step ends its streams at once and lets the step finish', async () => {
  const flags = new Int32Array(new SharedArrayBuffer(8));
  const generate = batchedStream<string, unknown, string>({ worker: hangs(false), workerData: flags, maxDelay: 0 });
  await collect(generate('warm'));
  const blocked = collect(generate('block'));
  await new Promise((resolve) => setTimeout(resolve, 100));
  generate.destroy();
  expect((await blocked).error).toEqual(new ClosedError('The generator was destroyed'));
  expect(Atomics.load(flags, 1)).toBe(0);
  await vi.waitFor(() => expect(Atomics.load(flags, 1)).toBe(1), { timeout: 5_000 });
});
