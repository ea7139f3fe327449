import { expect, test } from 'vitest';
import fc from 'fast-check';
import { RingQueue } from '../src/queue.js';

test('RingQueue behaves like an array used as a FIFO', () => {
  fc.assert(
    fc.property(fc.array(fc.oneof(fc.integer(), fc.constant('shift' as const)), { maxLength: 500 }), (ops) => {
      const queue = new RingQueue<number>(2);
      const model: number[] = [];
      for (const op of ops) {
        if (op === 'shift') expect(queue.shift()).toBe(model.shift());
        else {
          queue.push(op);
          model.push(op);
        }
        expect(queue.length).toBe(model.length);
        expect(queue.peek()).toBe(model[0]);
      }
      const rest: number[] = [];
      queue.drain((x) => rest.push(x));
      expect(rest).toEqual(model);
    }),
  );
});
