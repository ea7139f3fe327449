import { expect, test } from 'vitest';
import { Overlap } from '../src/policy/overlap.js';

// Overlap learns whether batches running at once slow each other, from their durations alone. Each scenario
// plays batches of the cost c(n) = 2 + 0.5·n ms on two batch slots, as a device of each kind would run them.

const cost = (rows: number): number => 2 + 0.5 * rows;

/** A batch that began at `start` and ended at `end`, reported in the order the runner would: starts, then ends. */
interface Run {
  start: number;
  end: number;
  rows: number;
}

function play(overlap: Overlap, runs: Run[]): void {
  const events: { at: number; run: Run; begins: boolean }[] = [];
  for (const run of runs) events.push({ at: run.start, run, begins: true }, { at: run.end, run, begins: false });
  // At the same instant, a batch ends before another begins (the runner settles, then the pump dispatches).
  events.sort((x, y) => x.at - y.at || Number(x.begins) - Number(y.begins));
  for (const { at, run, begins } of events) {
    if (begins) overlap.began(run, at);
    else overlap.ended(run, at, run.rows, run.end - run.start, true);
  }
}

/** Batches alone first, sizes 1..16: the curve of a batch alone is learned. */
function alone(from: number): { runs: Run[]; at: number } {
  const runs: Run[] = [];
  let at = from;
  for (let rows = 1; rows <= 16; rows++) {
    runs.push({ start: at, end: at + cost(rows), rows });
    at += cost(rows) + 1;
  }
  return { runs, at };
}

/**
 * Pairs of batches of `rows` rows, the second starting `lag` ms after the first, on a device of `kind`; every
 * `aloneEvery`-th pair is followed by a batch alone (as a slot freeing while the other is idle brings).
 */
function pairs(
  kind: 'own' | 'turns' | 'slices',
  from: number,
  count: number,
  rows: (i: number) => number,
  aloneEvery = 10,
): Run[] {
  const runs: Run[] = [];
  let at = from;
  for (let i = 0; i < count; i++) {
    const n = rows(i);
    const c = cost(n);
    if (i % aloneEvery === aloneEvery - 1) {
      runs.push({ start: at, end: at + c, rows: n });
      at += c + 1;
    }
    const lag = (i % 4) * 0.25 * c; // overlaps of 100, 75, 50 and 25 % of a batch
    if (kind === 'own') {
      runs.push({ start: at, end: at + c, rows: n }, { start: at + lag, end: at + lag + c, rows: n });
    } else if (kind === 'turns') {
      // The second waits for the first, then runs.
      runs.push({ start: at, end: at + c, rows: n }, { start: at + lag, end: at + 2 * c, rows: n });
    } else {
      // Both at half speed while both run: the first ends at lag + 2(c − lag) = 2c − lag, the second c − lag later.
      runs.push({ start: at, end: at + 2 * c - lag, rows: n }, { start: at + lag, end: at + 3 * c - lag, rows: n });
    }
    at += 4 * c;
  }
  return runs;
}

test('before any batch has run beside another, a second slot is taken to gain nothing (efficiency 0)', () => {
  const overlap = new Overlap();
  play(overlap, alone(0).runs);
  expect(overlap.efficiency).toBe(0);
});

const KINDS = [
  ['own', 'slots with a device each: batches beside each other take what they take alone', 1],
  ['turns', 'one device taking batches in turns', 0],
  ['slices', 'one device sharing itself between batches', 0],
] as const;

for (const [kind, what, efficiency] of KINDS) {
  test(`${what}: efficiency ${efficiency}`, () => {
    const overlap = new Overlap();
    const start = alone(0);
    play(overlap, [...start.runs, ...pairs(kind, start.at, 60, (i) => 1 + (i % 16))]);
    expect(overlap.efficiency).toBeCloseTo(efficiency, 6);
  });
}

test('a device that turns shared is noticed within a memory of batches', () => {
  const overlap = new Overlap();
  const start = alone(0);
  const own = pairs('own', start.at, 30, (i) => 1 + (i % 16));
  const last = own.at(-1) as Run;
  play(overlap, [...start.runs, ...own]);
  expect(overlap.efficiency).toBeCloseTo(1, 6);
  play(
    overlap,
    pairs('slices', last.end + 1, 60, (i) => 1 + (i % 16)),
  );
  // The sums forget at 0.98 a batch: after 120 batches on the shared device the 60 before weigh 0.98^120 ≈ 9 %.
  expect(overlap.efficiency).toBeLessThan(0.2);
});

/** An Overlap that has learned independent slots (efficiency 1) from `count` pairs; and when their last batch ended. */
function learnedIndependent(count: number): { overlap: Overlap; end: number } {
  const overlap = new Overlap();
  const start = alone(0);
  const own = pairs('own', start.at, count, (i) => 1 + (i % 16));
  play(overlap, [...start.runs, ...own]);
  expect(overlap.efficiency).toBeCloseTo(1, 6);
  return { overlap, end: Math.max(...own.map((run) => run.end)) };
}

test('without a batch alone for 50 settled batches, the curve alone is stale: efficiency 0 until one runs', () => {
  const { overlap, end } = learnedIndependent(20);
  // 26 pairs (52 batches) beside each other, none alone: a curve learned during a slow start would never be
  // corrected, and a shared device could stay planned as independent.
  const stale = pairs('own', end + 1, 26, (i) => 1 + (i % 16), Number.POSITIVE_INFINITY);
  play(overlap, stale);
  expect(overlap.efficiency).toBe(0);
  // Evidence starts over once batches run alone again.
  play(
    overlap,
    pairs('own', (stale.at(-1) as Run).end + 1, 30, (i) => 1 + (i % 16), 2),
  );
  expect(overlap.efficiency).toBeCloseTo(1, 6);
});

test('a batch failing beside others makes its neighbours no evidence: efficiency 0, evidence starts over', () => {
  const { overlap, end } = learnedIndependent(30);
  // One device, where the second of each pair waits its turn and then fails at once (out of memory, say): the first
  // would count its time beside it as on time, and the device read as independent.
  let at = end + 1;
  for (let i = 0; i < 30; i++) {
    const first = { rows: 8 };
    const second = { rows: 8 };
    const c = cost(8);
    overlap.began(first, at);
    overlap.began(second, at + c / 2);
    overlap.ended(first, at + c, 8, c, true);
    overlap.ended(second, at + c, 8, c / 2, false);
    at += 2 * c;
  }
  expect(overlap.efficiency).toBe(0);
});

test("overlaps under a fifth of the batches' time are not read: they amplify the curve's own error", () => {
  const overlap = new Overlap();
  const start = alone(0);
  // A shared device whose batches overlap by 5 % of their time (a second batch starting as the first ends), with a
  // curve alone 2 % too slow: read, lateness 0.05c/2 against a curve 0.02c high gives efficiency 1 − 2(0.025 − 0.02)
  // / 0.05 = 0.8. Batches alone in between keep the curve fresh.
  const runs: Run[] = [];
  let at = start.at;
  for (let i = 0; i < 80; i++) {
    const n = 1 + (i % 16);
    const c = cost(n);
    const lag = 0.95 * c;
    runs.push({ start: at, end: at + c, rows: n }, { start: at + lag, end: at + 2 * c, rows: n });
    runs.push({ start: at + 2 * c + 1, end: at + 3 * c + 1, rows: n });
    at += 3 * c + 2;
  }
  play(overlap, [...start.runs.map((r) => ({ ...r, end: r.start + 1.02 * (r.end - r.start) })), ...runs]);
  expect(overlap.efficiency).toBe(0);
});

test('batches larger than any that ran alone are not compared: the curve would extrapolate', () => {
  const overlap = new Overlap();
  const start = alone(0);
  // One device sharing itself, and a model whose cost stops growing past 16 rows: 32-row batches take what
  // 16-row ones do alone. Against the line through sizes 1..16 (18 ms at 32 rows), two 32-row batches beside each
  // other (10 ms alone, up to 20 together) would look on time, and the device independent (efficiency ~0.6-0.8).
  const flat = (rows: number): number => cost(Math.min(rows, 16));
  const runs: Run[] = [];
  let at = start.at;
  for (let i = 0; i < 60; i++) {
    const c = flat(32);
    const lag = (i % 4) * 0.25 * c;
    runs.push({ start: at, end: at + 2 * c - lag, rows: 32 }, { start: at + lag, end: at + 3 * c - lag, rows: 32 });
    at += 4 * c;
  }
  play(overlap, [...start.runs, ...runs]);
  expect(overlap.efficiency).toBe(0);
});

test('failed batches and batches never begun teach nothing', () => {
  const overlap = new Overlap();
  const start = alone(0);
  play(overlap, start.runs);
  const a = { rows: 8 };
  const b = { rows: 8 };
  for (let i = 0; i < 50; i++) {
    const at = start.at + i * 40;
    overlap.began(a, at);
    overlap.began(b, at);
    // Both as fast as alone (what independent slots would show), but failed: their durations are not the handler's.
    overlap.ended(a, at + cost(8), 8, cost(8), false);
    overlap.ended(b, at + cost(8), 8, cost(8), false);
  }
  overlap.ended({}, start.at + 5000, 8, 1000, true);
  expect(overlap.efficiency).toBe(0);
});
