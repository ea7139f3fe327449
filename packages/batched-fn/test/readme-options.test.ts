import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { OPTION_SCHEMA } from '../dist/option-schema.js';

// The option table of docs/library.md (the README's API reference) is the schema's, row for row: an option added,
// renamed or re-ruled in one place and not the other fails here.
const readme = readFileSync(new URL('../../../docs/library.md', import.meta.url), 'utf8');

function table(header: string): string[] {
  const lines = readme.split('\n');
  const start = lines.indexOf(header);
  expect(start).toBeGreaterThan(-1);
  const rows: string[] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(line);
  }
  return rows;
}

test("docs/library.md's batchedFn options table lists exactly the schema's options, with its types, defaults and rules", () => {
  const expected = Object.entries(OPTION_SCHEMA).map(
    ([name, spec]) => `| \`${name}\` | ${spec.type} | ${spec.shownDefault} | ${spec.rule} |`,
  );
  expect(table('| Option | Type | Default | Rule |')).toEqual(expected);
});

test('every option with a default shows that default in docs/library.md', () => {
  for (const [name, spec] of Object.entries(OPTION_SCHEMA)) {
    if (!('default' in spec)) continue;
    const shown = typeof spec.default === 'string' ? `\`'${spec.default}'\`` : `\`${String(spec.default)}\``;
    expect(spec.shownDefault.startsWith(shown), `${name}: ${spec.shownDefault} vs ${shown}`).toBe(true);
  }
});
