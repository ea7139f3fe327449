import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, test } from 'vitest';

// The README is the front door and docs/ holds the rest: every page is reachable from the README, and every link
// between the project's own pages lands on a file and a heading that exist (a renamed heading fails here).
const root = fileURLToPath(new URL('../', import.meta.url));
const docs = readdirSync(join(root, 'docs'))
  .filter((name) => name.endsWith('.md'))
  .map((name) => `docs/${name}`);
const packages = readdirSync(join(root, 'packages')).map((name) => `packages/${name}/README.md`);
const pages = ['README.md', 'CONTRIBUTING.md', 'ARCHITECTURE.md', ...docs, ...packages].filter((page) =>
  existsSync(join(root, page)),
);
const read = (page: string): string => readFileSync(join(root, page), 'utf8');

/** The page's text outside fenced code blocks (a `# comment` in a shell block is no heading, a link there no link). */
function prose(text: string): string {
  return text.replace(/^```[\s\S]*?^```/gm, '');
}

/** GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const [, heading] of prose(text).matchAll(/^#{1,6} (.+)$/gm)) {
    const slug = (heading as string)
      .toLowerCase()
      .replace(/[^\p{L}\p{N} _-]/gu, '')
      .replace(/ /g, '-');
    const count = seen.get(slug) ?? 0;
    seen.set(slug, count + 1);
    out.add(count === 0 ? slug : `${slug}-${count}`);
  }
  return out;
}

test('the README fits in about 200 lines and links every page of docs/', () => {
  const readme = read('README.md');
  expect(readme.trimEnd().split('\n').length).toBeLessThanOrEqual(200);
  expect(docs.length).toBeGreaterThanOrEqual(8);
  for (const page of docs) expect(readme, page).toContain(`](${page})`);
});

test("every relative link in the project's pages lands on a file, and on a heading of it", () => {
  const broken: string[] = [];
  let checked = 0;
  for (const page of pages) {
    for (const [, target] of prose(read(page)).matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/.test(target as string)) continue; // https:, mailto:
      const [path, anchor] = (target as string).split('#') as [string, string | undefined];
      const file = path === '' ? page : relative(root, join(root, dirname(page), path));
      checked++;
      if (!existsSync(join(root, file))) broken.push(`${page}: ${target} (no file ${file})`);
      else if (anchor !== undefined && !anchors(read(file)).has(anchor)) broken.push(`${page}: ${target} (no heading)`);
    }
  }
  expect(broken).toEqual([]);
  expect(checked).toBeGreaterThan(50);
});

test('every package that can be packed names its repository (with its folder), homepage and bugs', () => {
  for (const name of readdirSync(join(root, 'packages'))) {
    const manifest = JSON.parse(read(`packages/${name}/package.json`));
    if (manifest.private) continue;
    expect(manifest.repository, name).toEqual({
      type: 'git',
      url: 'git+https://github.com/batched-fn/batched-fn.git',
      directory: `packages/${name}`,
    });
    expect(manifest.homepage, name).toBe('https://github.com/batched-fn/batched-fn#readme');
    expect(manifest.bugs, name).toEqual({ url: 'https://github.com/batched-fn/batched-fn/issues' });
  }
});
