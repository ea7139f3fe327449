import { afterEach, expect, test } from 'vitest';
import { type BatchedFn, batchedFn } from 'batched-fn';
// @ts-expect-error: a plain JS fixture without types
import { codec, seen } from './fixtures/doubling.codec.mjs';

const packedWorker = new URL('./fixtures/doubling-packed.worker.mjs', import.meta.url);
const unpackedWorker = new URL('./fixtures/doubling-unpacked.worker.mjs', import.meta.url);
const directWorker = new URL('./fixtures/doubling-direct.worker.mjs', import.meta.url);
let predict: BatchedFn<number, number> | undefined;
afterEach(async () => {
  await predict?.close();
  predict = undefined;
  seen.encoded.length = 0;
  seen.decoded.length = 0;
  seen.sent.length = 0;
});

/** Every call of the batch rejects, with a message matching `message`. */
async function expectEveryRejected(calls: Promise<number>[], message: RegExp): Promise<void> {
  for (const s of await Promise.allSettled(calls)) {
    expect(s.status).toBe('rejected');
    expect((s as PromiseRejectedResult).reason.message).toMatch(message);
  }
}

function doubling(worker: URL, maxBatchSize = 4): BatchedFn<number, number> {
  predict = batchedFn<number, number>({ worker, maxBatchSize, maxDelay: 50, codec });
  return predict;
}

test('codec: each batch is encoded once here and decoded once back; the handler sees the inputs, callers their outputs', async () => {
  const double = doubling(packedWorker);
  await double.ready();
  const answers = await Promise.all([1, 2, 3, 4, 5, 6].map((x) => double(x)));
  expect(answers).toEqual([2, 4, 6, 8, 10, 12]);
  // Two full batches of 4 and 2 (the window closes at maxBatchSize, then the rest).
  expect(seen.encoded).toEqual([
    [1, 2, 3, 4],
    [5, 6],
  ]);
  expect(seen.decoded).toEqual(seen.encoded);
  // The packed inputs were transferred, not copied: detached here.
  expect(seen.sent.map((buffer: ArrayBuffer) => buffer.byteLength)).toEqual([0, 0]);
  expect(double.stats.batches).toBe(2);
});

test('codec: a batch with an Error output comes back unpacked; the Error is its caller only', async () => {
  const double = doubling(packedWorker);
  await double.ready();
  const settled = await Promise.allSettled([12, 13, 14].map((x) => double(x)));
  expect(settled.map((s) => (s.status === 'fulfilled' ? s.value : (s.reason as Error).message))).toEqual([
    24,
    'unlucky',
    28,
  ]);
  expect(seen.encoded).toEqual([[12, 13, 14]]);
  expect(seen.decoded).toEqual([]);
});

test('codec: a handler answering one output too few is a size mismatch for the whole batch', async () => {
  const double = doubling(packedWorker);
  await double.ready();
  const settled = await Promise.allSettled([99, 1, 2].map((x) => double(x)));
  expect(settled.map((s) => (s.status === 'rejected' ? (s.reason as { code?: string }).code : 'ok'))).toEqual([
    'ERR_BATCH_SIZE_MISMATCH',
    'ERR_BATCH_SIZE_MISMATCH',
    'ERR_BATCH_SIZE_MISMATCH',
  ]);
  expect(seen.decoded).toEqual([]);
});

test('codec: encodeInputs throwing fails its batch with that error, and the next batch runs', async () => {
  const double = doubling(packedWorker, 2);
  await double.ready();
  const settled = await Promise.allSettled([-1, 7].map((x) => double(x)));
  expect(settled.map((s) => (s.status === 'rejected' ? (s.reason as Error).message : s.value))).toEqual([
    'cannot pack -1',
    'cannot pack -1',
  ]);
  await expect(double(8)).resolves.toBe(16);
});

test('codec: a worker module that does not export it fails the batch, saying so', async () => {
  const double = doubling(unpackedWorker);
  await double.ready();
  await expectEveryRejected(
    [1, 2].map((x) => double(x)),
    /exports no `codec`/,
  );
});

test('codec: only in worker mode, and only an object with the four functions', () => {
  expect(() => batchedFn<number, number>({ handler: (b: number[]) => b, codec } as never)).toThrow(
    'Expected `codec` only with `worker`',
  );
  expect(() =>
    batchedFn<number, number>({ worker: packedWorker, codec: { ...codec, decodeOutputs: undefined } }),
  ).toThrow(
    'Expected `codec` to be an object with `encodeInputs`, `decodeInputs`, `encodeOutputs`, `decodeOutputs` functions',
  );
  expect(() => batchedFn<number, number>({ worker: packedWorker, codec: null as never })).toThrow(TypeError);
});

test("codec: a module's packedHandler takes the packed batch as it crossed, with its context, and answers it packed", async () => {
  const double = doubling(directWorker);
  await double.ready();
  const answers = await Promise.all([1, 2, 3].map((x) => double(x)));
  expect(answers).toEqual([2.5, 4.5, 6.5]);
  expect(seen.encoded).toEqual([[1, 2, 3]]);
  expect(seen.decoded).toEqual([[1, 2, 3]]);
});

test('codec: a packedHandler answering something other than { value } fails its batch, saying so', async () => {
  const double = doubling(directWorker);
  await double.ready();
  await expectEveryRejected(
    [66, 1].map((x) => double(x)),
    /packedHandler must answer \{ value, transfer\? \}/,
  );
});
