import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { TestProject } from 'vitest/node';

/**
 * Vitest global setup: a test run leaves the checkout as it found it and removes every temporary file it made.
 *
 * The run gets a temporary folder of its own: TMPDIR is set here, before the fork workers start, so they and every
 * process they spawn inherit it, and `os.tmpdir()` points into it. At the end it must be empty. Counting only that
 * folder, and not the machine's temp folder, means other processes writing there at the same time are not blamed
 * on the run. The checkout is compared by `git status` plus each listed file's content, so a test that rewrites a
 * file that was already modified is caught too. Files git ignores (dist, node_modules, .cache) are not checked.
 */

declare module 'vitest' {
  export interface ProvidedContext {
    /** Generated models kept between runs (git-ignored), so the 72 MB default model is built once per checkout. */
    testCache: string;
  }
}

/** One line per path git reports as changed or untracked, with a hash of what the file holds now. */
export type TreeSnapshot = Map<string, string>;

/**
 * The checkout's top folder, or undefined outside a git checkout (an unpacked tarball) or without git. Any other
 * failure (say, git refusing a folder another user owns) is thrown: it must not turn the check off unseen.
 */
export function gitRoot(dir: string): string | undefined {
  try {
    return execFileSync('git', ['rev-parse', '--show-toplevel'], {
      cwd: dir,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    }).trim();
  } catch (error) {
    const { code, stderr } = error as { code?: string; stderr?: string };
    if (code === 'ENOENT' || /not a git repository/i.test(stderr ?? '')) return undefined;
    throw error;
  }
}

export function snapshotTree(root: string): TreeSnapshot {
  const status = execFileSync('git', ['status', '--porcelain=v1', '-z', '--untracked-files=all'], {
    cwd: root,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  const entries = status.split('\0');
  const snapshot: TreeSnapshot = new Map();
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i] as string;
    if (entry.length < 4) continue;
    const code = entry.slice(0, 2);
    const path = entry.slice(3);
    // A rename or copy is followed by its source path, which is not an entry of its own.
    if (code.includes('R') || code.includes('C')) i++;
    snapshot.set(path, `${code} ${contentHash(join(root, path))}`);
  }
  return snapshot;
}

function contentHash(file: string): string {
  try {
    const stats = lstatSync(file);
    const bytes = stats.isSymbolicLink() ? Buffer.from(readlinkSync(file)) : readFileSync(file);
    return createHash('sha1').update(bytes).digest('hex');
  } catch {
    return 'absent';
  }
}

/** Paths whose git status or content differ between two snapshots, sorted. */
export function changedPaths(before: TreeSnapshot, after: TreeSnapshot): string[] {
  const paths = new Set([...before.keys(), ...after.keys()]);
  return [...paths].filter((path) => before.get(path) !== after.get(path)).sort();
}

/** Names, comma-separated; past 20 only how many more, so a run that litters everywhere stays readable. */
function listed(names: string[]): string {
  const shown = names.slice(0, 20).join(', ');
  return names.length > 20 ? `${shown} and ${names.length - 20} more` : shown;
}

export default function setup(project: TestProject): () => void {
  const root = project.config.root;
  const gitTop = gitRoot(root);
  const treeBefore = gitTop === undefined ? undefined : snapshotTree(gitTop);

  const testCache = resolve(gitTop ?? root, '.cache', 'test-models');
  mkdirSync(testCache, { recursive: true });
  project.provide('testCache', testCache);

  const previous: Record<string, string | undefined> = {
    TMPDIR: process.env.TMPDIR,
    TMP: process.env.TMP,
    TEMP: process.env.TEMP,
    NODE_DISABLE_COMPILE_CACHE: process.env.NODE_DISABLE_COMPILE_CACHE,
  };
  const runTemp = mkdtempSync(join(tmpdir(), 'batched-fn-run-'));
  // os.tmpdir() reads TMPDIR on POSIX and TMP/TEMP on Windows, at each call.
  process.env.TMPDIR = process.env.TMP = process.env.TEMP = runTemp;
  // tsc (the type tests) turns on Node's compile cache, which on Node 22 and later is a folder in the temp folder.
  process.env.NODE_DISABLE_COMPILE_CACHE = '1';

  return () => {
    for (const [name, value] of Object.entries(previous)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    const problems: string[] = [];
    const leftovers = readdirSync(runTemp).sort();
    if (leftovers.length > 0) problems.push(`left in the temp folder: ${listed(leftovers)}`);
    rmSync(runTemp, { recursive: true, force: true });
    if (gitTop !== undefined && treeBefore !== undefined) {
      const changed = changedPaths(treeBefore, snapshotTree(gitTop));
      if (changed.length > 0) problems.push(`changed in the checkout: ${listed(changed)}`);
    }
    if (problems.length > 0) {
      // Vitest logs an error thrown here but keeps exit code 0, so the run is failed explicitly.
      process.exitCode = 1;
      throw new Error(`The test run did not clean up after itself:\n- ${problems.join('\n- ')}`);
    }
  };
}
