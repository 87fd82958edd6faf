/**
 * Scenario 6, Redis throughput: grants per second through the Router API with 1, 2 and 3 instances on
 * one Redis (each instance a child process running a closed loop of requests on a mock deployment with
 * no delay and no limit); baseline: the same loop on one in-memory instance.
 */
import { Redis } from 'ioredis';
import { benchYaml } from './bench-config.js';
import { startInstances, stopInstances } from './instances.js';
import { step } from './progress.js';
import type { Row } from './report.js';
import { row } from './rows.js';
import { median } from './measure.js';

const S = '6 Redis throughput';
const MODEL = 'throughput';

export interface ThroughputSettings {
  concurrency: number;
  warmupMs: number;
  /** Measured rounds, one after another in the same instances; the median round's rate is reported. */
  rounds: number;
  roundMs: number;
}

export const THROUGHPUT_SETTINGS = {
  // Fresh children need most of a second of warm-up before their JIT settles, even in a quick run, and
  // n of them sharing the two cores need n times that (warmupMs is per instance): with one warm-up for
  // all, the first round of 3 instances read 4,078-7,521 grants/s against 6,742-10,691 after, and a
  // quick run's only round 2,255-4,236.
  quick: { concurrency: 32, warmupMs: 800, rounds: 1, roundMs: 1_000 },
  // Three rounds, not one window of 4.5 s: the in-memory baseline alone read 24k-62k grants/s across
  // full runs, so one window can fall on a disturbed stretch of this shared machine; the median round
  // is what the instances do when no single stretch decides it.
  full: { concurrency: 32, warmupMs: 1_000, rounds: 3, roundMs: 1_500 },
} satisfies Record<string, ThroughputSettings>;

/** Redis's own count of each script's calls and CPU time (INFO commandstats), reset before each run. */
async function commandStats(url: string, reset: boolean): Promise<Record<string, { calls: number; usecPerCall: number }>> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0 });
  await client.connect();
  try {
    if (reset) {
      await client.config('RESETSTAT');
      return {};
    }
    const text = await client.info('commandstats');
    const stats: Record<string, { calls: number; usecPerCall: number }> = {};
    for (const line of text.split('\n')) {
      const m = /^cmdstat_(\w+):calls=(\d+),usec=\d+,usec_per_call=([\d.]+)/.exec(line.trim());
      if (m) stats[m[1]] = { calls: Number(m[2]), usecPerCall: Number(m[3]) };
    }
    return stats;
  } finally {
    client.disconnect();
  }
}

type Throughput = {
  /** The median round's grants per second. */
  rate: number;
  /** Every round's grants per second, in the order run. */
  roundRates: number[];
  completed: number;
  errors: number;
  redisCommands?: Record<string, { calls: number; usecPerCall: number }>;
  /** Share of the run redis-server spent executing scripts (its single thread's load). */
  redisBusy?: number;
};

async function grantsPerSecond(n: number, store: 'memory' | 'redis', settings: ThroughputSettings, redisUrl?: string): Promise<Throughput> {
  const options: Parameters<typeof benchYaml>[0] = { groups: { [MODEL]: [{ mockResponse: 'ok', mockDelayMs: 0 }] }, maxQueueSize: 100_000 };
  if (redisUrl !== undefined) {
    options.redisUrl = redisUrl;
    options.redisPrefix = `bench-tp-${n}-${process.pid}`;
  }
  const instances = await startInstances(n, { yaml: benchYaml(options), store });
  try {
    if (redisUrl !== undefined) await commandStats(redisUrl, true);
    const roundRates: number[] = [];
    let completed = 0;
    let errors = 0;
    for (let round = 0; round < settings.rounds; round++) {
      const warmupMs = round === 0 ? settings.warmupMs * n : 0;
      const loop = { model: MODEL, concurrency: settings.concurrency, warmupMs, durationMs: settings.roundMs };
      const results = await Promise.all(instances.map((i) => i.child.call<{ completed: number; errors: number }>('loop', loop, warmupMs + settings.roundMs + 30_000)));
      const done = results.reduce((sum, r) => sum + r.completed, 0);
      roundRates.push(done / (settings.roundMs / 1000));
      completed += done;
      errors += results.reduce((sum, r) => sum + r.errors, 0);
    }
    const out: Throughput = { rate: median(roundRates), roundRates, completed, errors };
    if (redisUrl !== undefined) {
      out.redisCommands = await commandStats(redisUrl, false);
      const scripts = out.redisCommands.evalsha ?? { calls: 0, usecPerCall: 0 };
      out.redisBusy = (scripts.calls * scripts.usecPerCall) / 1000 / (settings.warmupMs * n + settings.rounds * settings.roundMs);
    }
    return out;
  } finally {
    await stopInstances(instances);
  }
}

export async function redisThroughput(settings: ThroughputSettings, redisUrl: string, details: Record<string, unknown>): Promise<Row[]> {
  step(S, `memory baseline: 1 instance, ${settings.concurrency} in flight, ${settings.rounds} × ${settings.roundMs / 1000}s`);
  const memory = await grantsPerSecond(1, 'memory', settings);
  const redis: Record<number, Awaited<ReturnType<typeof grantsPerSecond>>> = {};
  for (const n of [1, 2, 3]) {
    step(S, `Redis: ${n} instance${n > 1 ? 's' : ''}, ${settings.concurrency} in flight each, ${settings.rounds} × ${settings.roundMs / 1000}s`);
    redis[n] = await grantsPerSecond(n, 'redis', settings, redisUrl);
  }
  details.redisThroughput = { settings, memory, redis };
  return [1, 2, 3].map((n) =>
    row({
      scenario: S,
      measure: `grants/s, ${n} instance${n > 1 ? 's' : ''} on Redis${redis[n].errors ? ` (${redis[n].errors} errors)` : ''}`,
      unit: 'grants/s',
      value: redis[n].rate,
      baseline: memory.rate,
      baselineLabel: '1 instance in memory',
      ...(n === 2 ? { target: { comparison: '>=' as const, limit: 5_000, text: '≥ 5,000/s' } } : {}),
    }),
  );
}
