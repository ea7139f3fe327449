import { expect, test } from 'vitest';
import fc from 'fast-check';
import { CallQueue } from '../src/queue.js';

type Op = { kind: 'push'; value: number } | { kind: 'shift' } | { kind: 'remove'; pick: number };

test('CallQueue behaves like an array FIFO with removal by sequence number', () => {
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ kind: fc.constant('push' as const), value: fc.integer() }),
    fc.record({ kind: fc.constant('shift' as const) }),
    fc.record({ kind: fc.constant('remove' as const), pick: fc.nat() }),
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 400 }), (ops) => {
      const queue = new CallQueue<number, number>(2);
      const model: { seq: number; value: number }[] = [];
      const resolvers = new Map<number, () => void>();
      for (const o of ops) {
        if (o.kind === 'push') {
          const resolve = () => {};
          const seq = queue.push(o.value, resolve, o.value * 0.5, 1, undefined);
          resolvers.set(seq, resolve);
          model.push({ seq, value: o.value });
        } else if (o.kind === 'shift') {
          const live = queue.skipRemoved();
          expect(live).toBe(model.length > 0);
          if (live) {
            const expected = model.shift() as { seq: number; value: number };
            expect(queue.headInput()).toBe(expected.value);
            expect(queue.headArrival()).toBe(expected.value * 0.5);
            expect(queue.headResolver()).toBe(resolvers.get(expected.seq));
            queue.shift();
          }
        } else if (model.length > 0) {
          const victim = model.splice(o.pick % model.length, 1)[0] as { seq: number; value: number };
          expect(queue.remove(victim.seq)).toBe(resolvers.get(victim.seq));
          expect(queue.isLive(victim.seq)).toBe(false);
          expect(queue.remove(victim.seq)).toBeUndefined();
        }
        for (const { seq } of model) expect(queue.isLive(seq)).toBe(true);
      }
      const rest: number[] = [];
      while (queue.skipRemoved()) {
        rest.push(queue.headInput());
        queue.shift();
      }
      expect(rest).toEqual(model.map((m) => m.value));
      expect(queue.span).toBe(0);
    }),
  );
});
