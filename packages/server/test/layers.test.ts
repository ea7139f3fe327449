import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { expect, test } from 'vitest';

// The import graph of every package's sources, read from their import statements (type-only
// imports and `export ... from` included: a type is a dependency too) and from the worker modules
// they start (`new URL('./x.worker.js', import.meta.url)`).
const PACKAGES = fileURLToPath(new URL('../..', import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [path] : [];
  });
}

const WORKER_URL = /new URL\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*,\s*import\.meta\.url/g;

/** Each file of `src` (relative to it) and the files of `src` it imports. */
function importGraph(src: string): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sources(src)) {
    const text = readFileSync(file, 'utf8');
    const specifiers = [
      ...ts.preProcessFile(text, true, true).importedFiles.map((f) => f.fileName),
      ...[...text.matchAll(WORKER_URL)].map((m) => m[1] as string),
    ];
    const targets = specifiers
      .filter((s) => s.startsWith('.'))
      .map((s) => relative(src, resolve(dirname(file), s)).replace(/\.js$/, '.ts'));
    graph.set(relative(src, file), [...new Set(targets.filter((t) => !t.startsWith('..') && t.endsWith('.ts')))]);
  }
  return graph;
}

/** Every import circle: strongly connected components of more than one file (Tarjan), and self-imports. */
function circles(graph: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v) as number, index.get(w) as number));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop() as string;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(component.sort());
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

test.each(['batched-fn', 'server', 'redis'])('%s: no import circles in src', (name) => {
  const graph = importGraph(join(PACKAGES, name, 'src'));
  expect(graph.size).toBeGreaterThan(5);
  expect(circles(graph)).toEqual([]);
});

/**
 * The server's layers (ARCHITECTURE.md), highest first. A file may import its own layer and any
 * layer ranked below it; layers of one rank are peers and never import each other (REST and gRPC;
 * metrics and OpenTelemetry; the contract and the built-in models).
 */
const LAYERS: readonly { layer: string; rank: number; files: RegExp }[] = [
  { layer: 'entry', rank: 10, files: /^index\.ts$/ },
  { layer: 'cli', rank: 9, files: /^cli\// },
  { layer: 'composition', rank: 8, files: /^(server|optional)\.ts$/ },
  { layer: 'rest', rank: 7, files: /^rest\// },
  { layer: 'grpc', rank: 7, files: /^grpc\// },
  { layer: 'openai', rank: 7, files: /^openai\// },
  { layer: 'dashboard', rank: 6, files: /^dashboard\// },
  { layer: 'metrics', rank: 5, files: /^metrics\// },
  { layer: 'otel', rank: 5, files: /^otel\// },
  { layer: 'protocol', rank: 4, files: /^protocol\// },
  { layer: 'repository', rank: 3, files: /^repository\// },
  { layer: 'formats', rank: 2, files: /^formats\// },
  { layer: 'builtin', rank: 1, files: /^builtin\// },
  { layer: 'model', rank: 1, files: /^model\// },
  { layer: 'settings', rank: 0, files: /^settings\// },
  { layer: 'log', rank: 0, files: /^log\.ts$/ },
];

const layerOf = (file: string) => LAYERS.find((l) => l.files.test(file));

/** The edges that go up, or across to a peer: `file (layer) -> target (layer)`. */
function backEdges(graph: Map<string, string[]>): string[] {
  const found: string[] = [];
  for (const [file, targets] of graph) {
    const from = layerOf(file);
    for (const target of targets) {
      const to = layerOf(target);
      if (from === undefined || to === undefined || from.layer === to.layer || from.rank > to.rank) continue;
      found.push(`${file} (${from.layer}) -> ${target} (${to.layer})`);
    }
  }
  return found;
}

test('server: every file has a layer, and no layer imports a higher one (or a peer)', () => {
  const graph = importGraph(join(PACKAGES, 'server', 'src'));
  expect([...graph.keys()].filter((file) => layerOf(file) === undefined)).toEqual([]);
  expect(backEdges(graph)).toEqual([]);
});

test('server: an import that goes up is caught, and one back makes a circle', () => {
  const graph = importGraph(join(PACKAGES, 'server', 'src'));
  graph.set('model/served-model.ts', [...(graph.get('model/served-model.ts') ?? []), 'cli/flags.ts']);
  expect(backEdges(graph)).toEqual(['model/served-model.ts (model) -> cli/flags.ts (cli)']);
  expect(circles(graph)).toEqual([]);
  graph.set('cli/flags.ts', [...(graph.get('cli/flags.ts') ?? []), 'model/served-model.ts']);
  expect(circles(graph)).toEqual([['cli/flags.ts', 'model/served-model.ts']]);
});
