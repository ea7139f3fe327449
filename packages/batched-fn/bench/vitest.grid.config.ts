import { defineConfig } from 'vitest/config';

// Simulations on the tests' fake clock (bench/*.grid.ts), kept out of `npm test`: they take minutes.
export default defineConfig({
  test: { include: ['packages/batched-fn/bench/*.grid.ts'], pool: 'forks', testTimeout: 1_800_000 },
});
