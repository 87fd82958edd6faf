/**
 * The layers hold: machines (statecharts and scheduling) know nothing of adapters or the server;
 * adapters (upstreams, stores, config) know nothing of the server; the server knows adapters only
 * through src/core; src/core is a leaf; and no module imports itself back through others.
 */
import { describe, expect, it } from 'vitest';
import { importCycles, importSpecifiers, layerViolations, readImportGraph, type LayerRule } from './support/import-graph.js';

const TOP = 'src/(router|gateway|cli|live-request|events|export-statecharts)\\.ts';
const RULES: LayerRule[] = [
  { name: 'core is a leaf', from: /^src\/core\//, notTo: new RegExp(`^src/(machines|adapters|server)/|^${TOP}$`) },
  { name: 'machines know nothing of adapters or the server', from: /^src\/machines\//, notTo: new RegExp(`^src/(adapters|server)/|^${TOP}$`) },
  { name: 'adapters know nothing of the server', from: /^src\/adapters\//, notTo: new RegExp(`^src/server/|^${TOP}$`) },
  { name: 'the server reaches adapters only through core', from: /^src\/server\//, notTo: /^src\/adapters\// },
];

describe('architecture', () => {
  const graph = readImportGraph(process.cwd());

  it('reads the import graph, type-only imports included', () => {
    expect(importSpecifiers(`import type { A } from '../adapters/x.js';\nimport { b } from './b.js';\nexport { c } from './c.js';\nconst d = await import('./d.js');`)).toEqual([
      '../adapters/x.js',
      './b.js',
      './c.js',
      './d.js',
    ]);
    expect(graph.get('src/router.ts')).toContain('src/machines/request-machine.ts');
  });

  it('keeps the layers', () => {
    expect(layerViolations(graph, RULES)).toEqual([]);
  });

  it('would name a violation (the rules are checked, not vacuous)', () => {
    const bad = new Map([['src/machines/x.ts', ['src/adapters/y.ts']]]);
    expect(layerViolations(bad, RULES)).toEqual([{ rule: 'machines know nothing of adapters or the server', from: 'src/machines/x.ts', to: 'src/adapters/y.ts' }]);
  });

  it('has no import cycle', () => {
    expect(importCycles(graph)).toEqual([]);
    expect(importCycles(new Map([['a', ['b']], ['b', ['a']]]))).toEqual([['a', 'b', 'a']]);
  });
});
