/**
 * The results: one row per figure, each next to a baseline measured in the same run and the target it
 * is held to; printed as a table, saved as JSON and written into docs/performance.md.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import type { Status } from './measure.js';

export interface Row {
  scenario: string;
  measure: string;
  unit: string;
  value: number | null;
  baseline: number | null;
  /** What the baseline is (measured in the same run). */
  baselineLabel: string;
  /** value / baseline when that means something. */
  ratio: number | null;
  target: string;
  status: Status;
  note?: string;
}

export interface RunInfo {
  startedAt: string;
  mode: 'quick' | 'full';
  seconds: number;
  node: string;
  cpu: string;
  cores: number;
  memoryGiB: number;
  command: string;
  /** 1-minute load average when the run started and ended: how busy the shared machine was. */
  loadAverage: { start: number; end: number };
}

export interface Results {
  run: RunInfo;
  rows: Row[];
  details: Record<string, unknown>;
}

export function machineInfo(): Pick<RunInfo, 'node' | 'cpu' | 'cores' | 'memoryGiB'> {
  const c = cpus();
  return { node: process.version, cpu: c[0]?.model ?? 'unknown', cores: c.length, memoryGiB: Math.round(totalmem() / 2 ** 30) };
}

export function formatNumber(value: number | null, unit: string): string {
  if (value === null || Number.isNaN(value)) return '—';
  const group = (n: number, digits: number) => n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
  switch (unit) {
    case 'req/s':
    case 'grants/s':
    case 'count':
      return group(value, 0);
    case 'ms':
      return Math.abs(value) >= 100 ? group(value, 1) : value.toFixed(3);
    case 'µs':
      return Math.abs(value) >= 100 ? group(value, 0) : value.toFixed(2);
    case 'KiB':
      return value.toFixed(2);
    case 'fraction':
      return value.toFixed(3);
    default:
      return String(Math.round(value * 1000) / 1000);
  }
}

const withUnit = (value: number | null, unit: string) => {
  const v = formatNumber(value, unit);
  return v === '—' || unit === 'count' || unit === 'fraction' ? v : `${v} ${unit}`;
};

export interface TableCells {
  scenario: string;
  measure: string;
  value: string;
  baseline: string;
  ratio: string;
  target: string;
  status: string;
}

export function cells(row: Row): TableCells {
  const baseline = row.baseline === null ? (row.baselineLabel === '' ? '' : row.baselineLabel) : `${withUnit(row.baseline, row.unit)} (${row.baselineLabel})`;
  return {
    scenario: row.scenario,
    measure: row.measure,
    value: row.value === null && row.note ? row.note : `${withUnit(row.value, row.unit)}${row.note ? ` (${row.note})` : ''}`,
    baseline,
    ratio: row.ratio === null ? '' : `${row.ratio.toFixed(row.ratio < 10 ? 3 : 1)}×`,
    target: row.target,
    status: row.status,
  };
}

const HEADERS: TableCells = { scenario: 'scenario', measure: 'measure', value: 'value', baseline: 'baseline (same run)', ratio: 'ratio', target: 'target', status: 'status' };
const COLUMNS = Object.keys(HEADERS) as Array<keyof TableCells>;

export function consoleTable(rows: Row[]): string {
  const all = [HEADERS, ...rows.map(cells)];
  const width = (k: keyof TableCells) => Math.max(...all.map((c) => c[k].length));
  const line = (c: TableCells) => COLUMNS.map((k) => c[k].padEnd(width(k))).join(' | ');
  return [line(HEADERS), COLUMNS.map((k) => '-'.repeat(width(k))).join('-+-'), ...rows.map((r) => line(cells(r)))].join('\n');
}

const md = (s: string) => s.replace(/\|/g, '\\|');

export function markdownTable(rows: Row[]): string {
  const head = `| ${COLUMNS.map((k) => HEADERS[k]).join(' | ')} |`;
  const rule = `|${COLUMNS.map(() => '---').join('|')}|`;
  const body = rows.map((r) => {
    const c = cells(r);
    return `| ${COLUMNS.map((k) => (k === 'status' && c.status === 'MISSED' ? '**MISSED**' : md(c[k]))).join(' | ')} |`;
  });
  return [head, rule, ...body].join('\n');
}

/** Writes bench/results/<timestamp>.json and bench/results/latest.json; returns the timestamped path. */
export function writeResults(resultsDir: string, results: Results): string {
  mkdirSync(resultsDir, { recursive: true });
  const stamp = results.run.startedAt.replace(/[:.]/g, '-');
  const path = join(resultsDir, `${stamp}.json`);
  const text = `${JSON.stringify(results, null, 2)}\n`;
  writeFileSync(path, text);
  writeFileSync(join(resultsDir, 'latest.json'), text);
  return path;
}

export function writeDoc(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
}
