import { expect, test } from 'vitest';
import { messageFor, refusalFor } from '../src/protocol/status.js';

// Models throw anything. The status decision and the message must never throw in turn: a throw inside the
// transports' catch blocks left spans open and sent clients "Cannot convert object to primitive value".
test('a thrown value without a prototype, or with throwing getters, is an internal error with a readable message', () => {
  const bare = Object.create(null) as object;
  expect(refusalFor(bare)).toEqual({ status: 'internal' });
  expect(messageFor(bare)).toBe('Model failed: [object Object]');
  const hostile = {
    get message(): string {
      throw new Error('no');
    },
    get status(): number {
      throw new Error('no');
    },
  };
  expect(refusalFor(hostile)).toEqual({ status: 'internal' });
  expect(messageFor(hostile)).toBe('Model failed: [object Object]');
  expect(messageFor(new Error('boom'))).toBe('Model failed: boom');
  expect(messageFor(7)).toBe('Model failed: 7');
});
