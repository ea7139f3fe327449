import { describe, expect, test } from 'vitest';
import { batchedFn, DEFAULTS } from 'batched-fn';

const handler = (batch: number[]) => batch;

describe('option validation names the option, the rule and the value', () => {
  const cases: [string, Record<string, unknown>, ErrorConstructor, string][] = [
    [
      'maxBatchSize 0',
      { maxBatchSize: 0 },
      RangeError,
      'Expected `maxBatchSize` to be an integer from 1 and up, got `0` (number)',
    ],
    [
      'maxBatchSize -1',
      { maxBatchSize: -1 },
      RangeError,
      'Expected `maxBatchSize` to be an integer from 1 and up, got `-1` (number)',
    ],
    [
      'maxBatchSize 2.5',
      { maxBatchSize: 2.5 },
      RangeError,
      'Expected `maxBatchSize` to be an integer from 1 and up, got `2.5` (number)',
    ],
    [
      'maxBatchSize Infinity',
      { maxBatchSize: Infinity },
      RangeError,
      'Expected `maxBatchSize` to be an integer from 1 and up, got `Infinity` (number)',
    ],
    [
      'maxBatchSize "8"',
      { maxBatchSize: '8' },
      TypeError,
      'Expected `maxBatchSize` to be an integer from 1 and up, got `"8"` (string)',
    ],
    [
      'maxBatchSize NaN',
      { maxBatchSize: NaN },
      TypeError,
      'Expected `maxBatchSize` to be an integer from 1 and up, got `NaN` (number)',
    ],
    [
      'maxDelay -1',
      { maxDelay: -1 },
      RangeError,
      "Expected `maxDelay` to be a number of milliseconds from 0 to 2147483647, or 'auto', got `-1` (number)",
    ],
    [
      'maxDelay Infinity',
      { maxDelay: Infinity },
      RangeError,
      "Expected `maxDelay` to be a number of milliseconds from 0 to 2147483647, or 'auto', got `Infinity` (number)",
    ],
    [
      'maxDelay null',
      { maxDelay: null },
      TypeError,
      "Expected `maxDelay` to be a number of milliseconds from 0 to 2147483647, or 'auto', got `null`",
    ],
    [
      'channelCap 0',
      { channelCap: 0 },
      RangeError,
      'Expected `channelCap` to be an integer from 1 and up, or Infinity, got `0` (number)',
    ],
    [
      'channelCap 1.5',
      { channelCap: 1.5 },
      RangeError,
      'Expected `channelCap` to be an integer from 1 and up, or Infinity, got `1.5` (number)',
    ],
    [
      'concurrency 0',
      { concurrency: 0 },
      RangeError,
      'Expected `concurrency` to be an integer from 1 and up, got `0` (number)',
    ],
    [
      'concurrency true',
      { concurrency: true },
      TypeError,
      'Expected `concurrency` to be an integer from 1 and up, got `true` (boolean)',
    ],
    ['size not a function', { size: 3 }, TypeError, 'Expected `size` to be a function, got `3` (number)'],
    ['onBatch not a function', { onBatch: {} }, TypeError, 'Expected `onBatch` to be a function, got an object'],
    ['name not a string', { name: 7 }, TypeError, 'Expected `name` to be a string, got `7` (number)'],
    [
      'context not a function',
      { context: 'model' },
      TypeError,
      'Expected `context` to be a function, got `"model"` (string)',
    ],
    ['unknown key', { maxbatchsize: 4 }, TypeError, 'Unknown option `maxbatchsize`'],
    [
      'maxDelay "auto-ish"',
      { maxDelay: 'automatic' },
      TypeError,
      'Expected `maxDelay` to be a number of milliseconds from 0 to 2147483647, or \'auto\', got `"automatic"` (string)',
    ],
    [
      'latencyTarget 0',
      { latencyTarget: 0 },
      RangeError,
      'Expected `latencyTarget` to be a number of milliseconds above 0 to 2147483647, got `0` (number)',
    ],
    [
      'latencyTarget "5"',
      { latencyTarget: '5' },
      TypeError,
      'Expected `latencyTarget` to be a number of milliseconds above 0 to 2147483647, got `"5"` (string)',
    ],
    [
      'batchKey not a function',
      { batchKey: 'model' },
      TypeError,
      'Expected `batchKey` to be a function, got `"model"` (string)',
    ],
    ['pad not a function', { pad: true }, TypeError, 'Expected `pad` to be a function, got `true` (boolean)'],
    [
      'preferredBatchSizes not an array',
      { preferredBatchSizes: 8 },
      TypeError,
      'Expected `preferredBatchSizes` to be a non-empty array of integers, got `8` (number)',
    ],
    [
      'preferredBatchSizes with a fraction',
      { preferredBatchSizes: [4, 2.5] },
      RangeError,
      'Expected `preferredBatchSizes[1]` to be an integer from 1 and up, got `2.5` (number)',
    ],
  ];
  test.each(cases)('%s', (_label, extra, type, message) => {
    let thrown: unknown;
    try {
      batchedFn({ handler, ...extra } as never);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(type);
    expect((thrown as Error).message).toBe(message);
  });

  test('options must be an object', () => {
    expect(() => batchedFn(undefined as never)).toThrow(
      new TypeError('Expected options to be an object, got `undefined` (undefined)'),
    );
  });

  test('exactly one of handler or worker', () => {
    const message = 'Expected exactly one of `handler` (run inline) or `worker` (run in worker threads)';
    expect(() => batchedFn({} as never)).toThrow(new TypeError(message));
    expect(() => batchedFn({ handler, worker: 'x.js' } as never)).toThrow(new TypeError(message));
  });

  test('handler must be a function', () => {
    expect(() => batchedFn({ handler: 'f' } as never)).toThrow(
      new TypeError('Expected `handler` to be a function, got `"f"` (string)'),
    );
  });

  test('worker options are validated before any thread starts', () => {
    expect(() => batchedFn({ worker: 42 } as never)).toThrow(
      new TypeError('Expected `worker` to be a URL or a path to a module, got `42` (number)'),
    );
    expect(() => batchedFn({ worker: 'm.js', workers: 0 })).toThrow(
      new RangeError('Expected `workers` to be an integer from 1 and up, got `0` (number)'),
    );
    expect(() => batchedFn({ worker: 'm.js', workerData: { f: () => 1 } })).toThrow(TypeError);
    expect(() => batchedFn({ worker: 'm.js', workerData: { f: () => 1 } })).toThrow(
      /^Expected `workerData` to be structured-cloneable/,
    );
    expect(() => batchedFn({ worker: 'm.js', maxDelay: -5 })).toThrow(
      new RangeError(
        "Expected `maxDelay` to be a number of milliseconds from 0 to 2147483647, or 'auto', got `-5` (number)",
      ),
    );
  });
});

describe('call options are validated per call and reject, never throw', () => {
  test('bad timeout', async () => {
    const predict = batchedFn({ handler });
    let result: Promise<number> | undefined;
    expect(() => {
      result = predict(1, { timeout: -1 });
    }).not.toThrow();
    await expect(result).rejects.toThrow(
      new RangeError('Expected `timeout` to be a number of milliseconds from 0 to 2147483647, got `-1` (number)'),
    );
    await expect(predict(1, { timeout: 'soon' as never })).rejects.toBeInstanceOf(TypeError);
  });

  test('bad signal', async () => {
    const predict = batchedFn({ handler });
    await expect(predict(1, { signal: {} as never })).rejects.toThrow(
      new TypeError('Expected `signal` to be an AbortSignal, got an object'),
    );
  });

  test('options that are not an object', async () => {
    const predict = batchedFn({ handler });
    await expect(predict(1, 5 as never)).rejects.toThrow(
      new TypeError('Expected call options to be an object, got `5` (number)'),
    );
  });
});

test("maxDelay 'auto' is accepted, at construction and in configure()", async () => {
  const predict = batchedFn({ handler, maxDelay: 'auto', latencyTarget: 50 });
  expect(await predict(3)).toBe(3);
  predict.configure({ maxDelay: 4 });
  predict.configure({ maxDelay: 'auto' });
  expect(() => predict.configure({ maxDelay: 'fast' as never })).toThrow(TypeError);
  await predict.close();
});

test('defaults match the original crate and the docs', () => {
  expect(DEFAULTS).toEqual({
    maxBatchSize: 8,
    maxDelay: 50,
    channelCap: Infinity,
    concurrency: 1,
    workers: 1,
    name: 'batched-fn',
  });
  expect(Object.isFrozen(DEFAULTS)).toBe(true);
});

test('configure() validates like the constructor and leaves settings unchanged on error', async () => {
  const predict = batchedFn({ handler, maxBatchSize: 4 });
  expect(() => predict.configure({ maxBatchSize: 0 })).toThrow(
    new RangeError('Expected `maxBatchSize` to be an integer from 1 and up, got `0` (number)'),
  );
  expect(() => predict.configure({ maxDelay: -1 })).toThrow(RangeError);
  expect(() => predict.configure({ channelCap: 0 })).toThrow(RangeError);
  expect(() => predict.configure({ concurrency: 1.5 })).toThrow(RangeError);
  await predict.close();
});
