import { expect, test } from 'vitest';
import { batchedFn, MAX_TIMER_MS } from 'batched-fn';
import { advance, track, useFakeClock } from './helpers.js';

useFakeClock();

const identity = (batch: number[]): number[] => batch;

test('MAX_TIMER_MS is the largest delay setTimeout honours', () => {
  expect(MAX_TIMER_MS).toBe(2 ** 31 - 1);
});

test.each([
  [
    'maxDelay',
    { maxDelay: 3_000_000_000 },
    "Expected `maxDelay` to be a number of milliseconds from 0 to 2147483647, or 'auto', got `3000000000` (number)",
  ],
  [
    'latencyTarget',
    { latencyTarget: 2 ** 31 },
    'Expected `latencyTarget` to be a number of milliseconds above 0 to 2147483647, got `2147483648` (number)',
  ],
  [
    'batchTimeout',
    { batchTimeout: 2 ** 31 },
    'Expected `batchTimeout` to be a number of milliseconds above 0 to 2147483647, got `2147483648` (number)',
  ],
  [
    'batchTimeout 0',
    { batchTimeout: 0 },
    'Expected `batchTimeout` to be a number of milliseconds above 0 to 2147483647, got `0` (number)',
  ],
])('a duration option beyond one timer is refused: %s', (_name, options, message) => {
  expect(() => batchedFn({ handler: identity, ...options })).toThrow(new RangeError(message));
});

test('configure() holds maxDelay to the same limit', () => {
  const predict = batchedFn({ handler: identity });
  expect(() => predict.configure({ maxDelay: 2 ** 31 })).toThrow(
    new RangeError(
      "Expected `maxDelay` to be a number of milliseconds from 0 to 2147483647, or 'auto', got `2147483648` (number)",
    ),
  );
});

test('a call timeout of 2^31 ms is refused, not fired after 1 ms', async () => {
  const predict = batchedFn({ handler: identity, maxDelay: 0 });
  await expect(predict(1, { timeout: 2 ** 31 })).rejects.toThrow(
    new RangeError('Expected `timeout` to be a number of milliseconds from 0 to 2147483647, got `2147483648` (number)'),
  );
  expect(predict.stats.failures).toEqual({ handler: 1 });
});

test('the longest legal timeout does not fire early', async () => {
  const gate: (() => void)[] = [];
  const predict = batchedFn<number, number>({
    handler: (batch) => new Promise((resolve) => gate.push(() => resolve(batch))),
    maxDelay: 0,
  });
  const call = track(predict(1, { timeout: MAX_TIMER_MS }));
  await advance(10_000);
  expect(call.status).toBe('pending');
  gate.shift()?.();
  await advance(0);
  expect(call.value).toBe(1);
});

test('close() refuses a timeout beyond one timer, without throwing synchronously', async () => {
  const predict = batchedFn({ handler: identity });
  const closing = predict.close({ timeout: 2 ** 31 });
  await expect(closing).rejects.toThrow(
    new RangeError('Expected `timeout` to be a number of milliseconds from 0 to 2147483647, got `2147483648` (number)'),
  );
});
