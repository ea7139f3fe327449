import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { readmeRows } from '../dist/cli/flags.js';

// The serve flag table of docs/server.md (the README's server reference) is the flag schema's, row for row.
test("docs/server.md's serve flag table matches the flag schema", () => {
  const lines = readFileSync(new URL('../../../docs/server.md', import.meta.url), 'utf8').split('\n');
  const start = lines.indexOf('| Flag | Default | Meaning |');
  expect(start).toBeGreaterThan(-1);
  const rows: string[] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(line);
  }
  expect(rows).toEqual(readmeRows());
});
