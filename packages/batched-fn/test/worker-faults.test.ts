import { MessageChannel } from 'node:worker_threads';
import { expect, test } from 'vitest';
import { batchedFn, move } from 'batched-fn';

const rogue = new URL('./fixtures/rogue.worker.mjs', import.meta.url);

/** Whether this Node refuses, at postMessage, a transfer list that names a detached buffer. */
function postRefusesDetached(): boolean {
  const { port1, port2 } = new MessageChannel();
  const probe = new ArrayBuffer(1);
  structuredClone(probe, { transfer: [probe] });
  try {
    port1.postMessage(probe, [probe]);
    return false;
  } catch {
    return true;
  } finally {
    port1.close();
    port2.close();
  }
}
const echo = rogue; // returns its inputs unchanged

test('a moved input whose buffer is already detached is refused at the call, and the worker is not wedged', async () => {
  const predict = batchedFn<Float32Array, Float32Array>({ worker: echo, maxDelay: 0 });
  const x = new Float32Array(4);
  await predict(move(x));
  const error = (await predict(move(x)).catch((e: unknown) => e)) as TypeError;
  expect(error).toBeInstanceOf(TypeError);
  expect(error.message).toBe(
    "Input cannot be sent to a worker thread: the input's buffer was already transferred (detached), by an earlier move() perhaps",
  );
  const nested = { a: [new Uint8Array(2), x] };
  expect(((await predict(move(nested) as never).catch((e: unknown) => e)) as Error).message).toMatch(
    /^Input cannot be sent to a worker thread: the input\.a\[1\]'s buffer/,
  );
  expect(await predict(new Float32Array([1]))).toEqual(new Float32Array([1]));
  expect(predict.stats.workers[0]?.state).toBe('idle');
  await predict.close();
});

test('a message the worker cannot read fails the batch it belonged to (the pool, below the call check)', async () => {
  const { WorkerPoolExecutor } = await import('../dist/executor/worker-pool.js');
  const { move: mark } = await import('../dist/transfer.js');
  const pool = new WorkerPoolExecutor({
    module: echo,
    workers: 1,
    workerData: undefined,
    resourceLimits: undefined,
    name: 'lost',
  });
  await pool.ready();
  const x = new Float32Array(4);
  structuredClone(x.buffer, { transfer: [x.buffer] });
  const outcome = await Promise.race([
    pool.run([mark({ x })]).then(
      (outputs) => (outputs[0] instanceof TypeError ? `failed alone: ${outputs[0].message}` : 'resolved'),
      () => 'rejected',
    ),
    new Promise((resolve) => setTimeout(() => resolve('hung'), 2000)),
  ]);
  // Node 20 posts a detached buffer named in the transfer list, and the worker cannot read the message: the pool
  // fails the batch on 'messageerror'. Node 22 and later refuse it at postMessage, and the input fails on its own,
  // with its own clone error (what cloning that input alone says), not the whole post's.
  expect(outcome).toBe(
    postRefusesDetached()
      ? 'failed alone: Input 0 of the batch cannot be sent to a worker thread: An ArrayBuffer is detached and could not be cloned.'
      : 'rejected',
  );
  expect(await pool.run(['still serving'])).toEqual(['still serving']);
  await pool.close();
});

test('junk posted on the pool port by user code is ignored and counted; nothing crashes or settles early', async () => {
  const predict = batchedFn<string, string>({ worker: rogue, maxDelay: 0, maxBatchSize: 2 });
  expect(await Promise.all([predict('post-junk'), predict('b')])).toEqual(['post-junk', 'b']);
  expect(predict.stats.workers[0]?.ignoredMessages).toBe(5);
  expect(await predict('c')).toBe('c');
  await predict.close();
});

test('one output that cannot be cloned rejects only its caller', async () => {
  const predict = batchedFn<string, string>({ worker: rogue, maxDelay: 0, maxBatchSize: 4 });
  const results = await Promise.allSettled([predict('a'), predict('function'), predict('b'), predict('symbol')]);
  expect(results[0]).toEqual({ status: 'fulfilled', value: 'a' });
  expect(results[2]).toEqual({ status: 'fulfilled', value: 'b' });
  for (const i of [1, 3]) {
    const reason = (results[i] as PromiseRejectedResult).reason as Error;
    expect(reason.name).toBe('TypeError');
    expect(reason.message).toMatch(new RegExp(`^Output ${i} of the batch cannot be sent back from the worker thread`));
  }
  await predict.close();
});

test('a thrown value that breaks serialization reaches the callers as an error; the worker does not crash', async () => {
  const predict = batchedFn<string, string>({ worker: rogue, maxDelay: 0 });
  const getter = (await predict('throw-getter').catch((e: unknown) => e)) as Error;
  expect(getter.message).toBe('boom');
  const nullProto = (await predict('throw-null-proto').catch((e: unknown) => e)) as Error;
  expect(nullProto.message).toBe('Non-error thrown: [object Object]');
  const named = (await predict('throw-name-fn').catch((e: unknown) => e)) as Error;
  expect([named.name, named.message]).toEqual(['Error', 'named by a function']);
  expect(predict.stats.workers[0]?.restarts).toBe(0);
  await predict.close();
});

test('resourceLimits is validated like every other option', () => {
  expect(() => batchedFn({ worker: echo, resourceLimits: { maxOldGenerationSizeMb: -1 } })).toThrow(
    new RangeError(
      'Expected `resourceLimits.maxOldGenerationSizeMb` to be a finite number of MB above 0, got `-1` (number)',
    ),
  );
  expect(() => batchedFn({ worker: echo, resourceLimits: { maxOldGenSizeMb: 32 } as never })).toThrow(
    new TypeError(
      'Unknown `resourceLimits` key `maxOldGenSizeMb`; known keys are `maxYoungGenerationSizeMb`, `maxOldGenerationSizeMb`, `codeRangeSizeMb`, `stackSizeMb`',
    ),
  );
  expect(() => batchedFn({ worker: echo, resourceLimits: 'big' as never })).toThrow(
    new TypeError('Expected `resourceLimits` to be an object, got `"big"` (string)'),
  );
});
