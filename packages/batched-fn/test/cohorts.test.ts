import fc from 'fast-check';
import { expect, test } from 'vitest';
import { Cohorts } from '../src/policy/cohorts.js';
import { ArrivalRate, CostModel } from '../src/policy/cost-model.js';

// Cohorts tells a closed loop (callers that send again when answered) from independent arrivals.
// Both are simulated here on a virtual clock against a server that costs a + b·n per batch and takes
// every queued row when it is free (maxDelay 0: 'auto' only makes batches larger, and the share smaller).

function learned(a: number, b: number): CostModel {
  const cost = new CostModel();
  for (let i = 0; i < 40; i++) cost.observe(1 + (i % 16), a + b * (1 + (i % 16)));
  return cost;
}

/** A seeded generator of uniform numbers in [0, 1) (mulberry32). */
function uniform(seed: number): () => number {
  let state = seed | 0;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Poisson arrivals at `load` of the server's ceiling: the highest share seen after a warm-up. */
function openLoop(a: number, b: number, load: number, seed: number, ms = 10_000): number {
  const rate = new ArrivalRate();
  const cohorts = new Cohorts(learned(a, b), rate);
  const random = uniform(seed);
  const max = 64;
  const lambda = (load * max) / (a + b * max);
  const gap = () => -Math.log(1 - random()) / lambda;
  let t = 0;
  let next = gap();
  let queued = 0;
  let running = 0;
  let busyUntil = 0;
  let peak = Number.NEGATIVE_INFINITY;
  while (t < ms) {
    if (running > 0 && busyUntil <= next) {
      t = busyUntil;
      cohorts.settled(running, t);
      running = 0;
    } else {
      t = next;
      rate.add(1, t);
      cohorts.arrived(1, t);
      queued++;
      next = t + gap();
    }
    if (running === 0 && queued > 0) {
      running = Math.min(max, queued);
      queued -= running;
      busyUntil = t + a + b * running;
    }
    if (t > 1000) peak = Math.max(peak, cohorts.share);
  }
  return peak;
}

/** `clients` callers that send again `roundTrip` ms after each answer, started 0.1 ms apart. */
function closedLoop(a: number, b: number, clients: number, roundTrip: number, ms = 5_000) {
  const rate = new ArrivalRate();
  const cohorts = new Cohorts(learned(a, b), rate);
  const max = 64;
  const due = Array.from({ length: clients }, (_, i) => i * 0.1);
  let t = 0;
  let queued = 0;
  let running = 0;
  let busyUntil = Number.POSITIVE_INFINITY;
  while (t < ms) {
    due.sort((x, y) => x - y);
    if (running > 0 && busyUntil <= (due[0] ?? Number.POSITIVE_INFINITY)) {
      t = busyUntil;
      cohorts.settled(running, t);
      for (let i = 0; i < running; i++) due.push(t + roundTrip);
      running = 0;
      busyUntil = Number.POSITIVE_INFINITY;
    } else {
      t = due.shift() as number;
      rate.add(1, t);
      cohorts.arrived(1, t);
      queued++;
    }
    if (running === 0 && queued > 0) {
      running = Math.min(max, queued);
      queued -= running;
      busyUntil = t + a + b * running;
    }
  }
  return { cohorts, end: t };
}

test('independent arrivals never look like a closed loop, at any load or cost shape', () => {
  fc.assert(
    fc.property(
      fc.constantFrom([2, 0.05], [6, 0.05], [1, 0.2], [0.2, 0.01]),
      fc.double({ min: 0.02, max: 0.98, noNaN: true }),
      fc.integer(),
      ([a, b], load, seed) => {
        expect(openLoop(a as number, b as number, load, seed)).toBeLessThan(Cohorts.CLOSED_LOOP_SHARE);
      },
    ),
    { numRuns: 40 },
  );
});

test.each([
  // a, b, clients, round trip (ms): back within a
  [6, 0.05, 64, 1.5],
  [6, 0.05, 64, 2.5],
  [12, 0.125, 16, 2],
  [2, 0.05, 8, 0.5],
  [2, 0.05, 200, 0.5],
])('a closed loop (c(n) = %f + %f·n, %i clients back in %f ms) is seen', (a, b, clients, roundTrip) => {
  const { cohorts, end } = closedLoop(a, b, clients, roundTrip);
  expect(cohorts.closedLoop).toBe(true);
  expect(cohorts.share).toBeGreaterThan(0.5);
  // The next batch to settle is waited for: its callers are due back within the fixed cost.
  cohorts.settled(8, end + 100);
  const due = cohorts.dueBy(end + 100) as number;
  expect(due).toBeGreaterThan(end + 100 + roundTrip);
  expect(due).toBeLessThanOrEqual(end + 100 + a);
});

test('a loop whose callers come back after the fixed cost is not waited for: it would not pay', () => {
  const { cohorts, end } = closedLoop(6, 0.05, 64, 7);
  expect(cohorts.closedLoop).toBe(false);
  cohorts.settled(8, end + 100);
  expect(cohorts.owed(end + 100)).toBe(8);
  expect(cohorts.dueBy(end + 100)).toBeUndefined();
});

/** `batches` batches of `rows` rows settling 10 ms apart, `back` of their callers returning 1 ms after each (a = 6 ms). */
function loopOf(batches: number, rows: number, back: number) {
  const rate = new ArrivalRate();
  const cohorts = new Cohorts(learned(6, 0.05), rate);
  let t = 0;
  for (let i = 0; i < batches; i++) {
    cohorts.settled(rows, t);
    rate.add(back, t + 1);
    cohorts.arrived(back, t + 1);
    t += 10;
  }
  return { rate, cohorts, t };
}

test('rows owed, and when they are due: 1.5 times the usual return, never past the fixed cost', () => {
  // Eight batches of 10 rows, each back whole 1 ms after it settled: a loop.
  const { rate, cohorts, t } = loopOf(8, 10, 10);
  expect(cohorts.closedLoop).toBe(true);
  cohorts.settled(10, t);
  expect(cohorts.owed(t)).toBe(10);
  expect(cohorts.dueBy(t)).toBeCloseTo(t + Cohorts.RETURN_SLACK * 1, 6);
  rate.add(4, t + 0.5);
  cohorts.arrived(4, t + 0.5);
  expect(cohorts.owed(t + 0.5)).toBe(6);
  // Past the fixed cost (a = 6 ms) the cohort is closed, and nothing is owed.
  expect(cohorts.owed(t + 5.99)).toBe(6);
  expect(cohorts.owed(t + 6.01)).toBe(0);
  expect(cohorts.dueBy(t + 6.01)).toBeUndefined();
  // A cohort back whole is not waited for.
  cohorts.settled(10, t + 10);
  rate.add(10, t + 11);
  cohorts.arrived(10, t + 11);
  expect(cohorts.owed(t + 11)).toBe(0);
  expect(cohorts.dueBy(t + 11)).toBeUndefined();
});

test('a lone caller in a loop never waits for itself, and open cohorts stay bounded', () => {
  const rate = new ArrivalRate();
  const cohorts = new Cohorts(learned(6, 0.05), rate);
  for (let t = 0; t < 1000; t += 3) {
    cohorts.settled(1, t);
    rate.add(1, t + 0.5);
    cohorts.arrived(1, t + 0.5);
    expect(cohorts.owed(t + 0.5)).toBe(0);
  }
  // A thousand one-row batches settling at once, none back: at most MAX_OPEN are owed.
  for (let i = 0; i < 1000; i++) cohorts.settled(1, 2000);
  expect(cohorts.owed(2000)).toBe(Cohorts.MAX_OPEN);
});

test('a client that left the loop is still a loop, and is not waited for: a cohort short of its usual missing row is back', () => {
  // Batches of 10 rows, 9 of them back 1 ms after each settles: one client is gone for good.
  const { rate, cohorts, t } = loopOf(40, 10, 9);
  expect(cohorts.closedLoop).toBe(true);
  cohorts.settled(10, t);
  // Still 10 owed: the nine who come back are waited for.
  expect(cohorts.dueBy(t)).toBeDefined();
  rate.add(9, t + 1);
  cohorts.arrived(9, t + 1);
  // The one row left is the one that never comes: the cohort counts as back, and no batch waits for it.
  expect(cohorts.owed(t + 1)).toBe(0);
  expect(cohorts.dueBy(t + 1)).toBeUndefined();
});
