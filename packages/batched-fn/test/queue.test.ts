import { expect, test } from 'vitest';
import fc from 'fast-check';
import { type BatchBuilder, CallQueue, type Resolve } from '../src/queue.js';

type Op =
  | { kind: 'push'; value: number; rows: number; handle: boolean; tick: boolean }
  | { kind: 'shift' }
  | { kind: 'remove'; pick: number }
  | { kind: 'take'; maxRows: number }
  | { kind: 'resize'; maxBatchSize: number };

interface Entry {
  seq: number;
  value: number;
  rows: number;
  arrival: number;
  handle: string | undefined;
  resolve: Resolve<number>;
}

/** A batch as the engine builds one: it records what the queue hands it, and how. */
class Batch implements BatchBuilder<number, number, string> {
  inputs: number[] = [];
  resolvers: (Resolve<number> | undefined)[] = [];
  handles: [string, number][] = [];
  rows = 0;
  maxWait = 0;
  totalWait = 0;
  adopted = 0;

  adopt(inputs: number[], resolvers: Resolve<number>[]): void {
    expect(this.inputs).toHaveLength(0);
    this.inputs = inputs;
    this.resolvers = resolvers;
    this.adopted++;
  }

  addHandle(handle: string, index: number): void {
    this.handles.push([handle, index]);
  }

  took(rows: number, maxWait: number, totalWait: number): void {
    this.rows = rows;
    this.maxWait = maxWait;
    this.totalWait = totalWait;
  }
}

class Waits {
  readonly values: number[] = [];
  record(value: number): void {
    this.values.push(value);
  }
  recordMany(value: number, count: number): void {
    expect(count).toBeGreaterThan(0);
    for (let i = 0; i < count; i++) this.values.push(value);
  }
}

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('push' as const),
      value: fc.integer(),
      rows: fc.constantFrom(1, 1, 1, 2, 0.5),
      handle: fc.boolean(),
      tick: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('shift' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('remove' as const), pick: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('take' as const), maxRows: fc.integer({ min: 1, max: 100 }) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('resize' as const), maxBatchSize: fc.integer({ min: 1, max: 100 }) }),
  },
);

test('CallQueue behaves like an array FIFO with removal by sequence number, and batches take its head', () => {
  fc.assert(
    fc.property(fc.array(op, { maxLength: 400 }), fc.boolean(), (ops, plainOnly) => {
      const limits = { maxBatchSize: 16 };
      const queue = new CallQueue<number, number, string>(limits);
      const model: Entry[] = [];
      let clock = 0;
      for (const o of ops) {
        if (o.kind === 'push') {
          if (o.tick) clock += 1;
          const resolve: Resolve<number> = () => {};
          const rows = plainOnly ? 1 : o.rows;
          const handle = !plainOnly && o.handle ? `h${o.value}` : undefined;
          const seq = queue.push(o.value, resolve, clock, rows, handle);
          model.push({ seq, value: o.value, rows, arrival: clock, handle, resolve });
        } else if (o.kind === 'shift') {
          const live = queue.skipRemoved();
          expect(live).toBe(model.length > 0);
          if (live) {
            const expected = model.shift() as Entry;
            expect(queue.headInput()).toBe(expected.value);
            expect(queue.headArrival()).toBe(expected.arrival);
            expect(queue.headRows()).toBe(expected.rows);
            expect(queue.headHandle()).toBe(expected.handle);
            expect(queue.headResolver()).toBe(expected.resolve);
            queue.shift();
          }
        } else if (o.kind === 'remove') {
          if (model.length === 0) continue;
          const victim = model.splice(o.pick % model.length, 1)[0] as Entry;
          expect(queue.rowsAt(victim.seq)).toBe(victim.rows);
          expect(queue.remove(victim.seq)).toBe(victim.resolve);
          expect(queue.isLive(victim.seq)).toBe(false);
          expect(queue.remove(victim.seq)).toBeUndefined();
        } else if (o.kind === 'resize') {
          limits.maxBatchSize = o.maxBatchSize;
        } else {
          clock += 1;
          const batch = new Batch();
          const waits = new Waits();
          queue.skipRemoved();
          const blocked = queue.takeBatch(o.maxRows, clock, batch, waits);
          // The expected batch: the longest FIFO prefix whose rows fit.
          let rows = 0;
          let n = 0;
          while (n < model.length && rows + (model[n] as Entry).rows <= o.maxRows) rows += (model[n++] as Entry).rows;
          const taken = model.splice(0, n);
          expect(batch.inputs).toEqual(taken.map((e) => e.value));
          expect(batch.resolvers).toEqual(taken.map((e) => e.resolve));
          expect(batch.rows).toBe(rows);
          expect(batch.handles).toEqual(
            taken.flatMap((e, i) => (e.handle === undefined ? [] : [[e.handle, i] as [string, number]])),
          );
          const expectedWaits = taken.map((e) => clock - e.arrival);
          expect(waits.values).toEqual(expectedWaits);
          expect(batch.maxWait).toBe(Math.max(0, ...expectedWaits));
          expect(batch.totalWait).toBe(expectedWaits.reduce((a, b) => a + b, 0));
          // Stopped at a call that does not fit, or ran out.
          expect(blocked).toBe(model.length > 0 && rows + (model[0] as Entry).rows > o.maxRows);
          if (plainOnly) expect(batch.adopted).toBeLessThanOrEqual(1);
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
    { numRuns: 300 },
  );
});

// fast-check found it (seed 1554812280): a batch filled to maxRows reported a removed call behind
// it as a call that did not fit. Harmless (the batch is full either way), but not what it says.
test('a full batch with only removed calls behind it has not stopped at a call that does not fit', () => {
  for (const rows of [1, 2] as const) {
    const queue = new CallQueue<number, number, string>({ maxBatchSize: 16 });
    queue.push(1, () => {}, 0, rows, 'h1');
    const behind = queue.push(2, () => {}, 0, 1, undefined);
    queue.remove(behind);
    const batch = new Batch();
    expect(queue.takeBatch(rows, 1, batch, new Waits())).toBe(false);
    expect(batch.inputs).toEqual([1]);
    // With a live call behind, it has.
    queue.push(3, () => {}, 2, 1, undefined);
    queue.push(4, () => {}, 2, 1, undefined);
    expect(queue.takeBatch(1, 3, new Batch(), new Waits())).toBe(true);
  }
});

test('a batch that takes a whole chunk of plain calls gets its arrays, not a copy', () => {
  const queue = new CallQueue<number, number, string>({ maxBatchSize: 64 });
  const resolvers = Array.from({ length: 80 }, () => (() => {}) as Resolve<number>);
  for (let i = 0; i < 80; i++) queue.push(i, resolvers[i] as Resolve<number>, i < 20 ? 1 : 2, 1, undefined);
  const first = new Batch();
  const waits = new Waits();
  expect(queue.takeBatch(64, 10, first, waits)).toBe(true);
  expect(first.adopted).toBe(1);
  expect(first.inputs).toEqual(Array.from({ length: 64 }, (_, i) => i));
  expect(first.resolvers).toEqual(resolvers.slice(0, 64));
  expect(waits.values).toEqual([...Array(20).fill(9), ...Array(44).fill(8)]);
  expect([first.rows, first.maxWait, first.totalWait]).toEqual([64, 9, 20 * 9 + 44 * 8]);
  // The rest is the next chunk, from its first call to its last: the batch takes it whole too,
  // as arrays of its 16 calls (no empty slots after them).
  const second = new Batch();
  expect(queue.takeBatch(64, 10, second, new Waits())).toBe(false);
  expect(second.adopted).toBe(1);
  expect(second.inputs).toEqual(Array.from({ length: 16 }, (_, i) => 64 + i));
  expect(second.resolvers).toHaveLength(16);
  expect(queue.span).toBe(0);
});

test('a batch smaller than a chunk (at least 64 calls) copies its calls', () => {
  const queue = new CallQueue<number, number, string>({ maxBatchSize: 8 });
  for (let i = 0; i < 20; i++) queue.push(i, () => {}, 0, 1, undefined);
  const batch = new Batch();
  expect(queue.takeBatch(8, 1, batch, new Waits())).toBe(true);
  expect(batch.adopted).toBe(0);
  expect(batch.inputs).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  expect(queue.span).toBe(12);
});

test('a chunk with a removed call, a handle or a larger row is copied call by call', () => {
  for (const spoil of ['remove', 'handle', 'rows'] as const) {
    const queue = new CallQueue<number, number, string>({ maxBatchSize: 64 });
    const seqs: number[] = [];
    for (let i = 0; i < 64; i++) {
      const special = i === 5;
      seqs.push(
        queue.push(
          i,
          () => {},
          0,
          special && spoil === 'rows' ? 0.5 : 1,
          special && spoil === 'handle' ? 'h' : undefined,
        ),
      );
    }
    if (spoil === 'remove') queue.remove(seqs[5] as number);
    const batch = new Batch();
    queue.takeBatch(64, 1, batch, new Waits());
    expect(batch.adopted).toBe(0);
    expect(batch.inputs).toEqual(Array.from({ length: 64 }, (_, i) => i).filter((i) => spoil !== 'remove' || i !== 5));
    expect(batch.handles).toEqual(spoil === 'handle' ? [['h', 5]] : []);
    expect(batch.rows).toBe(spoil === 'rows' ? 63.5 : spoil === 'remove' ? 63 : 64);
  }
});

test('any call of a backlog many chunks long is found by its seq, and removed alone', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 1000 }),
      fc.array(fc.nat(), { maxLength: 60 }),
      fc.integer({ min: 1, max: 300 }),
      (count, picks, maxBatchSize) => {
        const queue = new CallQueue<number, number, string>({ maxBatchSize });
        const seqs = Array.from({ length: count }, (_, i) => queue.push(i, () => {}, i, 1 + (i % 3), undefined));
        const removed = new Set<number>();
        for (const pick of picks) {
          const victim = pick % count;
          if (!removed.has(victim)) expect(queue.rowsAt(seqs[victim] as number)).toBe(1 + (victim % 3));
          expect(queue.remove(seqs[victim] as number) !== undefined).toBe(!removed.has(victim));
          removed.add(victim);
        }
        for (let i = 0; i < count; i++) expect(queue.isLive(seqs[i] as number)).toBe(!removed.has(i));
        const rest: number[] = [];
        while (queue.skipRemoved()) {
          rest.push(queue.headInput());
          expect(queue.headArrival()).toBe(rest.at(-1));
          queue.shift();
        }
        expect(rest).toEqual(Array.from({ length: count }, (_, i) => i).filter((i) => !removed.has(i)));
      },
    ),
    { numRuns: 200 },
  );
});
