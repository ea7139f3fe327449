import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts', 'examples/**/*.test.ts', 'test/*.test.ts'],
    // Fails the run when it leaves files in the checkout or the temp folder.
    globalSetup: ['test/clean-run.ts'],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    pool: 'forks',
    // The public types (packages/*/test/*.test-d.ts) are tests too: tsc checks them against the built .d.ts.
    typecheck: { enabled: true, include: ['**/*.test-d.ts'], tsconfig: 'tsconfig.type-tests.json' },
  },
});
