/**
 * Scenario 8 (`npm run bench -- --only instructions`): instructions per request, counted by valgrind's
 * cachegrind, for the bare fastify server, the gateway's HTTP layer alone, the whole gateway as
 * `npm start` runs it (access log at info), the same with the access log off, and the Router API alone.
 *
 * Why: on this shared machine times move by 20-50% between runs, so a change worth a few percent
 * cannot be seen in req/s. The instructions a process executes per request repeat within a few percent
 * for one build (two full runs: bare server 127k and 133k, gateway 298k and 292k). Between builds
 * they can jump for reasons that are not the change: one more import of an empty module in the server
 * child moved the Router API's count from ~134k to ~172-174k (2,000 warm-up requests; ~157k after
 * 6,000), so V8's state after the warm-up depends on the whole process, not only on the code a
 * request runs. A change is shown by a count that moves the same way across variants, not by one
 * pair of runs. They are not time (no cache misses, no kernel: `writev` is not counted), so they
 * complement scenario 1's ratios and have no target of their own.
 *
 * How: each server runs twice under cachegrind, with the same warm-up and then `first` or `second`
 * measured requests; the difference of the two totals over the difference of the requests is the cost
 * of a request, without start-up, warm-up or exit. Both runs of a server go side by side. Node runs
 * with `--single-threaded` (no compiler or GC threads, whose share of the count would vary), and the
 * requests of both phases share one set of keep-alive connections (see KeepAliveClient).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startChild } from './child-rpc.js';
import { KeepAliveClient, type LoadTarget } from './load.js';
import { step } from './progress.js';
import type { Row } from './report.js';
import { row } from './rows.js';

const S = '8 instructions';
const MODEL = 'bench-model';
const MASTER_KEY = 'sk-bench-master';

export interface InstructionSettings {
  warmup: number;
  first: number;
  second: number;
  connections: number;
}

/**
 * The same for quick and full runs: the warm-up has to outlast V8's tiering (compiled on the main
 * thread here), and shorter windows did not settle (500 warm-up requests gave ~5× the settled count;
 * 2,000 then 500 or 2,500 gave ~15-25% more than 2,000 then 1,000 or 5,000).
 */
export const INSTRUCTION_SETTINGS: InstructionSettings = { warmup: 2_000, first: 1_000, second: 5_000, connections: 8 };

const VALGRIND_ARGS = ['--tool=cachegrind', '--cache-sim=no', '--cachegrind-out-file=/dev/null', '--smc-check=all-non-file'];

/** What one run under cachegrind counted: requests answered with a 2xx, and instructions in all. */
export interface InstructionCount {
  requests: number;
  instructions: number;
}

/** The total from cachegrind's summary (`I refs: 6,759,743,495`); throws when the log has none. */
export function instructionsFromLog(log: string): number {
  const m = /I\s+refs:\s+([\d,]+)/.exec(log);
  if (m === null) throw new Error('the valgrind log has no instruction count (I refs)');
  return Number(m[1]!.replaceAll(',', ''));
}

/** Instructions per request: the difference of two runs that differ only in their measured requests. */
export function perRequest(shorter: InstructionCount, longer: InstructionCount): number {
  const requests = longer.requests - shorter.requests;
  if (requests <= 0) throw new Error(`the longer run answered ${longer.requests} requests, the shorter ${shorter.requests}: no difference to divide by`);
  return (longer.instructions - shorter.instructions) / requests;
}

type Mode = 'bare' | 'http-only' | 'gateway' | 'gateway-no-log' | 'router-api';

/** One run: a server child under cachegrind, `warmup` then `measured` requests, then its count at exit. */
async function countRun(mode: Mode, warmup: number, measured: number, connections: number, dir: string): Promise<InstructionCount> {
  const log = join(dir, `${mode}-${measured}.log`);
  const child = await startChild('server-main.js', { wrapper: ['valgrind', ...VALGRIND_ARGS, `--log-file=${log}`], execArgv: ['--single-threaded'], startTimeoutMs: 120_000 });
  let answered = 0;
  try {
    const { url } = await child.call<{ url: string }>(
      'start',
      { mode: mode === 'gateway-no-log' ? 'gateway' : mode, metrics: true, logs: mode !== 'gateway-no-log', model: MODEL, masterKey: MASTER_KEY },
      120_000,
    );
    if (mode === 'router-api') {
      for (const n of [warmup, measured]) answered += (await child.call<{ ok: number }>('schedule', { requests: n, connections, model: MODEL }, 600_000)).ok;
    } else {
      const target: LoadTarget = {
        url,
        path: '/queue/chat/completions',
        body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'Say ok.' }], priority: 0 }),
        headers: { authorization: `Bearer ${MASTER_KEY}` },
      };
      // The same connections for the warm-up and the measured requests (see KeepAliveClient).
      const client = new KeepAliveClient(target, connections);
      try {
        for (const n of [warmup, measured]) answered += await client.send(n);
      } finally {
        client.close();
      }
    }
  } finally {
    await child.stop(120_000);
  }
  if (answered !== warmup + measured) throw new Error(`${mode}: ${answered} of ${warmup + measured} requests answered with a 2xx`);
  return { requests: answered, instructions: instructionsFromLog(readFileSync(log, 'utf8')) };
}

const LABELS: Record<Mode, string> = {
  bare: 'bare fastify',
  'http-only': 'HTTP layer alone (router answers at once)',
  gateway: 'gateway as npm start runs it',
  'gateway-no-log': 'gateway, access log off',
  'router-api': 'Router API alone (no HTTP)',
};

export async function instructionsScenario(settings: InstructionSettings, details: Record<string, unknown>): Promise<Row[]> {
  const version = spawnSync('valgrind', ['--version'], { encoding: 'utf8' });
  if (version.error !== undefined || version.status !== 0) throw new Error('valgrind is not installed (Debian: apt-get install valgrind)');
  const dir = mkdtempSync(join(tmpdir(), 'triage-instructions-'));
  const perMode: Partial<Record<Mode, number>> = {};
  try {
    for (const mode of ['bare', 'http-only', 'gateway', 'gateway-no-log', 'router-api'] as const) {
      step(S, `${LABELS[mode]}: two runs under cachegrind side by side, ${settings.warmup} warm-up requests, then ${settings.first} or ${settings.second}`);
      const [shorter, longer] = await Promise.all([
        countRun(mode, settings.warmup, settings.first, settings.connections, dir),
        countRun(mode, settings.warmup, settings.second, settings.connections, dir),
      ]);
      perMode[mode] = Math.round(perRequest(shorter, longer));
      details[`${S} ${mode}`] = { shorter, longer, perRequest: perMode[mode] };
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  details[`${S} valgrind`] = version.stdout.trim();
  const bare = perMode.bare ?? null;
  const measure = (mode: Mode) => `instructions per request, ${LABELS[mode]}`;
  return [
    row({ scenario: S, measure: measure('bare'), unit: 'instructions', value: bare, showRatio: false }),
    row({ scenario: S, measure: measure('http-only'), unit: 'instructions', value: perMode['http-only'] ?? null, baseline: bare, baselineLabel: 'bare fastify' }),
    row({ scenario: S, measure: measure('gateway'), unit: 'instructions', value: perMode.gateway ?? null, baseline: bare, baselineLabel: 'bare fastify' }),
    row({ scenario: S, measure: measure('gateway-no-log'), unit: 'instructions', value: perMode['gateway-no-log'] ?? null, baseline: bare, baselineLabel: 'bare fastify' }),
    row({ scenario: S, measure: measure('router-api'), unit: 'instructions', value: perMode['router-api'] ?? null, baseline: bare, baselineLabel: 'bare fastify' }),
  ];
}
