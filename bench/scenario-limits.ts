/**
 * Scenario 4, limits: bursts against rpm, tpm and max_parallel_requests, with every request more than
 * the limits allow so a backlog stays. Checks every 60 s window of the grant log per deployment
 * (violations must be 0) and utilisation (grants achieved / grants the limits allow, target ≥ 0.95).
 *
 * In memory the router runs on a FakeClock (three full windows in milliseconds, exact times); on Redis
 * three instances share the limits in real time (one window in a quick run, two in a full run).
 */
import { FakeClock } from '../src/core/clock.js';
import { hrNow } from './hr-clock.js';
import { createRouter, type CompletionParams } from '../src/router.js';
import { benchConfig, benchYaml, type BenchConfigOptions } from './bench-config.js';
import { simulate, type TimedAction } from './fake-time.js';
import { clockTolerance, startInstances, stopInstances } from './instances.js';
import { checkParallelLimit, checkWindowLimit, type LimitCheck } from './limits-check.js';
import { step } from './progress.js';
import type { Row } from './report.js';
import { row } from './rows.js';
import { memoryStoreFactory, recording } from './store-factories.js';
import { shiftRecord, type StoreRecord } from './store-log.js';

const S = '4 limits';
const RPM = 20;
const TPM = 1_000;
/** Prompt of 368 characters: ceil(368 / 4) + 4 + 3 = 99 prompt tokens, + max_tokens 1 = 100 reserved, and the mock's usage is 99 + 1. */
const TPM_CONTENT = 'x'.repeat(368);
const TOKENS = 100;
const PARALLEL = 3;
const DEPLOYMENTS = 2;

export interface LimitsSettings {
  /** Redis: observed span (ms) from the first grant. */
  redisSpanMs: number;
  redisParallelCallMs: number;
  /** Allowance for the clocks of several processes in the Redis window checks, ms. */
  redisToleranceMs: number;
}

export const LIMITS_SETTINGS = {
  quick: { redisSpanMs: 2_000, redisParallelCallMs: 200, redisToleranceMs: 5 },
  full: { redisSpanMs: 61_000, redisParallelCallMs: 200, redisToleranceMs: 5 },
} satisfies Record<string, LimitsSettings>;

function groups(parallelCallMs: number): BenchConfigOptions['groups'] {
  const dep = (extra: object) => Array.from({ length: DEPLOYMENTS }, () => ({ mockResponse: 'ok', ...extra }));
  return {
    rpm: dep({ rpm: RPM, mockDelayMs: 1_000 }),
    tpm: dep({ tpm: TPM, mockDelayMs: 1_000 }),
    parallel: dep({ maxParallel: PARALLEL, mockDelayMs: parallelCallMs }),
  };
}

function checks(records: StoreRecord[], spanMs: number, callMs: number, windowMs: number, time: Parameters<typeof checkParallelLimit>[2]['time'], toleranceMs = 0): LimitCheck[] {
  return [
    checkWindowLimit('rpm', records, 'rpm', { perDeployment: RPM, deployments: DEPLOYMENTS, spanMs, windowMs }),
    checkWindowLimit('tpm', records, 'tpm', { perDeployment: TPM, deployments: DEPLOYMENTS, tokensPerRequest: TOKENS, spanMs, windowMs }),
    checkParallelLimit(records, 'parallel', { perDeployment: PARALLEL, deployments: DEPLOYMENTS, callMs, spanMs, time, toleranceMs }),
  ];
}

function limitRows(where: string, results: LimitCheck[]): Row[] {
  const rows: Row[] = [];
  for (const c of results) {
    const windows = c.kind === 'parallel' ? '' : `, ${Math.ceil(c.spanMs / 60_000)} window${c.spanMs > 60_000 ? 's' : ''}`;
    rows.push(
      row({ scenario: S, measure: `${c.kind} violations, ${where}`, unit: 'count', value: c.violations, target: { comparison: '==', limit: 0, text: '0' } }),
      row({
        scenario: S,
        measure: `${c.kind} utilisation, ${where}${windows}`,
        unit: 'fraction',
        value: c.utilisation,
        baselineLabel: `${c.grants} made of ${c.allowed} allowed`,
        showRatio: false,
        target: { comparison: '>=', limit: 0.95, text: '≥ 0.95' },
      }),
    );
  }
  return rows;
}

export async function limitsMemory(details: Record<string, unknown>): Promise<Row[]> {
  const callMs = 2_000;
  const spanMs = 3 * 60_000 - 1;
  const clock = new FakeClock(1_000_000);
  const records: StoreRecord[] = [];
  const config = benchConfig({ groups: groups(callMs), maxQueueSize: 10_000 });
  const router = createRouter(config, { clock, storeFactory: recording(memoryStoreFactory, records) });
  const start = clock.now();
  const submit = (model: string, count: number) => () => {
    for (let i = 0; i < count; i++) {
      const params: CompletionParams = { model, messages: [{ role: 'user', content: model === 'tpm' ? TPM_CONTENT : 'hi' }], priority: i % 3 };
      if (model === 'tpm') params.max_tokens = 1;
      router.schedule(params).catch(() => undefined);
    }
  };
  // A burst at the start, and more bursts inside each window, always more than the limits allow.
  const actions: TimedAction[] = [];
  for (const [at, share] of [[0, 0.5], [30_000, 0.2], [75_000, 0.15], [130_000, 0.15]] as const) {
    actions.push({ at: start + at, run: submit('rpm', Math.ceil(RPM * DEPLOYMENTS * 4 * share)) });
    actions.push({ at: start + at, run: submit('tpm', Math.ceil((TPM / TOKENS) * DEPLOYMENTS * 4 * share)) });
    actions.push({ at: start + at, run: submit('parallel', Math.ceil(PARALLEL * DEPLOYMENTS * (spanMs / callMs + 2) * 1.2 * share)) });
  }
  step(S, 'memory: 3 windows of fake time (rpm, tpm, parallel)');
  const steps = await simulate(clock, actions, start + spanMs + 1);
  await router.close(0);
  const results = checks(records, spanMs, callMs, 60_000, (r) => r.at);
  details.limitsMemory = { steps, results };
  return limitRows('memory', results);
}

export async function limitsRedis(settings: LimitsSettings, redisUrl: string, details: Record<string, unknown>): Promise<Row[]> {
  const callMs = settings.redisParallelCallMs;
  const yaml = benchYaml({ groups: groups(callMs), redisUrl, redisPrefix: `bench-limits-${process.pid}`, maxQueueSize: 10_000 });
  const instances = await startInstances(3, { yaml, store: 'redis', log: true });
  try {
    const windows = Math.ceil(settings.redisSpanMs / 60_000);
    const perInstance = (n: number) => Math.ceil(n / instances.length);
    step(S, `redis: 3 instances, bursts, watching ${(settings.redisSpanMs / 1000).toFixed(0)} s`);
    await Promise.all(
      instances.map(async (inst) => {
        await inst.child.call('submit', { model: 'rpm', count: perInstance(RPM * DEPLOYMENTS * (windows + 1)), minPriority: 0, maxPriority: 2, content: 'hi' });
        await inst.child.call('submit', { model: 'tpm', count: perInstance((TPM / TOKENS) * DEPLOYMENTS * (windows + 1)), minPriority: 0, maxPriority: 2, content: TPM_CONTENT, maxTokens: 1 });
        await inst.child.call('submit', {
          model: 'parallel',
          count: perInstance(Math.ceil(PARALLEL * DEPLOYMENTS * (settings.redisSpanMs / callMs + 2) * 1.3)),
          minPriority: 0,
          maxPriority: 2,
          content: 'hi',
        });
      }),
    );
    const until = Date.now() + settings.redisSpanMs + 800;
    while (Date.now() < until) await new Promise((r) => setTimeout(r, Math.min(5_000, until - Date.now())));
    // Calls are still running while the records are fetched: keep only what every instance had
    // recorded by one common moment, or a grant seen after it could overlap releases not fetched yet.
    const cutoff = hrNow();
    const fetched = await Promise.all(instances.map((inst) => inst.child.call<StoreRecord[]>('records', {}, 30_000)));
    const records: StoreRecord[] = [];
    for (const [i, recs] of fetched.entries()) {
      const inst = instances[i];
      for (const r of recs) {
        const shifted = shiftRecord(r, inst.offsetMs);
        if (shifted.hr <= cutoff) records.push(Object.assign(shifted, { instance: inst.index }));
      }
    }
    const toleranceMs = Math.max(settings.redisToleranceMs, clockTolerance(instances));
    const results = checks(records, settings.redisSpanMs, callMs, 60_000 - toleranceMs, (r) => r.hr, clockTolerance(instances));
    details.limitsRedis = { settings, results, records: records.length, windowToleranceMs: toleranceMs, parallelToleranceMs: clockTolerance(instances) };
    return limitRows(`Redis ×3`, results);
  } finally {
    await stopInstances(instances);
  }
}
