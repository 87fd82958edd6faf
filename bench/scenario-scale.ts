/**
 * Scenario 3, scale: 1k, 10k and 100k requests waiting in one process (one model group whose only
 * slot is taken), each size in a fresh child run with --expose-gc (bench/scale-main.ts): heap per
 * waiting request beyond its messages, µs per enqueue and per grant; and the same operations on the
 * bare MemoryStore (no actors) as the baseline, so the ratio is what the actors cost.
 */
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { V8_FLAGS } from '../src/runtime-flags.js';
import { ratio } from './measure.js';
import { step } from './progress.js';
import type { Row } from './report.js';
import { row } from './rows.js';

const S = '3 scale';

export interface ScaleSettings {
  sizes: number[];
  /** Operations per timed cycle at each size, and cycles (bench/scale-main.ts). */
  batch: number;
  batches: number;
}

export const SCALE_SETTINGS = {
  quick: { sizes: [1_000, 5_000], batch: 250, batches: 4 },
  full: { sizes: [1_000, 10_000, 100_000], batch: 500, batches: 10 },
} satisfies Record<string, ScaleSettings>;

interface ScaleResult {
  kind: string;
  n: number;
  batch: number;
  batches: number;
  messageBytes: number;
  bytesPerWaiter: number;
  enqueueUs: number;
  grantUs: number;
}

function runChild(kind: 'router' | 'store', n: number, settings: ScaleSettings): Promise<ScaleResult> {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'scale-main.js');
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [...V8_FLAGS, '--expose-gc', '--max-old-space-size=4096', script, kind, String(n), String(settings.batch), String(settings.batches)],
      { timeout: 150_000, killSignal: 'SIGKILL', maxBuffer: 1 << 20 },
      (error, stdout, stderr) => {
        if (error) return reject(new Error(`scale-main ${kind} ${n}: ${error.message}\n${stderr}`));
        const line = stdout.trim().split('\n').pop() ?? '';
        try {
          resolve(JSON.parse(line) as ScaleResult);
        } catch {
          reject(new Error(`scale-main ${kind} ${n} printed no result: ${stdout}\n${stderr}`));
        }
      },
    );
  });
}

const k = (n: number) => (n >= 1000 ? `${n / 1000}k` : String(n));

export async function scaleScenario(settings: ScaleSettings, quick: boolean, details: Record<string, unknown>): Promise<Row[]> {
  const results: Array<{ n: number; router: ScaleResult; store: ScaleResult }> = [];
  for (const n of settings.sizes) {
    step(S, `${k(n)} waiting: bare MemoryStore`);
    const store = await runChild('store', n, settings);
    step(S, `${k(n)} waiting: Router (request actors)`);
    const router = await runChild('router', n, settings);
    results.push({ n, router, store });
  }
  details.scale = { settings, results };
  const rows: Row[] = [];
  for (const { n, router, store } of results) {
    rows.push(
      row({
        scenario: S,
        measure: `heap per waiting request, ${k(n)} (beyond its messages, ${Math.round(router.messageBytes)} B)`,
        unit: 'KiB',
        value: router.bytesPerWaiter / 1024,
        baseline: store.bytesPerWaiter / 1024,
        baselineLabel: 'bare MemoryStore',
        target: { comparison: '<', limit: 4, text: '< 4 KiB' },
      }),
      row({ scenario: S, measure: `enqueue cost, ${k(n)} waiting`, unit: 'µs', value: router.enqueueUs, baseline: store.enqueueUs, baselineLabel: 'bare MemoryStore' }),
      row({ scenario: S, measure: `grant cost, ${k(n)} waiting (release → next done)`, unit: 'µs', value: router.grantUs, baseline: store.grantUs, baselineLabel: 'bare MemoryStore' }),
    );
  }
  const first = results[0];
  const last = results[results.length - 1];
  const has100k = last.n >= 100_000 && first.n <= 1_000;
  for (const what of ['enqueue', 'grant'] as const) {
    const key = what === 'enqueue' ? 'enqueueUs' : 'grantUs';
    const spec: Parameters<typeof row>[0] = {
      scenario: S,
      measure: `${what} cost growth, ${k(last.n)} vs ${k(first.n)}`,
      unit: '×',
      value: ratio(last.router[key], first.router[key]),
      baseline: ratio(last.store[key], first.store[key]),
      baselineLabel: 'bare MemoryStore growth',
      showRatio: false,
    };
    if (has100k) spec.target = { comparison: '<=', limit: 2, text: '100k ≤ 2× 1k' };
    const r = row(spec);
    if (!has100k) r.target = quick ? '100k ≤ 2× 1k (full run only)' : '100k ≤ 2× 1k (needs sizes 1k and 100k)';
    rows.push(r);
  }
  return rows;
}
