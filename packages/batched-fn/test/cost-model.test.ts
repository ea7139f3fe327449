import { expect, test } from 'vitest';
import { AdaptivePolicy } from '../src/policy/adaptive.js';
import { ArrivalRate, CostModel } from '../src/policy/cost-model.js';

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
  const noise = () => ((seed = (seed * 16807) % 2147483647) / 2147483647 - 0.5) * 0.2;
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

function steadyArrivals(rowsPerMs: number, until: number): ArrivalRate {
  const rate = new ArrivalRate();
  for (let t = 0; t <= until; t += 1) rate.add(rowsPerMs, t);
  return rate;
}

test('adaptive: at low load a lone call goes at once', () => {
  const policy = new AdaptivePolicy(trained(2, 0.05), steadyArrivals(0.05, 1000), undefined);
  expect(policy.decide({ rows: 1, oldestArrival: 1000 }, 1000, 'arrival')).toBe('adaptive');
});

test('adaptive: at high load it waits for the next caller while (n+1)/λ + n·b < a, then goes', () => {
  // λ = 10 rows/ms, a = 2 ms, b = 0.05 ms: waiting pays up to n = 12 and stops at n = 13.
  const policy = new AdaptivePolicy(trained(2, 0.05), steadyArrivals(10, 1000), undefined);
  const lambda = 10;
  const wake = policy.decide({ rows: 1, oldestArrival: 1000 }, 1000, 'arrival');
  expect(typeof wake).toBe('number');
  expect(wake as number).toBeCloseTo(1000 + 1 / lambda, 1);
  expect(typeof policy.decide({ rows: 12, oldestArrival: 1000 }, 1000, 'arrival')).toBe('number');
  expect(policy.decide({ rows: 13, oldestArrival: 1000 }, 1000, 'arrival')).toBe('adaptive');
});

test('adaptive: never waits longer than the fixed cost a, nor past the latency target', () => {
  const model = trained(2, 0.05);
  const busy = steadyArrivals(10, 1000);
  const free = new AdaptivePolicy(model, busy, undefined);
  expect(free.decide({ rows: 1, oldestArrival: 998 }, 1000, 'arrival')).toBe('adaptive'); // waited a = 2 ms already
  const strict = new AdaptivePolicy(model, busy, 3);
  // The oldest call must finish by 1000 + 3: with c(2) = 2.1 ms it has to leave by 1000.9.
  expect(strict.decide({ rows: 1, oldestArrival: 1000 }, 1000.85, 'arrival')).toBeCloseTo(1000.9, 6);
  expect(strict.decide({ rows: 1, oldestArrival: 1000 }, 1000.95, 'arrival')).toBe('adaptive');
});

test('adaptive: before the curve is learned it behaves like maxDelay 0', () => {
  const policy = new AdaptivePolicy(new CostModel(), steadyArrivals(10, 1000), undefined);
  expect(policy.decide({ rows: 1, oldestArrival: 1000 }, 1000, 'arrival')).toBe('adaptive');
});
