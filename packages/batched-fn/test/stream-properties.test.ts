import { expect, test } from 'vitest';
import fc from 'fast-check';
import { batchedStream } from 'batched-fn';

interface Plan {
  length: number;
  fail: number | undefined;
  /** Abort after reading this many values (or never). */
  abortAfter: number | undefined;
  /** Break out of the loop after this many values (or never). */
  breakAfter: number | undefined;
  delayed: boolean;
}

// Random schedules of joins, lengths, aborts, breaks and faults: every stream ends exactly once, no
// step exceeds maxBatchSize, each stream's values arrive in order, and nothing arrives after its end.
test('random schedules: streams end once, steps stay within maxBatchSize, values in order', async () => {
  const plan = fc.record({
    length: fc.integer({ min: 1, max: 6 }),
    fail: fc.option(fc.integer({ min: 0, max: 5 }), { nil: undefined }),
    abortAfter: fc.option(fc.integer({ min: 0, max: 5 }), { nil: undefined }),
    breakAfter: fc.option(fc.integer({ min: 0, max: 5 }), { nil: undefined }),
    delayed: fc.boolean(),
  });
  await fc.assert(
    fc.asyncProperty(
      fc.array(plan, { minLength: 1, maxLength: 20 }),
      fc.integer({ min: 1, max: 4 }),
      fc.integer({ min: 1, max: 2 }),
      fc.constantFrom('continuous' as const, 'static' as const),
      fc.boolean(),
      async (plans, maxBatchSize, concurrency, mode, stepThrows) => {
        const violations: string[] = [];
        let stepNo = 0;
        const generate = batchedStream<{ id: number; plan: Plan }, { id: number; n: number; plan: Plan }, string>({
          start: (inputs) => inputs.map((input) => ({ id: input.id, n: 0, plan: input.plan })),
          step: async (states) => {
            if (states.length > maxBatchSize) violations.push(`step of ${states.length}`);
            if (stepThrows && ++stepNo % 7 === 0) throw new Error('step threw');
            await new Promise((resolve) => setImmediate(resolve));
            return states.map((s) => {
              if (s.plan.fail === s.n) return new Error('slot failed');
              const value = `${s.id}:${s.n++}`;
              return { value, done: s.n >= s.plan.length };
            });
          },
          maxBatchSize,
          concurrency,
          mode,
          maxDelay: 0,
        });
        const reads = plans.map(async (p, id) => {
          if (p.delayed) await new Promise((resolve) => setTimeout(resolve, 1));
          const controller = new AbortController();
          const values: string[] = [];
          let endings = 0;
          try {
            for await (const value of generate({ id, plan: p }, { signal: controller.signal })) {
              values.push(value);
              if (p.abortAfter === values.length) controller.abort(new Error('aborted'));
              if (p.breakAfter === values.length) break;
            }
            endings++;
          } catch {
            endings++;
          }
          if (endings !== 1) violations.push(`stream ${id} ended ${endings} times`);
          if (values.length > p.length)
            violations.push(`stream ${id} got ${values.length} values for length ${p.length}`);
          values.forEach((v, n) => {
            if (v !== `${id}:${n}`) violations.push(`stream ${id} value ${n} is ${v}`);
          });
        });
        await Promise.all(reads);
        await generate.close();
        expect(violations).toEqual([]);
        const stats = generate.stats;
        expect(stats.active + stats.waiting).toBe(0);
        const ended = stats.ended;
        expect(ended.done + ended.error + ended.aborted + ended.timeout).toBe(plans.length);
      },
    ),
    { numRuns: Number(process.env.FC_RUNS ?? 100) },
  );
});
