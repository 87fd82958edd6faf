/**
 * `npm run bench`: runs the scenarios, shows progress on stderr, prints the table, writes
 * bench/results/<timestamp>.json and latest.json, and rewrites the table in docs/performance.md. The options and
 * scenario names are in bench/bench-args.ts (`npm run bench -- --help`). A run of the on-request
 * scenarios alone (soak, instructions) leaves docs/performance.md as it is: the soak's figures go to
 * docs/reliability.md.
 */
import { existsSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BENCH_USAGE, ON_REQUEST_SCENARIOS, parseBenchArgs, type ScenarioName } from './bench-args.js';
import { aroundBenchTable, withBenchTable } from './docs.js';
import { elapsedSeconds, step } from './progress.js';
import { startRedis, type BenchRedis } from './redis-server.js';
import { consoleTable, machineInfo, writeDoc, writeResults, type Results, type Row } from './report.js';
import { unavailable } from './rows.js';
import { INSTRUCTION_SETTINGS, instructionsScenario } from './instructions.js';
import { GRANT_LATENCY_SETTINGS, grantLatencyMemory, grantLatencyRedis } from './scenario-grant-latency.js';
import { LIMITS_SETTINGS, limitsMemory, limitsRedis } from './scenario-limits.js';
import { ORDER_SETTINGS, orderMemory, orderRedis } from './scenario-order.js';
import { OVERHEAD_SETTINGS, overheadScenario } from './scenario-overhead.js';
import { THROUGHPUT_SETTINGS, redisThroughput } from './scenario-redis-throughput.js';
import { SCALE_SETTINGS, scaleScenario } from './scenario-scale.js';
import { soakScenario, soakSettings } from './soak.js';

const parsed = parseBenchArgs(process.argv.slice(2));
if (parsed.kind === 'help') {
  process.stdout.write(`${BENCH_USAGE}\n`);
  process.exit(0);
}
if (parsed.kind === 'error') {
  process.stderr.write(`bench: ${parsed.message}\n${BENCH_USAGE}\n`);
  process.exit(2);
}
const { mode, only, soakSeconds, writeDocs } = parsed.options;
const selected = (name: ScenarioName) => only.has(name);
// Runs of on-request scenarios alone leave docs/performance.md as it is (it shows the default scenarios).
const onRequestOnly = [...only].every((name) => (ON_REQUEST_SCENARIOS as readonly string[]).includes(name));

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const performanceDoc = join(root, 'docs/performance.md');
// A page without the table's markers is found before the run, not after minutes of it.
if (writeDocs && !onRequestOnly) {
  try {
    aroundBenchTable(readFileSync(performanceDoc, 'utf8'));
  } catch (e) {
    process.stderr.write(`bench: ${(e as Error).message}; add them, or run with --no-docs\n`);
    process.exit(2);
  }
}
const startedAt = new Date().toISOString();
const loadAtStart = loadavg()[0];
const rows: Row[] = [];
const details: Record<string, unknown> = {};

// Everything stops by itself: a run that overruns its budget by far is ended (children with it).
const HARD_LIMIT_MS = (mode === 'quick' ? 4 : 12) * 60_000 + (selected('soak') ? soakSeconds * 1000 : 0) + (selected('instructions') ? 10 * 60_000 : 0);
setTimeout(() => {
  process.stderr.write(`bench: still running after ${HARD_LIMIT_MS / 60_000} min; stopping\n`);
  process.exit(2);
}, HARD_LIMIT_MS).unref();

async function attempt(scenario: string, measures: Array<[string, string]>, fn: () => Promise<Row[]>): Promise<void> {
  try {
    rows.push(...(await fn()));
  } catch (e) {
    const message = String((e as Error)?.message ?? e).split('\n')[0].slice(0, 160);
    step(scenario, `FAILED: ${message}`);
    details[`${scenario} error`] = String((e as Error)?.stack ?? e);
    for (const [measure, target] of measures) rows.push(unavailable(scenario, measure, target, `failed (${message})`));
  }
}

/** The Redis store is written by another part of the project: report "not available" until it exists. */
async function redisStoreAvailable(): Promise<string | null> {
  const module = join(root, 'dist/src/adapters/redis-connection.js');
  if (!existsSync(module)) return 'src/adapters/redis-connection.ts does not exist yet';
  try {
    const m = (await import(module)) as { createRedisStoreFactory?: unknown };
    return typeof m.createRedisStoreFactory === 'function' ? null : 'createRedisStoreFactory is not exported';
  } catch (e) {
    return `the Redis store does not load: ${(e as Error).message}`;
  }
}

const REDIS_MEASURES: Record<string, Array<[string, string]>> = {
  '2 grant latency': [['p99 release → next dispatch, Redis, 2 instances', '< 2 ms']],
  '4 limits': [
    ['violations, Redis ×3', '0'],
    ['utilisation, Redis ×3', '≥ 0.95'],
  ],
  '5 order': [['priority inversions, Redis ×3', 'report']],
  '6 Redis throughput': [
    ['grants/s, 1 instance on Redis', ''],
    ['grants/s, 2 instances on Redis', '≥ 5,000/s'],
    ['grants/s, 3 instances on Redis', ''],
    ['redis-server CPU per grant, 2 instances', '≤ 25 µs'],
    ['grants/s, cluster, 2 groups on 2 shards', ''],
  ],
};

async function main(): Promise<void> {
  step('bench', `${mode} run; scenarios: ${[...only].join(', ')}; load average ${loadAtStart.toFixed(1)} on ${machineInfo().cores} cores`);
  if (selected('overhead')) await attempt('1 overhead', [['throughput, gateway as npm start runs it', '≥ 0.6× bare'], ['p99 added at 1000 req/s', '≤ 0.5 ms']], () => overheadScenario(OVERHEAD_SETTINGS[mode], details));
  if (selected('latency')) await attempt('2 grant latency', [['p99 release → next dispatch, memory', '< 1 ms']], () => grantLatencyMemory(GRANT_LATENCY_SETTINGS[mode], details));
  if (selected('scale')) await attempt('3 scale', [['heap per waiting request', '< 4 KiB'], ['cost growth', '100k ≤ 2× 1k']], () => scaleScenario(SCALE_SETTINGS[mode], mode === 'quick', details));
  if (selected('limits')) await attempt('4 limits', [['violations, memory', '0'], ['utilisation, memory', '≥ 0.95']], () => limitsMemory(details));
  if (selected('order')) await attempt('5 order', [['priority inversions, memory', '0']], () => orderMemory(ORDER_SETTINGS[mode], details));
  if (selected('instructions')) await attempt('8 instructions', [['instructions per request, gateway', '']], () => instructionsScenario(INSTRUCTION_SETTINGS, details));
  if (selected('soak')) await attempt('7 soak', [['heap slope over the second half', '< 1 MiB/min'], ['verdict', 'no leak, no lag growth']], () => soakScenario(soakSettings(soakSeconds), details));

  const wantsRedis = selected('redis') || selected('latency') || selected('limits') || selected('order');
  if (!wantsRedis) return;
  const redisScenarios = Object.entries(REDIS_MEASURES).filter(([s]) =>
    s.startsWith('2') ? selected('latency') : s.startsWith('4') ? selected('limits') : s.startsWith('5') ? selected('order') : selected('redis'),
  );
  const missing = await redisStoreAvailable();
  let redis: BenchRedis | null = null;
  if (missing === null) {
    step('redis', 'starting redis-server');
    redis = await startRedis();
  }
  const reason = missing ?? (redis === null ? 'no redis-server could be started' : null);
  if (reason !== null || redis === null) {
    step('redis', `not available: ${reason}`);
    for (const [scenario, measures] of redisScenarios) for (const [m, t] of measures) rows.push(unavailable(scenario, m, t, reason ?? 'unknown'));
    return;
  }
  try {
    const url = redis.url;
    if (selected('latency')) await attempt('2 grant latency', REDIS_MEASURES['2 grant latency'], () => grantLatencyRedis(GRANT_LATENCY_SETTINGS[mode], url, details));
    if (selected('limits')) await attempt('4 limits', REDIS_MEASURES['4 limits'], () => limitsRedis(LIMITS_SETTINGS[mode], url, details));
    if (selected('order')) await attempt('5 order', REDIS_MEASURES['5 order'], () => orderRedis(ORDER_SETTINGS[mode], url, details));
    if (selected('redis')) await attempt('6 Redis throughput', REDIS_MEASURES['6 Redis throughput'], () => redisThroughput(THROUGHPUT_SETTINGS[mode], url, details, redis?.pid));
  } finally {
    await redis.stop();
  }
}

await main();
const scenarioOrder = (r: Row) => Number.parseInt(r.scenario, 10) || 99;
rows.sort((a, b) => scenarioOrder(a) - scenarioOrder(b));
const results: Results = {
  run: { startedAt, mode, seconds: elapsedSeconds(), loadAverage: { start: loadAtStart, end: loadavg()[0] }, command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`, ...machineInfo() },
  rows,
  details,
};
process.stdout.write(`\n${consoleTable(rows)}\n\n`);
const path = writeResults(join(root, 'bench/results'), results);
step('bench', `results: ${path.slice(root.length + 1)} and bench/results/latest.json`);
if (onRequestOnly) {
  step('bench', `a run of ${[...only].join(', ')} only: docs/performance.md left as it is (the soak's figures are in docs/reliability.md, the instruction counts in docs/performance.md's prose)`);
} else if (writeDocs) {
  writeDoc(performanceDoc, withBenchTable(readFileSync(performanceDoc, 'utf8'), results));
  step('bench', "docs/performance.md: the latest run's table rewritten");
}
const missed = rows.filter((r) => r.status === 'MISSED').length;
step('bench', `done in ${elapsedSeconds().toFixed(0)} s; ${missed} target${missed === 1 ? '' : 's'} missed`);
process.exit(0);
