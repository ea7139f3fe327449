import { execFile, execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, test } from 'vitest';
import { changedPaths } from './clean-run.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const vitest = join(dirname(createRequire(import.meta.url).resolve('vitest/package.json')), 'vitest.mjs');

/**
 * Runs the one-test fixture suite under the clean-run global setup, in a throwaway git checkout of its own, so that
 * files changing in this checkout meanwhile are not its business. LITTER says what its test leaves behind.
 */
async function run(litter: 'temp' | 'tree' | undefined): Promise<{ code: number | null; output: string }> {
  const checkout = mkdtempSync(join(tmpdir(), 'bfn-clean-run-'));
  try {
    execFileSync('git', ['init', '--quiet'], { cwd: checkout });
    symlinkSync(join(root, 'node_modules'), join(checkout, 'node_modules'));
    writeFileSync(join(checkout, '.gitignore'), 'node_modules\n');
    cpSync(
      fileURLToPath(new URL('./fixtures/clean-run/litter.test.ts', import.meta.url)),
      join(checkout, 'litter.test.ts'),
    );
    const setup = fileURLToPath(new URL('./clean-run.ts', import.meta.url));
    const config = { test: { include: ['litter.test.ts'], pool: 'forks', globalSetup: [setup] } };
    writeFileSync(join(checkout, 'vitest.config.mjs'), `export default ${JSON.stringify(config)};\n`);
    const env = { ...process.env, LITTER: litter ?? '', NO_COLOR: '1' };
    return await new Promise((resolve) => {
      execFile(process.execPath, [vitest, 'run'], { cwd: checkout, env, timeout: 60_000 }, (error, stdout, stderr) => {
        resolve({ code: error ? (error.code as number | null) : 0, output: stdout + stderr });
      });
    });
  } finally {
    rmSync(checkout, { recursive: true, force: true });
  }
}

test('a run that leaves nothing passes; a file left in the temp folder or the checkout fails it, by name', async () => {
  const [clean, temp, tree] = await Promise.all([run(undefined), run('temp'), run('tree')]);
  expect(clean.output).toContain('1 passed');
  expect(clean.output).not.toContain('did not clean up');
  expect(clean.code).toBe(0);

  expect(temp.output).toContain('1 passed');
  expect(temp.output).toContain(
    'The test run did not clean up after itself:\n- left in the temp folder: left-behind.txt\n',
  );
  expect(temp.code).toBe(1);

  expect(tree.output).toContain('1 passed');
  expect(tree.output).toContain(
    'The test run did not clean up after itself:\n- changed in the checkout: left-behind.tmp\n',
  );
  expect(tree.code).toBe(1);
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
