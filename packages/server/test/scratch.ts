import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

// Folders made here are removed when the test file that imported this module ends. The hook is registered on import,
// while that file is being collected, and vitest gives each test file its own copy of the module, hence its own list.
// Runs last among the file's afterAll hooks (they run in reverse order), after the servers using the folders close.
const made: string[] = [];
afterAll(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A fresh folder in the temp folder, named `prefix` plus six random characters, removed when the test file ends. */
export function scratchDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}
