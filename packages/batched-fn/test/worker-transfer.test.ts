import { expect, test } from 'vitest';
import { batchedFn, move } from 'batched-fn';

const faulty = new URL('./fixtures/faulty.worker.mjs', import.meta.url);

test('a moved typed array is transferred: detached on the sender, and the moved output comes back', async () => {
  const predict = batchedFn<Float32Array, Float32Array>({ worker: faulty, maxDelay: 0 });
  const input = new Float32Array([1, 2, 3]);
  const output = await predict(move(input));
  expect(input.byteLength).toBe(0);
  expect(input.buffer.byteLength).toBe(0);
  expect([...output]).toEqual([2, 4, 6]);
  await predict.close();
});

test('without move() the input is copied and stays usable', async () => {
  const predict = batchedFn<Float32Array, Float32Array>({ worker: faulty, maxDelay: 0 });
  const input = new Float32Array([1, 2, 3]);
  const output = await predict(input);
  expect([...input]).toEqual([1, 2, 3]);
  expect([...output]).toEqual([2, 4, 6]);
  await predict.close();
});

test('several moved views of one buffer in a batch transfer it once', async () => {
  const predict = batchedFn<Float32Array, Float32Array>({ worker: faulty, maxBatchSize: 2, maxDelay: 0 });
  const shared = new Float32Array([1, 2, 3, 4]);
  const [a, b] = await Promise.all([predict(move(shared.subarray(0, 2))), predict(move(shared.subarray(2)))]);
  expect(shared.byteLength).toBe(0);
  expect([...(a as Float32Array)]).toEqual([2, 4]);
  expect([...(b as Float32Array)]).toEqual([6, 8]);
  await predict.close();
});

test('move() marks in inline mode are harmless: nothing is detached', async () => {
  const predict = batchedFn<Float32Array, number>({ handler: (batch) => batch.map((x) => x.length), maxDelay: 0 });
  const input = new Float32Array(4);
  expect(await predict(move(input))).toBe(4);
  expect(input.byteLength).toBe(16);
});

test('move() rejects values that cannot hold buffers', () => {
  expect(() => move(3 as never)).toThrow(
    new TypeError('Expected `move` to get an ArrayBuffer, a typed array, or an object holding them, got number'),
  );
});

test('a moved value of 150,000 small buffers transfers only its largest (Node checks a transfer list pairwise); the rest are copied', async () => {
  const { MAX_TRANSFER_LIST } = await import('../dist/transfer.js');
  const predict = batchedFn<Uint8Array[], number>({
    worker: new URL('./fixtures/echo-length.worker.mjs', import.meta.url),
    maxDelay: 0,
  });
  const big = new Uint8Array(1 << 20);
  const small = Array.from({ length: 150_000 }, () => new Uint8Array(1));
  const started = performance.now();
  expect(await predict(move([big, ...small]))).toBe(150_001);
  // Wide margin: the quadratic transfer took about 9 s here; the copy of the rest takes tens of ms.
  expect(performance.now() - started).toBeLessThan(3_000);
  expect(big.byteLength).toBe(0);
  const detached = small.filter((b) => b.byteLength === 0).length;
  expect(detached).toBe(MAX_TRANSFER_LIST - 1);
  await predict.close();
});
