/**
 * docs/performance.md's generated part: the latest run's line, its table and which targets it missed,
 * written between the page's bench:table markers. The rest of the page (how to run, what each
 * scenario measures, where the time goes) is written by hand in the .md.
 */
import { markdownTable, type Results } from './report.js';

export const TABLE_START = '<!-- bench:table';
export const TABLE_END = '<!-- /bench:table -->';

/** The run line, the table and the targets' outcome, as Markdown. */
export function benchTable(results: Results): string {
  const { run } = results;
  const missed = results.rows.filter((r) => r.status === 'MISSED');
  const busy = Math.max(run.loadAverage.start, run.loadAverage.end) > run.cores;
  return [
    `${run.mode} run, ${run.startedAt}, ${run.seconds.toFixed(0)} s; Node ${run.node}, ${run.cores} × ${run.cpu}, ${run.memoryGiB} GiB;`,
    `load average ${run.loadAverage.start.toFixed(1)} at the start and ${run.loadAverage.end.toFixed(1)} at the end${
      busy ? ` (above ${run.cores}: other work was competing for the cores, so compare ratios, not absolute figures)` : ''
    }.`,
    '',
    markdownTable(results.rows),
    '',
    missed.length === 0 ? 'Every target was met in this run.' : `Targets missed in this run: ${missed.map((r) => `${r.measure} (${r.scenario})`).join('; ')}.`,
  ].join('\n');
}

/** Splits `doc` around its bench:table region: what goes before the table (the start marker's line included) and after it (from the end marker). */
export function aroundBenchTable(doc: string): { before: string; after: string } {
  const start = doc.indexOf(TABLE_START);
  const startLineEnd = start < 0 ? -1 : doc.indexOf('\n', start);
  const end = startLineEnd < 0 ? -1 : doc.indexOf(TABLE_END, startLineEnd);
  if (end < 0) throw new Error(`docs/performance.md has no "${TABLE_START} …" … "${TABLE_END}" region for the table`);
  return { before: doc.slice(0, startLineEnd + 1), after: doc.slice(end) };
}

/** `doc` with its bench:table region holding this run's table; the markers and everything else kept. */
export function withBenchTable(doc: string, results: Results): string {
  const { before, after } = aroundBenchTable(doc);
  return `${before}\n${benchTable(results)}\n\n${after}`;
}
