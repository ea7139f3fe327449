import { expect, test } from 'vitest';
import { collect, counting } from './stream-helpers.js';

test('continuous: finished sequences leave and waiting ones join at the next step boundary', async () => {
  const { generate, steps, started } = counting();
  const [a, b, c] = await Promise.all([
    collect(generate({ id: 'A', length: 1 })),
    collect(generate({ id: 'B', length: 3 })),
    collect(generate({ id: 'C', length: 2 })),
  ]);
  expect(steps).toEqual([
    ['A', 'B'],
    ['B', 'C'],
    ['B', 'C'],
  ]);
  expect(started).toEqual([['A', 'B'], ['C']]);
  expect([a.values, b.values, c.values]).toEqual([['A:0'], ['B:0', 'B:1', 'B:2'], ['C:0', 'C:1']]);
  expect(generate.stats).toMatchObject({
    steps: 3,
    values: 6,
    active: 0,
    waiting: 0,
    ended: { done: 3, error: 0, aborted: 0, timeout: 0 },
  });
});

test("static: a group runs to the end of its longest sequence, and nobody joins it (Ray's behaviour)", async () => {
  const { generate, steps } = counting({ mode: 'static' });
  await Promise.all([
    collect(generate({ id: 'A', length: 1 })),
    collect(generate({ id: 'B', length: 3 })),
    collect(generate({ id: 'C', length: 2 })),
  ]);
  expect(steps).toEqual([['A', 'B'], ['B'], ['B'], ['C'], ['C']]);
});

test('no step exceeds maxBatchSize; a sequence never waits for a running group to end', async () => {
  const { generate, steps } = counting({ maxBatchSize: 3 });
  const runs = ['P', 'Q', 'R', 'S', 'T'].map((id, i) => collect(generate({ id, length: i + 1 })));
  await Promise.all(runs);
  for (const step of steps) expect(step.length).toBeLessThanOrEqual(3);
  // S joins as soon as P leaves (after step 1), T as soon as Q leaves (after step 2).
  expect(steps.slice(0, 3)).toEqual([
    ['P', 'Q', 'R'],
    ['Q', 'R', 'S'],
    ['R', 'S', 'T'],
  ]);
});
