/**
 * `npm run bench`'s command line, read without side effects so a mistake is answered with one line and
 * the usage (exit 2) instead of a stack trace, and `--help` prints the usage. run.ts acts on the result.
 */
import { parseArgs } from 'node:util';

/** The scenarios of a default run, in the order they run. */
export const DEFAULT_SCENARIOS = ['overhead', 'latency', 'scale', 'limits', 'order', 'redis'] as const;
/** Scenarios run only when named in --only (the soak and the instruction counts take minutes each). */
export const ON_REQUEST_SCENARIOS = ['soak', 'instructions'] as const;
export type ScenarioName = (typeof DEFAULT_SCENARIOS)[number] | (typeof ON_REQUEST_SCENARIOS)[number];
const KNOWN: readonly string[] = [...DEFAULT_SCENARIOS, ...ON_REQUEST_SCENARIOS];

export const BENCH_USAGE = `usage: npm run bench [-- options]
  --quick              the short run (within a minute): a smoke test; targets are judged on full runs
  --only a,b           run only these scenarios: ${KNOWN.join(', ')}
                       (soak and instructions run only when named here)
  --no-docs            leave docs/performance.md as it is
  --soak-seconds N     length of the soak, 10-3600 (default 180, 30 with --quick)
  --help               this text`;

export interface BenchOptions {
  mode: 'quick' | 'full';
  only: ReadonlySet<ScenarioName>;
  writeDocs: boolean;
  soakSeconds: number;
}

export type BenchArgs = { kind: 'run'; options: BenchOptions } | { kind: 'help' } | { kind: 'error'; message: string };

export function parseBenchArgs(argv: readonly string[]): BenchArgs {
  let values: { quick?: boolean; only?: string; 'no-docs'?: boolean; 'soak-seconds'?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        quick: { type: 'boolean' },
        only: { type: 'string' },
        'no-docs': { type: 'boolean' },
        'soak-seconds': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    // node:util's messages name the option ("Unknown option '--fast'..."); keep the first sentence.
    return { kind: 'error', message: String((e as Error).message).split('. ')[0] };
  }
  if (values.help === true) return { kind: 'help' };
  const mode = values.quick === true ? 'quick' : 'full';
  const names = values.only === undefined ? [...DEFAULT_SCENARIOS] : values.only.split(',').map((s) => s.trim());
  const unknown = names.filter((n) => !KNOWN.includes(n));
  if (unknown.length > 0 || names.length === 0) {
    return { kind: 'error', message: `--only: unknown scenario ${JSON.stringify(unknown[0] ?? values.only)}; known: ${KNOWN.join(', ')}` };
  }
  const raw = values['soak-seconds'];
  const soakSeconds = raw === undefined ? (mode === 'quick' ? 30 : 180) : Number(raw);
  if (!Number.isInteger(soakSeconds) || soakSeconds < 10 || soakSeconds > 3_600) {
    return { kind: 'error', message: `--soak-seconds must be a whole number from 10 to 3600, got ${JSON.stringify(raw)}` };
  }
  return { kind: 'run', options: { mode, only: new Set(names as ScenarioName[]), writeDocs: values['no-docs'] !== true, soakSeconds } };
}
