/** docs/performance.md: a bench run rewrites only its bench:table region; the hand-written text stays as it is. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { aroundBenchTable, withBenchTable } from '../bench/docs.js';
import type { Results } from '../bench/report.js';
import { row } from '../bench/rows.js';

const results: Results = {
  run: { startedAt: '2026-12-05T04:00:00.000Z', mode: 'full', seconds: 250, loadAverage: { start: 1.5, end: 3.5 }, command: 'npm run bench', node: 'v20.20.2', cores: 2, cpu: 'AMD EPYC', memoryGiB: 24 },
  rows: [row({ scenario: '1 overhead', measure: 'throughput, gateway as npm start runs it (32 connections)', unit: 'req/s', value: 12_000, baseline: 24_000, baselineLabel: 'bare fastify', target: { comparison: '>=', limit: 0.6, text: '≥ 0.6× bare', on: 'ratio' } })],
  details: {},
};

describe('the bench:table region', () => {
  it('holds the run line, the table and the missed targets; the text around it is kept', () => {
    const doc = 'hand-written intro\n\n<!-- bench:table: generated -->\n\nold table\n\n<!-- /bench:table -->\n\nhand-written prose\n';
    const out = withBenchTable(doc, results);
    expect(out.startsWith('hand-written intro\n\n<!-- bench:table: generated -->\n\nfull run, 2026-12-05T04:00:00.000Z, 250 s;')).toBe(true);
    expect(out).not.toContain('old table');
    expect(out).toContain('above 2: other work was competing');
    expect(out).toContain('| 1 overhead | throughput, gateway as npm start runs it (32 connections) | 12,000 req/s |');
    expect(out).toContain('Targets missed in this run: throughput, gateway as npm start runs it (32 connections) (1 overhead).');
    expect(out.endsWith('\n\n<!-- /bench:table -->\n\nhand-written prose\n')).toBe(true);
    // A second run replaces the first one's table, not adds to it.
    expect(withBenchTable(out, results)).toBe(out);
  });

  it('is refused when the page lacks its markers', () => {
    expect(() => withBenchTable('no markers here\n', results)).toThrow(/bench:table/);
  });

  it('exists in docs/performance.md', () => {
    const doc = readFileSync(new URL('../docs/performance.md', import.meta.url), 'utf8');
    expect(() => aroundBenchTable(doc)).not.toThrow();
  });
});
