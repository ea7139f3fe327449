import { expect, test } from 'vitest';
import { batchedStream, WorkerExitedError } from 'batched-fn';
import { collect } from './stream-helpers.js';

const module = new URL('./fixtures/counter.stream.mjs', import.meta.url);

test('worker mode: start and step run in the worker, where the states stay; values stream back', async () => {
  const generate = batchedStream<{ word: string }, unknown, string>({
    worker: module,
    workerData: { prefix: '>' },
    maxBatchSize: 2,
    maxDelay: 0,
  });
  const results = await Promise.all(['abc', 'de', 'f'].map((word) => collect(generate({ word }))));
  expect(results.map((r) => r.values)).toEqual([
    ['>a@same', '>b@same', '>c@same'],
    ['>d@same', '>e@same'],
    ['>f@same'],
  ]);
  expect(generate.stats.steps).toBe(3);
  await generate.close();
});

test('worker mode: a worker that dies ends its group with ERR_WORKER_EXITED, and the next call gets a new thread', async () => {
  const generate = batchedStream<{ word: string; crash?: boolean }, unknown, string>({
    worker: module,
    maxBatchSize: 2,
    maxDelay: 0,
  });
  const [crashed, neighbour] = await Promise.all([
    collect(generate({ word: 'xyz', crash: true })),
    collect(generate({ word: 'uvw' })),
  ]);
  expect(crashed.values).toEqual(['x@same']);
  expect(crashed.error).toBeInstanceOf(WorkerExitedError);
  expect(neighbour.error).toBeInstanceOf(WorkerExitedError);
  expect((await collect(generate({ word: 'ok' }))).values).toEqual(['o@same', 'k@same']);
  await generate.close();
});

test('worker mode: options are checked (exactly one of step or worker)', () => {
  expect(() => batchedStream({ worker: module, step: () => [] } as never)).toThrow(
    new TypeError('Expected exactly one of `step` (run inline) or `worker` (run in worker threads)'),
  );
  expect(() => batchedStream({ worker: module, start: () => [] } as never)).toThrow(
    new TypeError('In worker mode, `start` and `context` come from the worker module'),
  );
});

test('worker mode: idle threads never hold the process, yet close() is awaited to the end', async () => {
  const { execFileSync } = await import('node:child_process');
  // Given on the command line, not written to a file; run from the package's folder, where 'batched-fn' resolves.
  // CommonJS with import(), since `--input-type=module` would be inherited by the worker threads and refused there.
  const script = `(async () => {
    const { batchedStream } = await import('batched-fn');
    const generate = batchedStream({ worker: new URL(${JSON.stringify(module.href)}), maxDelay: 0 });
    for await (const _ of generate({ word: 'hi' }));
    await generate.close();
    console.log('closed');
  })();`;
  const cwd = new URL('..', import.meta.url);
  const out = execFileSync(process.execPath, ['--eval', script], { cwd, encoding: 'utf8', timeout: 20_000 });
  expect(out.trim()).toBe('closed');
});

const moduleOf = (source: string): string => `data:text/javascript,${encodeURIComponent(source)}`;

test('worker mode: ready() starts the threads and builds their context now, and reports its failure', async () => {
  const failing = batchedStream({
    worker: moduleOf(
      "export function context() { throw new Error('no weights'); }\n" +
        'export const step = (states) => states.map(() => ({ value: 1, done: true }));',
    ),
  });
  await expect(failing.ready()).rejects.toThrow('no weights');
  await failing.close();
  // A context that marks shared memory when it is built: marked before any stream, once ready() has resolved.
  const mark = new Int32Array(new SharedArrayBuffer(4));
  const ready = batchedStream({
    worker: moduleOf(
      'export function context(mark) { Atomics.store(mark, 0, 1); }\n' +
        'export const step = (states) => states.map(() => ({ value: 1, done: true }));',
    ),
    workerData: mark,
  });
  await ready.ready();
  expect(Atomics.load(mark, 0)).toBe(1);
  expect(await collect(ready(1))).toEqual({ values: [1] });
  await ready.close();
});

test('worker mode: an input that cannot be sent (a function) ends its own stream; the others of its start run', async () => {
  const generate = batchedStream<unknown, unknown>({
    worker: moduleOf(
      'export const start = (inputs) => inputs.map((input) => ({ input }));\n' +
        'export const step = (states) => states.map((s) => ({ value: s.input.n, done: true }));',
    ),
    maxBatchSize: 3,
    maxDelay: 5_000,
  });
  try {
    const results = await Promise.all([
      collect(generate({ n: 1 })),
      collect(generate({ n: 2, callback: () => {} })),
      collect(generate({ n: 3 })),
    ]);
    expect(results[0]).toEqual({ values: [1] });
    expect(results[2]).toEqual({ values: [3] });
    const unsent = results[1] as { values: unknown[]; error?: unknown };
    expect(unsent.values).toEqual([]);
    expect(unsent.error).toBeInstanceOf(TypeError);
    expect((unsent.error as Error).message).toMatch(/^This stream's input cannot be sent to a worker thread: /);
    expect(generate.stats.ended).toEqual({ done: 2, error: 1, aborted: 0, timeout: 0 });
    // A start of nothing but such inputs ends its streams, and the group is let go: the next one runs.
    // (Three calls fill a batch, so none waits for the 5 s window.)
    const unsendable = await Promise.all([4, 5, 6].map((n) => collect(generate({ n, callback: () => {} }))));
    for (const { error } of unsendable) expect(error).toBeInstanceOf(TypeError);
    const next = await Promise.all([7, 8, 9].map((n) => collect(generate({ n }))));
    expect(next).toEqual([{ values: [7] }, { values: [8] }, { values: [9] }]);
    expect(generate.stats.ended).toEqual({ done: 5, error: 4, aborted: 0, timeout: 0 });
  } finally {
    await generate.close();
  }
});
