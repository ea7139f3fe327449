// Attacks on the worker-mode stream fixes of ready() (threads started, contexts built) and of
// inputs that cannot be cloned to the thread (only their own stream ends): races with close() and
// destroy(), joiners at a step boundary, moved buffers beside an uncloneable input, exact counts.
import { expect, test } from 'vitest';
import { batchedFn, batchedStream, move } from 'batched-fn';
import { collect } from './stream-helpers.js';

const moduleOf = (source: string): string => `data:text/javascript,${encodeURIComponent(source)}`;

/** Resolves once `ok()` holds, checking every few ms; rejects after `ms` (a hang fails instead of stalling). */
async function until(ok: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error('condition never held');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** What `promise` has done by now (after a few turns of the event loop). */
async function settledState(promise: Promise<unknown>): Promise<'resolved' | 'rejected' | 'pending'> {
  let state: 'resolved' | 'rejected' | 'pending' = 'pending';
  promise.then(
    () => {
      state = 'resolved';
    },
    () => {
      state = 'rejected';
    },
  );
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
  return state;
}

// --- ready() -------------------------------------------------------------------------------------

/** A context that marks shared memory (it has started: the thread's `loaded` is posted), then takes 200 ms. */
const slowContext = (interruptible: boolean): string =>
  moduleOf(`
    ${interruptible ? '' : 'export const interruptible = false;'}
    export async function context(mark) {
      Atomics.store(mark, 0, 1);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    export const step = (states) => states.map(() => ({ value: 1, done: true }));
    export const handler = (batch) => batch;
  `);

test.each(['stream', 'batchedFn'] as const)(
  'attack: destroy() while ready() builds the context of a non-interruptible worker settles ready() (%s)',
  async (kind) => {
    const mark = new Int32Array(new SharedArrayBuffer(4));
    const options = { worker: slowContext(false), workerData: mark };
    const target = kind === 'stream' ? batchedStream(options) : batchedFn(options);
    const ready = target.ready();
    ready.catch(() => {});
    // The context has started, so the thread's `loaded` (interruptible: false) has been posted; let it be read.
    await until(() => Atomics.load(mark, 0) === 1);
    await new Promise((resolve) => setTimeout(resolve, 20));
    target.destroy(new Error('going away'));
    // close() after destroy() resolves once the retired thread has exited: nothing will answer ready() later.
    await target.close();
    expect(await settledState(ready)).toBe('rejected');
  },
);

test('attack: destroy(reason) while ready() builds the context rejects ready() with that reason, as every pending call', async () => {
  const mark = new Int32Array(new SharedArrayBuffer(4));
  const generate = batchedStream({ worker: slowContext(true), workerData: mark });
  const ready = generate.ready();
  ready.catch(() => {});
  await until(() => Atomics.load(mark, 0) === 1);
  const reason = new Error('going away');
  generate.destroy(reason);
  await generate.close();
  await expect(ready).rejects.toBe(reason);
});

test('attack: ready() waiting on a non-interruptible thread that a batchTimeout retires settles without close()', async () => {
  // The thread's start blocks (Atomics.wait) past batchTimeout: the group ends with ERR_BATCH_TIMEOUT, and the
  // thread is retired (never terminated) for a new one. ready() was asked of the blocked thread meanwhile.
  const shared = new Int32Array(new SharedArrayBuffer(12));
  const generate = batchedStream<number, unknown, number>({
    worker: moduleOf(`
      export const interruptible = false;
      export function start(inputs, context) {
        const shared = context;
        Atomics.store(shared, 0, 1);
        Atomics.wait(shared, 1, 0);
        Atomics.store(shared, 2, 1);
        return inputs;
      }
      export const context = (shared) => shared;
      export const step = (states) => states.map((n) => ({ value: n, done: true }));
    `),
    workerData: shared,
    batchTimeout: 100,
    maxDelay: 0,
  });
  try {
    const blocked = collect(generate(1));
    await until(() => Atomics.load(shared, 0) === 1);
    const ready = generate.ready();
    ready.catch(() => {});
    expect(((await blocked).error as { code?: string }).code).toBe('ERR_BATCH_TIMEOUT');
    // The retired thread returns from its start and reads the init it was sent; the slot's new thread runs.
    Atomics.store(shared, 1, 1);
    Atomics.notify(shared, 1);
    await until(() => Atomics.load(shared, 2) === 1);
    const late = new Promise<'pending'>((resolve) => setTimeout(() => resolve('pending'), 5_000).unref());
    expect(
      await Promise.race([
        ready.then(
          () => 'resolved',
          () => 'rejected',
        ),
        late,
      ]),
    ).not.toBe('pending');
  } finally {
    await generate.close();
  }
});

test('ready() twice, and with close() at once: both settle, the context is built once per thread, close() does not hang', async () => {
  const built = new Int32Array(new SharedArrayBuffer(4));
  const generate = batchedStream({
    worker: moduleOf(`
      export async function context(built) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        Atomics.add(built, 0, 1);
      }
      export const step = (states) => states.map(() => ({ value: 1, done: true }));
    `),
    workerData: built,
    workers: 2,
  });
  const both = Promise.all([generate.ready(), generate.ready()]);
  const closed = generate.close();
  await both;
  await closed;
  expect(Atomics.load(built, 0)).toBe(2);
  await expect(generate.ready()).rejects.toMatchObject({ code: 'ERR_CLOSED' });
});

test('ready() whose context fails is retried by the next stream (as batchedFn), and ready() then resolves', async () => {
  const attempts = new Int32Array(new SharedArrayBuffer(4));
  const generate = batchedStream<number, unknown, number>({
    worker: moduleOf(`
      export function context(attempts) {
        if (Atomics.add(attempts, 0, 1) === 0) throw new Error('weights not there yet');
        return 40;
      }
      export const step = (states, context) => states.map((n) => ({ value: n + context, done: true }));
    `),
    workerData: attempts,
    maxDelay: 0,
  });
  try {
    await expect(generate.ready()).rejects.toThrow('weights not there yet');
    expect(await collect(generate(2))).toEqual({ values: [42] });
    await generate.ready();
    expect(Atomics.load(attempts, 0)).toBe(2);
    expect(generate.stats.ended).toEqual({ done: 1, error: 0, aborted: 0, timeout: 0 });
  } finally {
    await generate.close();
  }
});

test('ready() after the thread died starts a new one at once and builds its context; streams run on it', async () => {
  const built = new Int32Array(new SharedArrayBuffer(4));
  const generate = batchedStream<number, unknown, number>({
    worker: moduleOf(`
      export function context(built) { Atomics.add(built, 0, 1); }
      export const step = (states) => states.map((n) => {
        if (n < 0) process.exit(3);
        return { value: n, done: true };
      });
    `),
    workerData: built,
    maxDelay: 0,
  });
  try {
    const crashed = await collect(generate(-1));
    expect((crashed.error as { code?: string }).code).toBe('ERR_WORKER_EXITED');
    await generate.ready();
    expect(Atomics.load(built, 0)).toBe(2);
    expect(await collect(generate(5))).toEqual({ values: [5] });
    expect(Atomics.load(built, 0)).toBe(2);
    expect(generate.stats.workerStates).toBe(0);
  } finally {
    await generate.close();
  }
});

// --- inputs that cannot be cloned to the thread ----------------------------------------------------

interface Input {
  tag: string;
  /** Steps before it is done; it never is when absent and `forever`. */
  length?: number;
  forever?: boolean;
  bytes?: Uint8Array;
  fn?: unknown;
}

/** Each stream yields `tag` (with its bytes, when it has some) `length` times, or forever. */
const tags = moduleOf(`
  export const start = (inputs) => inputs.map((input) => ({ input, n: 0 }));
  export const step = (states) => states.map((s) => {
    const { tag, bytes, forever, length = 1 } = s.input;
    s.n++;
    const value = bytes === undefined ? tag : tag + '=' + Array.from(bytes).join(',');
    return { value, done: !forever && s.n >= length };
  });
`);

const unsendable = /^This stream's input cannot be sent to a worker thread: /;

/** The message of a collected stream's error ('' when it has none). */
const messageOf = (result: { error?: unknown } | undefined): string =>
  result?.error instanceof Error ? result.error.message : '';

test('a moved buffer beside an uncloneable input: the good stream gets its bytes (transferred), the bad one keeps its buffer', async () => {
  const generate = batchedStream<Input, unknown, string>({ worker: tags, maxBatchSize: 3, maxDelay: 60_000 });
  try {
    const good = move({ tag: 'A', bytes: new Uint8Array([1, 2, 3]) });
    const badBytes = new Uint8Array([9, 9]);
    const bad = move({ tag: 'B', bytes: badBytes, fn: () => {} });
    const results = await Promise.all([
      collect(generate(good)),
      collect(generate(bad)),
      collect(generate({ tag: 'C' })),
    ]);
    expect(results[0]).toEqual({ values: ['A=1,2,3'] });
    expect(results[2]).toEqual({ values: ['C'] });
    expect(results[1]?.values).toEqual([]);
    expect(results[1]?.error).toBeInstanceOf(TypeError);
    expect(messageOf(results[1])).toMatch(unsendable);
    // The good one was moved: its buffer went to the thread. The bad one was never sent: its buffer is still here.
    expect(good.bytes.byteLength).toBe(0);
    expect(badBytes.byteLength).toBe(2);
    expect(Array.from(badBytes)).toEqual([9, 9]);
    expect(generate.stats.ended).toEqual({ done: 2, error: 1, aborted: 0, timeout: 0 });
  } finally {
    await generate.close();
  }
});

test.each(['stream', 'batchedFn'] as const)(
  "each uncloneable input's error names its own culprit, not its neighbour's (%s)",
  async (kind) => {
    const inputs: Input[] = [{ tag: 'A', fn: function alpha() {} }, { tag: 'B', fn: Symbol('beta') }, { tag: 'C' }];
    let errors: unknown[];
    if (kind === 'stream') {
      const generate = batchedStream<Input, unknown, string>({ worker: tags, maxBatchSize: 3, maxDelay: 60_000 });
      const results = await Promise.all(inputs.map((input) => collect(generate(input))));
      await generate.close();
      expect(results[2]).toEqual({ values: ['C'] });
      errors = results.map((r) => r.error);
    } else {
      const predict = batchedFn<Input, string>({
        worker: moduleOf('export const handler = (batch) => batch.map((input) => input.tag);'),
        maxBatchSize: 3,
        maxDelay: 60_000,
      });
      const results = await Promise.allSettled(inputs.map((input) => predict(input)));
      await predict.close();
      expect(results[2]).toEqual({ status: 'fulfilled', value: 'C' });
      errors = results.map((r) => (r.status === 'rejected' ? r.reason : undefined));
    }
    expect((errors[0] as Error).message).toMatch(/alpha/);
    // B's input holds no function: its error must not blame A's.
    expect((errors[1] as Error).message).toMatch(/beta/);
    expect((errors[1] as Error).message).not.toMatch(/alpha/);
  },
);

/** A continuous group running `forever` streams (first value read), with room `room` left; concurrency 1. */
async function runningGroup(maxBatchSize: number, running: number) {
  const generate = batchedStream<Input, unknown, string>({ worker: tags, maxBatchSize, maxDelay: 0, workers: 1 });
  const streams = Array.from({ length: running }, (_, i) => generate({ tag: `R${i}`, forever: true }));
  for (const s of streams) expect((await s.next()).value).toMatch(/^R\d$/);
  return { generate, streams };
}

test('joiners at a step boundary, some uncloneable: the bad ones end with a TypeError, the good one runs in the group', async () => {
  const { generate, streams } = await runningGroup(4, 1);
  try {
    const joiners = await Promise.all([
      collect(generate({ tag: 'B', fn: () => {} })),
      collect(generate({ tag: 'C', length: 2 })),
      collect(generate({ tag: 'D', fn: () => {} })),
    ]);
    expect(joiners[1]).toEqual({ values: ['C', 'C'] });
    for (const j of [joiners[0], joiners[2]]) {
      expect(j?.values).toEqual([]);
      expect(j?.error).toBeInstanceOf(TypeError);
      expect(messageOf(j)).toMatch(unsendable);
    }
    // They joined the running group (one thread, leased to it): no second group ran meanwhile.
    expect(generate.stats.active).toBe(1);
    await streams[0]?.return?.();
    expect(generate.stats.ended).toEqual({ done: 1, error: 2, aborted: 1, timeout: 0 });
    await until(() => generate.stats.workerStates === 0);
  } finally {
    await generate.close();
  }
});

test('every joiner uncloneable mid-run: they end, the group runs on; then the next stream runs', async () => {
  const { generate, streams } = await runningGroup(4, 1);
  try {
    const joiners = await Promise.all([
      collect(generate({ tag: 'B', fn: () => {} })),
      collect(generate({ tag: 'D', fn: () => {} })),
    ]);
    for (const j of joiners) expect(j.error).toBeInstanceOf(TypeError);
    const more = await streams[0]?.next();
    expect(more?.value).toBe('R0');
    await streams[0]?.return?.();
    expect(await collect(generate({ tag: 'E' }))).toEqual({ values: ['E'] });
    expect(generate.stats.ended).toEqual({ done: 1, error: 2, aborted: 1, timeout: 0 });
    await until(() => generate.stats.workerStates === 0);
  } finally {
    await generate.close();
  }
});

/** Like `tags`, but a start with a `bad` input throws (in the thread, or inline). */
const tagsStart = `
  export const start = (inputs) => {
    if (inputs.some((input) => input.bad)) throw new Error('bad start');
    return inputs.map((input) => ({ input, n: 0 }));
  };
  export const step = (states) => states.map((s) => {
    const { tag, forever, length = 1 } = s.input;
    s.n++;
    return { value: tag, done: !forever && s.n >= length };
  });
`;

test.each([
  ['worker, inputs that cannot be cloned', 'worker', { fn: () => {} }],
  ['worker, a start that throws in the thread', 'worker', { bad: true }],
  ['inline, a start that throws', 'inline', { bad: true }],
] as const)(
  'attack: joiners that fail to start and fill the room as the group empties do not leave a good waiter to a whole maxDelay (%s)',
  async (_, mode, badPart) => {
    // Two running streams fill the group; two bad ones and a good one wait. Both running ones are
    // let go: at that boundary the two bad ones take the room and end, and the group is empty. Were
    // they good, the good waiter would join when one of them ended; it must not be left to the 60 s
    // window of a new group's first batch.
    type In = Input & { bad?: boolean };
    const options = { maxBatchSize: 2, maxDelay: 60_000, workers: 1 };
    const generate =
      mode === 'worker'
        ? batchedStream<In, unknown, string>({ worker: moduleOf(tagsStart), ...options })
        : batchedStream<In, { input: In; n: number }, string>({
            start: (inputs) => {
              if (inputs.some((input) => input.bad)) throw new Error('bad start');
              return inputs.map((input) => ({ input, n: 0 }));
            },
            step: (states) =>
              states.map((s) => {
                s.n++;
                return { value: s.input.tag, done: !s.input.forever && s.n >= (s.input.length ?? 1) };
              }),
            ...options,
          });
    try {
      const running = [generate({ tag: 'R0', forever: true }), generate({ tag: 'R1', forever: true })];
      for (const s of running) expect((await s.next()).value).toMatch(/^R\d$/);
      const bad = [generate({ tag: 'B1', ...badPart }), generate({ tag: 'B2', ...badPart })].map(collect);
      const good = collect(generate({ tag: 'C' }));
      for (const s of running) await s.return?.();
      for (const { error } of await Promise.all(bad)) expect(error).toBeInstanceOf(Error);
      const late = new Promise<'late'>((resolve) => setTimeout(() => resolve('late'), 5_000).unref());
      expect(await Promise.race([good, late])).toEqual({ values: ['C'] });
    } finally {
      generate.destroy();
      await generate.close();
    }
  },
);

test('a cancelled stream among uncloneable ones of a start: counted once as aborted; the good one runs', async () => {
  const generate = batchedStream<Input, unknown, string>({ worker: tags, maxBatchSize: 4, maxDelay: 60_000 });
  try {
    const abort = new AbortController();
    const cancelled = collect(generate({ tag: 'X' }, { signal: abort.signal }));
    const bad = collect(generate({ tag: 'B', fn: () => {} }));
    const good = collect(generate({ tag: 'C' }));
    abort.abort(new Error('no longer wanted'));
    // The batch of four is filled now, without the cancelled one: it left the queue.
    const bad2 = collect(generate({ tag: 'B2', fn: () => {} }));
    const fourth = collect(generate({ tag: 'D' }));
    const results = await Promise.all([cancelled, bad, good, bad2, fourth]);
    expect(results[0]?.values).toEqual([]);
    expect(messageOf(results[1])).toMatch(unsendable);
    expect(results[2]).toEqual({ values: ['C'] });
    expect(messageOf(results[3])).toMatch(unsendable);
    expect(results[4]).toEqual({ values: ['D'] });
    expect(generate.stats.ended).toEqual({ done: 2, error: 2, aborted: 1, timeout: 0 });
    await until(() => generate.stats.workerStates === 0);
  } finally {
    await generate.close();
  }
});

test('inline mode runs the same function-holding inputs (nothing is cloned): the difference is worker-only', async () => {
  const generate = batchedStream<Input, Input, string>({
    step: (states) => states.map((s) => ({ value: s.tag, done: true })),
    maxBatchSize: 2,
    maxDelay: 60_000,
  });
  try {
    const results = await Promise.all([collect(generate({ tag: 'A', fn: () => {} })), collect(generate({ tag: 'B' }))]);
    expect(results).toEqual([{ values: ['A'] }, { values: ['B'] }]);
  } finally {
    await generate.close();
  }
});

test('a start with a failing context and an uncloneable input: the bad one gets its TypeError, the good ones the context error', async () => {
  const generate = batchedStream<Input, unknown, string>({
    worker: moduleOf(`
      export function context() { throw new Error('no weights'); }
      export const step = (states) => states.map(() => ({ value: 1, done: true }));
    `),
    maxBatchSize: 2,
    maxDelay: 60_000,
  });
  try {
    const [bad, good] = await Promise.all([
      collect(generate({ tag: 'B', fn: () => {} })),
      collect(generate({ tag: 'C' })),
    ]);
    expect((bad.error as Error).message).toMatch(unsendable);
    expect((good.error as Error).message).toBe('no weights');
    expect(generate.stats.ended).toEqual({ done: 0, error: 2, aborted: 0, timeout: 0 });
  } finally {
    await generate.close();
  }
});

test('a start returning the wrong number of states: ERR_BATCH_SIZE_MISMATCH with expected and received, as inline', async () => {
  const generate = batchedStream<number, unknown>({
    worker: moduleOf(`
      export const start = () => [0, 0, 0];
      export const step = (states) => states.map(() => ({ value: 1, done: true }));
    `),
    maxBatchSize: 2,
    maxDelay: 60_000,
  });
  try {
    const results = await Promise.all([collect(generate(1)), collect(generate(2))]);
    for (const { error } of results)
      expect(error).toMatchObject({ code: 'ERR_BATCH_SIZE_MISMATCH', expected: 2, received: 3 });
    await until(() => generate.stats.workerStates === 0);
  } finally {
    await generate.close();
  }
});
