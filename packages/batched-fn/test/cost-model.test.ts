import { expect, test } from 'vitest';
import { AdaptivePolicy } from '../src/policy/adaptive.js';
import { ArrivalRate, CostModel } from '../src/policy/cost-model.js';
import { Traffic } from '../src/policy/traffic.js';

test('recovers an exact linear cost curve', () => {
  const model = new CostModel();
  for (let i = 0; i < 40; i++) {
    const n = 1 + (i % 16);
    model.observe(n, 2 + 0.05 * n);
  }
  expect(model.confident).toBe(true);
  expect(model.a).toBeCloseTo(2, 6);
  expect(model.b).toBeCloseTo(0.05, 6);
  expect(model.predict(64)).toBeCloseTo(5.2, 5);
});

test('is not confident before enough batches, nor with a single batch size', () => {
  const model = new CostModel();
  for (let i = 0; i < 7; i++) model.observe(1 + i, 2 + 0.05 * (1 + i));
  expect(model.confident).toBe(false);
  const single = new CostModel();
  for (let i = 0; i < 30; i++) single.observe(8, 3);
  expect(single.confident).toBe(false);
  expect(single.predict(8)).toBeCloseTo(3, 6);
  expect(single.b).toBe(0);
});

test('one stall does not drag the curve: outliers are clipped to 3 sigma', () => {
  const model = new CostModel();
  let seed = 1;
  const noise = () => {
    seed = (seed * 16807) % 2147483647;
    return (seed / 2147483647 - 0.5) * 0.2;
  };
  for (let i = 0; i < 200; i++) {
    const n = 1 + (i % 32);
    model.observe(n, 2 + 0.05 * n + noise());
  }
  const before = model.predict(32);
  model.observe(32, 500); // a GC pause
  expect(Math.abs(model.predict(32) - before)).toBeLessThan(0.05);
  expect(model.a).toBeCloseTo(2, 0);
});

test('costs never go negative', () => {
  const model = new CostModel();
  for (let i = 0; i < 20; i++) model.observe(1 + (i % 4), 5 - (i % 4)); // falling with size: nonsense data
  expect(model.b).toBeGreaterThanOrEqual(0);
  expect(model.a).toBeGreaterThanOrEqual(0);
});

test('arrival rate: a steady stream converges to its rate, and silence decays it', () => {
  const rate = new ArrivalRate();
  for (let t = 0; t <= 1000; t += 1) rate.add(2, t);
  expect(rate.at(1000)).toBeCloseTo(2, 1);
  expect(rate.at(1000 + 5 * ArrivalRate.TAU_MS)).toBeLessThan(0.02);
});

function trained(a: number, b: number): CostModel {
  const model = new CostModel();
  for (let i = 0; i < 40; i++) model.observe(1 + (i % 16), a + b * (1 + (i % 16)));
  return model;
}

/** Rows arriving steadily, and no batch settled yet: never a closed loop. */
function steadyArrivals(rowsPerMs: number, until: number): Traffic {
  const rate = new ArrivalRate();
  for (let t = 0; t <= until; t += 1) rate.add(rowsPerMs, t);
  return new Traffic(trained(2, 0.05), { lanes: 'one' }, rate);
}

const lane = (rows: number, oldestArrival = 1000) => ({ rows, oldestArrival, maxRows: 64 });

test('adaptive: at low load a lone call goes at once', () => {
  const policy = new AdaptivePolicy(trained(2, 0.05), steadyArrivals(0.05, 1000), undefined);
  expect(policy.stableRows(0.05)).toBeLessThan(1);
  expect(policy.decide(lane(1), 1000, 'arrival', 0)).toBe('adaptive');
});

test('adaptive: waits until the batch is big enough to keep up, n >= floor(a·λ / (0.9 − b·λ))', () => {
  // λ = 5 rows/ms, a = 2 ms, b = 0.05 ms: 10 / (0.9 − 0.25) = 15.4 rows.
  const policy = new AdaptivePolicy(trained(2, 0.05), steadyArrivals(5, 1000), undefined);
  expect(policy.stableRows(5)).toBeCloseTo(15.38, 1);
  const wake = policy.decide(lane(1), 1000, 'arrival', 0);
  expect(wake as number).toBeCloseTo(1000 + 1 / 5, 1); // look again when the next caller is due
  expect(typeof policy.decide(lane(14), 1000, 'arrival', 0)).toBe('number');
  expect(policy.decide(lane(15), 1000, 'arrival', 0)).toBe('adaptive');
});

test('adaptive: near saturation it waits for a full batch', () => {
  // b·λ >= 0.9: no batch size keeps up with headroom, so fill to maxRows.
  const policy = new AdaptivePolicy(trained(2, 0.05), steadyArrivals(20, 1000), undefined);
  expect(policy.stableRows(20)).toBe(Number.POSITIVE_INFINITY);
  expect(typeof policy.decide(lane(63), 1000, 'arrival', 0)).toBe('number');
  expect(policy.decide({ rows: 64, oldestArrival: 1000, maxRows: 64 }, 1000, 'arrival', 0)).toBe('adaptive');
});

test('adaptive: the wait is capped by the time to gather the rows, and by the latency target', () => {
  const model = trained(2, 0.05);
  const arrivals = steadyArrivals(5, 1000);
  const free = new AdaptivePolicy(model, arrivals, undefined);
  // Gathering 15 rows at 5 per ms takes 3 ms: past that, go with what there is.
  expect(free.decide(lane(3, 996.9), 1000, 'arrival', 0)).toBe('adaptive');
  const strict = new AdaptivePolicy(model, arrivals, 3);
  // The oldest call must finish by 1003: with c(15) = 2.75 ms the batch must leave by 1000.25.
  expect(strict.decide(lane(1), 1000.1, 'arrival', 0) as number).toBeCloseTo(1000.25, 1);
  expect(strict.decide(lane(1), 1000.3, 'arrival', 0)).toBe('adaptive');
});

test('adaptive: before the curve is learned it behaves like maxDelay 0', () => {
  const policy = new AdaptivePolicy(new CostModel(), steadyArrivals(10, 1000), undefined);
  expect(policy.decide(lane(1), 1000, 'arrival', 0)).toBe('adaptive');
});
