import { deserialize, serialize } from 'node:v8';
import { expect, test } from 'vitest';
import {
  BatchedFnError,
  BatchSizeMismatchError,
  BatchTimeoutError,
  ClosedError,
  InvalidPadError,
  ItemTooLargeError,
  QueueFullError,
  TimeoutError,
  UnavailableError,
  WorkerExitedError,
} from 'batched-fn';
import { deserializeError, serializeError } from 'batched-fn/adapter';

const every = [
  new QueueFullError(64),
  new ClosedError('closed for the night'),
  new TimeoutError(30, true),
  new BatchSizeMismatchError(4, undefined),
  new BatchSizeMismatchError(4, 3),
  new ItemTooLargeError(10, 8),
  new WorkerExitedError(2, 7, new RangeError('out of memory')),
  new UnavailableError('Redis went away', { cause: new Error('ECONNRESET') }),
  new BatchTimeoutError(500),
  new InvalidPadError('got 2 inputs for a batch of 3'),
];

/** Both ways an error leaves a process here: structured clone (worker threads) and V8 serialize (Redis). */
const trips = {
  'worker thread': (value: unknown) => structuredClone(value),
  redis: (value: unknown) => deserialize(serialize(value)),
};

for (const [way, trip] of Object.entries(trips)) {
  test.each(every.map((e) => [e.name, e] as const))(
    `%s survives a trip through ${way} with its class and every field`,
    (_name, original) => {
      const back = deserializeError(trip(serializeError(original)));
      expect(back).toBeInstanceOf(original.constructor);
      expect(back).toBeInstanceOf(BatchedFnError);
      expect(back).toBeInstanceOf(Error);
      expect({ ...back }).toEqual({ ...original });
      expect(back.message).toBe(original.message);
      expect(back.name).toBe(original.name);
      expect(back.stack).toBe(original.stack);
      if (original.cause !== undefined) {
        expect(back.cause).toBeInstanceOf((original.cause as Error).constructor);
        expect((back.cause as Error).message).toBe((original.cause as Error).message);
      }
    },
  );
}

test('built-in classes come back as themselves, other errors as Error with their name and primitive fields', () => {
  const type = deserializeError(serializeError(new TypeError('bad')));
  expect(type).toBeInstanceOf(TypeError);
  const custom = Object.assign(new Error('nope'), { name: 'HttpError', status: 400, headers: { a: 'b' } });
  const back = deserializeError(serializeError(custom)) as Error & { status?: number; headers?: unknown };
  expect([back.name, back.message, back.status, back.headers]).toEqual(['HttpError', 'nope', 400, undefined]);
});

test('an unknown ERR_ code from elsewhere is not promoted to a batcher error', () => {
  const forged = deserializeError({ name: 'X', message: 'm', stack: undefined, fields: { code: 'ERR_MADE_UP' } });
  expect(forged).not.toBeInstanceOf(BatchedFnError);
  expect((forged as Error & { code: string }).code).toBe('ERR_MADE_UP');
});

test('whatever arrives, deserializing gives an Error and never throws', () => {
  for (const junk of [
    null,
    undefined,
    5,
    'x',
    {},
    { name: 1, message: 2 },
    { name: 'a', message: 'b', fields: null },
  ]) {
    expect(deserializeError(junk)).toBeInstanceOf(Error);
  }
});
