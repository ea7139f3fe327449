import { expect, test } from 'vitest';
import { AbortPool } from '../src/protocol/abort-pool.js';

// A reused AbortController must never carry one call's abort to another.

test('a controller comes back only unaborted and with no abort listener left', () => {
  const pool = new AbortPool();
  const first = pool.take();
  pool.give(first);
  expect(pool.size).toBe(1);
  expect(pool.take()).toBe(first);

  const aborted = new AbortController();
  aborted.abort(new Error('client left'));
  pool.give(aborted);
  expect(pool.size).toBe(0);

  const listened = new AbortController();
  const listener = { handleEvent: () => {} };
  listened.signal.addEventListener('abort', listener);
  pool.give(listened);
  expect(pool.size).toBe(0);
  listened.signal.removeEventListener('abort', listener);
  listened.signal.onabort = () => {};
  pool.give(listened);
  expect(pool.size).toBe(0);
});

test('the pool keeps at most its limit', () => {
  const pool = new AbortPool(2);
  for (let i = 0; i < 5; i++) pool.give(new AbortController());
  expect(pool.size).toBe(2);
  const a = pool.take();
  const b = pool.take();
  expect(a).not.toBe(b);
  expect(pool.take()).not.toBe(a);
});
