import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, test } from 'vitest';
import { changedPaths } from './clean-run.js';

const vitest = join(dirname(createRequire(import.meta.url).resolve('vitest/package.json')), 'vitest.mjs');
const fixture = fileURLToPath(new URL('./fixtures/clean-run', import.meta.url));

/** Runs the one-test fixture suite under the clean-run global setup; LITTER says what its test leaves behind. */
function run(litter: 'temp' | 'tree' | undefined): Promise<{ code: number | null; output: string }> {
  const env = { ...process.env, LITTER: litter ?? '', NO_COLOR: '1' };
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [vitest, 'run', '--root', fixture],
      { env, timeout: 60_000 },
      (error, stdout, stderr) => {
        resolve({ code: error ? (error.code as number | null) : 0, output: stdout + stderr });
      },
    );
  });
}

// The three runs go one after the other: each checks the whole checkout, so one's litter would fail another.
test('a run that leaves nothing passes; a file left in the temp folder or the checkout fails it, by name', async () => {
  const clean = await run(undefined);
  expect(clean.output).toContain('1 passed');
  expect(clean.code).toBe(0);

  const temp = await run('temp');
  expect(temp.output).toContain('1 passed');
  expect(temp.output).toContain(
    'The test run did not clean up after itself:\n- left in the temp folder: left-behind.txt\n',
  );
  expect(temp.code).toBe(1);

  try {
    const tree = await run('tree');
    expect(tree.output).toContain('1 passed');
    expect(tree.output).toContain(
      'The test run did not clean up after itself:\n- changed in the checkout: test/fixtures/clean-run/left-behind.tmp\n',
    );
    expect(tree.code).toBe(1);
  } finally {
    rmSync(join(fixture, 'left-behind.tmp'), { force: true });
  }
}, 120_000);

test('a file rewritten while already modified counts as changed, and so does one restored', () => {
  const before = new Map([
    ['a.ts', ' M 1111'],
    ['b.ts', ' M 2222'],
  ]);
  const after = new Map([
    ['a.ts', ' M 3333'],
    ['c.ts', '?? 4444'],
  ]);
  expect(changedPaths(before, after)).toEqual(['a.ts', 'b.ts', 'c.ts']);
  expect(changedPaths(before, new Map(before))).toEqual([]);
});
