import { expect, test } from 'vitest';
import { batchedFn, WorkerExitedError } from 'batched-fn';

const faulty = new URL('./fixtures/faulty.worker.mjs', import.meta.url);

test('a worker that exits mid-batch: its callers get ERR_WORKER_EXITED, queued calls still run, later calls succeed', async () => {
  const predict = batchedFn<string, string>({ worker: faulty, maxBatchSize: 2, maxDelay: 0 });
  await predict.ready();
  const crashed = [predict('exit'), predict('a')];
  const queued = [predict('b'), predict('c'), predict('d')];
  const results = await Promise.allSettled([...crashed, ...queued]);
  expect(results.slice(0, 2).map((r) => r.status)).toEqual(['rejected', 'rejected']);
  for (const r of results.slice(0, 2)) {
    const error = (r as PromiseRejectedResult).reason as WorkerExitedError;
    expect(error).toBeInstanceOf(WorkerExitedError);
    expect(error.code).toBe('ERR_WORKER_EXITED');
    expect(error.exitCode).toBe(7);
  }
  expect(results.slice(2)).toEqual([
    { status: 'fulfilled', value: 'b' },
    { status: 'fulfilled', value: 'c' },
    { status: 'fulfilled', value: 'd' },
  ]);
  expect(await predict('e')).toBe('e');
  const [worker] = predict.stats.workers;
  expect(worker?.restarts).toBe(1);
  expect(predict.stats.failures).toEqual({ ERR_WORKER_EXITED: 2 });
  await predict.close();
});

test('an uncaught exception in the worker is the exit cause', async () => {
  const predict = batchedFn<string, string>({ worker: faulty, maxDelay: 0 });
  const error = (await predict('uncaught').catch((e: unknown) => e)) as WorkerExitedError;
  expect(error).toBeInstanceOf(WorkerExitedError);
  expect((error.cause as Error).message).toBe('uncaught in worker');
  expect(await predict('ok')).toBe('ok');
  await predict.close();
});

test('a worker that runs out of memory is restarted like any crash', async () => {
  const predict = batchedFn<string, string>({
    worker: faulty,
    maxDelay: 0,
    resourceLimits: { maxOldGenerationSizeMb: 32, maxYoungGenerationSizeMb: 8 },
  });
  const error = (await predict('oom').catch((e: unknown) => e)) as WorkerExitedError;
  expect(error.code).toBe('ERR_WORKER_EXITED');
  expect((error.cause as { code?: string }).code).toBe('ERR_WORKER_OUT_OF_MEMORY');
  expect(await predict('fine')).toBe('fine');
  await predict.close();
});

test('a crash loop backs off instead of spinning', async () => {
  const predict = batchedFn<string, string>({ worker: faulty, maxBatchSize: 1, maxDelay: 0 });
  const started = performance.now();
  const results = await Promise.allSettled(Array.from({ length: 5 }, () => predict('exit')));
  const elapsed = performance.now() - started;
  expect(results.every((r) => r.status === 'rejected')).toBe(true);
  // Restarts wait 50, 100, 200, 400 ms: at least 750 ms for five crashes in a row.
  expect(elapsed).toBeGreaterThan(700);
  expect(predict.stats.workers[0]?.restarts).toBe(5);
  await predict.close();
});

test('handler errors keep their name, message and code, and the worker keeps serving', async () => {
  const predict = batchedFn<string, string>({ worker: faulty, maxBatchSize: 2, maxDelay: 0 });
  const results = await Promise.allSettled([predict('throw'), predict('x')]);
  for (const r of results) {
    const error = (r as PromiseRejectedResult).reason as Error & { code: string };
    expect(error.name).toBe('RangeError');
    expect(error.message).toBe('handler threw');
    expect(error.code).toBe('E_MODEL');
  }
  expect(await predict('y')).toBe('y');
  expect(predict.stats.workers[0]?.restarts).toBe(0);
  await predict.close();
});

test('an Error in one output slot rejects only that caller', async () => {
  const predict = batchedFn<string, string>({ worker: faulty, maxBatchSize: 3, maxDelay: 0 });
  const results = await Promise.allSettled([predict('a'), predict('slot-error'), predict('c')]);
  expect(results[0]).toEqual({ status: 'fulfilled', value: 'a' });
  expect(results[2]).toEqual({ status: 'fulfilled', value: 'c' });
  const error = (results[1] as PromiseRejectedResult).reason as Error & { code: string };
  expect([error.name, error.message, error.code]).toEqual(['TypeError', 'bad slot', 'E_SLOT']);
  await predict.close();
});

test('a wrong number of outputs from a worker is ERR_BATCH_SIZE_MISMATCH', async () => {
  const predict = batchedFn<string, string>({ worker: faulty, maxBatchSize: 2, maxDelay: 0 });
  const results = await Promise.allSettled([predict('wrong-count'), predict('b')]);
  for (const r of results)
    expect((r as PromiseRejectedResult).reason).toMatchObject({
      code: 'ERR_BATCH_SIZE_MISMATCH',
      expected: 2,
      received: 1,
    });
  await predict.close();
});

test('an input that cannot be sent to a worker rejects only its own caller', async () => {
  const predict = batchedFn<unknown, unknown>({ worker: faulty, maxBatchSize: 3, maxDelay: 0 });
  const results = await Promise.allSettled([predict('a'), predict(() => 'a function'), predict('c')]);
  expect(results[0]).toEqual({ status: 'fulfilled', value: 'a' });
  expect(results[2]).toEqual({ status: 'fulfilled', value: 'c' });
  expect(results[1]?.status).toBe('rejected');
  expect(((results[1] as PromiseRejectedResult).reason as Error).message).toMatch(
    /^Input 1 of the batch cannot be sent to a worker thread/,
  );
  await predict.close();
});
