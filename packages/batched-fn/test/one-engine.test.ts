import { expect, test } from 'vitest';
import { batchedFn, batchedStream, WorkerExitedError } from 'batched-fn';
import { PendingCalls } from 'batched-fn/adapter';
import { collect } from './stream-helpers.js';

const moduleOf = (source: string): string => `data:text/javascript,${encodeURIComponent(source)}`;

// A stream module whose thread dies in every prefill.
const crashing = moduleOf(`
  export function start() { process.exit(7); }
  export function step(states) { return states.map(() => ({ done: true })); }
`);

test('a stream worker that crashes in every start backs off as a batchedFn worker does (one pool): five crashes take at least 750 ms', async () => {
  const generate = batchedStream<string, unknown, string>({ worker: crashing, maxBatchSize: 1, maxDelay: 0 });
  const started = performance.now();
  const results = await Promise.all(Array.from({ length: 5 }, () => collect(generate('x'))));
  const elapsed = performance.now() - started;
  for (const result of results) expect(result.error).toBeInstanceOf(WorkerExitedError);
  // Restarts wait 50, 100, 200, 400 ms before the fifth group can start.
  expect(elapsed).toBeGreaterThan(700);
  await generate.close();
});

// One module for both kinds: the one worker entry loads it and builds its context per thread.
const both = moduleOf(`
  import { threadId } from 'node:worker_threads';
  let built = 0;
  export function context(data) { built++; return { tag: data.tag }; }
  export function handler(batch, ctx) { return batch.map((x) => ctx.tag + x + '#' + built); }
  export function start(inputs) { return inputs.map((n) => ({ left: n })); }
  export function step(states, ctx) { return states.map((s) => ({ value: ctx.tag + s.left + '#' + built, done: --s.left === 0 })); }
`);

test('one worker entry serves a batch handler and a stream step from the same module, each context built once per thread', async () => {
  const predict = batchedFn<string, string>({ worker: both, workerData: { tag: 'b:' }, maxDelay: 0 });
  const generate = batchedStream<number, unknown, string>({ worker: both, workerData: { tag: 's:' }, maxDelay: 0 });
  expect(await Promise.all([predict('x'), predict('y')])).toEqual(['b:x#1', 'b:y#1']);
  expect(await collect(generate(2))).toEqual({ values: ['s:2#1', 's:1#1'] });
  expect(await predict('z')).toBe('b:z#1');
  await Promise.all([predict.close(), generate.close()]);
});

test('every front counts the two cancel keys alike: aborted, and ERR_TIMEOUT (a stream reads them as ended.aborted and ended.timeout)', async () => {
  const predict = batchedFn<number, number>({ handler: async (batch) => batch, maxDelay: 10_000 });
  const controller = new AbortController();
  const aborted = predict(1, { signal: controller.signal }).catch((e: unknown) => e);
  const timedOut = predict(2, { timeout: 5 }).catch((e: unknown) => e);
  controller.abort(new Error('stop'));
  expect(((await timedOut) as { code: string }).code).toBe('ERR_TIMEOUT');
  expect(((await aborted) as Error).message).toBe('stop');
  expect(predict.stats.failures).toEqual({ aborted: 1, ERR_TIMEOUT: 1 });
  predict.destroy();

  const released: string[] = [];
  const pending = new PendingCalls<number>((id, _note, key) => released.push(`${id}:${key}`));
  const remote = new AbortController();
  const a = pending.open('a', { signal: remote.signal }, 1, () => {}).catch((e: unknown) => e);
  const b = pending.open('b', { timeout: 5 }, 1, () => {}).catch((e: unknown) => e);
  remote.abort(new Error('stop'));
  expect(((await b) as { code: string }).code).toBe('ERR_TIMEOUT');
  expect(((await a) as Error).message).toBe('stop');
  expect(
    pending.stats.snapshot({
      queued: 0,
      queuedRows: 0,
      inFlight: 0,
      inFlightItems: 0,
      workers: [],
      costModel: undefined,
    }).failures,
  ).toEqual({ aborted: 1, ERR_TIMEOUT: 1 });
  expect(released).toEqual(['a:aborted', 'b:ERR_TIMEOUT']);

  const generate = batchedStream<number, number, number>({
    step: (states) => states.map((s) => ({ value: s })),
    maxBatchSize: 1,
    maxDelay: 0,
  });
  const blocker = generate(0);
  await blocker.next();
  const streamAbort = new AbortController();
  const waiting = collect(generate(1, { signal: streamAbort.signal }));
  const expiring = collect(generate(2, { timeout: 5 }));
  streamAbort.abort(new Error('stop'));
  expect(((await expiring).error as { code: string }).code).toBe('ERR_TIMEOUT');
  expect(((await waiting).error as Error).message).toBe('stop');
  await blocker.return?.();
  expect(generate.stats.ended).toEqual({ done: 0, error: 0, aborted: 2, timeout: 1 });
  await generate.close();
});
