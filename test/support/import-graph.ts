/**
 * The project's own import graph, read from the TypeScript sources (type-only imports included), for
 * the layer rules in test/architecture.test.ts. Written here rather than taken from
 * dependency-cruiser: that tool parses TypeScript through the `typescript` package's JS API, which
 * TypeScript 7 (the native compiler this project builds with) no longer ships.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

/** Module path (repo-relative, `src/...ts`) -> the project modules it imports. */
export type ImportGraph = Map<string, string[]>;

const SPECIFIER = /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s*['"]([^'"]+)['"]/gm;

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return tsFiles(path);
    return e.name.endsWith('.ts') ? [path] : [];
  });
}

/** The relative imports of one source text, as written. */
export function importSpecifiers(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(SPECIFIER)) {
    const spec = m[1] ?? m[2] ?? m[3];
    if (spec !== undefined && spec.startsWith('.')) out.push(spec);
  }
  return out;
}

export function readImportGraph(root: string, folder = 'src'): ImportGraph {
  const graph: ImportGraph = new Map();
  for (const file of tsFiles(join(root, folder))) {
    const from = relative(root, file);
    const targets = importSpecifiers(readFileSync(file, 'utf8')).map((spec) =>
      relative(root, resolve(dirname(file), spec)).replace(/\.js$/, '.ts'),
    );
    graph.set(from, targets);
  }
  return graph;
}

export interface LayerRule {
  name: string;
  /** Modules the rule applies to. */
  from: RegExp;
  /** Modules they must not import. */
  notTo: RegExp;
}

export interface Violation {
  rule: string;
  from: string;
  to: string;
}

export function layerViolations(graph: ImportGraph, rules: readonly LayerRule[]): Violation[] {
  const out: Violation[] = [];
  for (const [from, targets] of graph) {
    for (const rule of rules) {
      if (!rule.from.test(from)) continue;
      for (const to of targets) if (rule.notTo.test(to)) out.push({ rule: rule.name, from, to });
    }
  }
  return out;
}

/** Every import cycle, each as the list of modules around it (found by depth-first search). */
export function importCycles(graph: ImportGraph): string[][] {
  const cycles: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (node: string): void => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      if (!graph.has(next)) continue;
      const s = state.get(next);
      if (s === 'open') cycles.push([...stack.slice(stack.indexOf(next)), next]);
      else if (s === undefined) visit(next);
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of graph.keys()) if (!state.has(node)) visit(node);
  return cycles;
}
