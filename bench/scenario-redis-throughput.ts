/**
 * Scenario 6, Redis throughput: grants per second through the Router API with 1, 2 and 3 instances on
 * one Redis (each instance a child process running a closed loop of requests on a mock deployment with
 * no delay and no limit); baseline: the same loop on one in-memory instance. Beside each rate,
 * redis-server's CPU time per grant (/proc/<pid>/stat): this 2-core machine's throughput is bounded by
 * the instances sharing the cores with Redis, while the CPU per grant says how far one shard goes.
 * Then on a 3-master Redis Cluster: two instances, two model groups, on one shard and on two shards,
 * with each process's CPU.
 */
import { Redis } from 'ioredis';
import { benchYaml } from './bench-config.js';
import { startInstances, stopInstances } from './instances.js';
import { step } from './progress.js';
import type { Row } from './report.js';
import { row } from './rows.js';
import { median } from './measure.js';
import { cpuReading } from './proc-cpu.js';
import { startCluster, tagSlot, type BenchCluster } from './redis-cluster.js';

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
  /** Completions over the whole run, warm-up included (what the CPU readings paid for). */
  total?: number;
  /** CPU µs per grant over the whole run: the Redis processes together, and each instance. */
  redisCpuUsPerGrant?: number;
  instanceCpuUsPerGrant?: number[];
  /** CPU time of each process over the run, as a share of one core (Redis processes, then instances). */
  cpuShare?: { redis: number[]; instances: number[] };
};

interface Where {
  /** Single node: its URL (INFO commandstats is read from it). */
  redisUrl?: string;
  /** A cluster's start-up nodes (`host:port,...`). */
  clusterNodes?: string;
  /** The Redis processes whose CPU is read. */
  redisPids?: number[];
  /** Model groups each instance loops on at once (default one, MODEL). */
  models?: string[];
  /** A cluster's nodes (`redis://host:port`), whose INFO commandstats are read and summed. */
  statsUrls?: string[];
}

/** The commandstats of several nodes as one: calls added, usec_per_call weighted by calls. */
function summed(all: Record<string, { calls: number; usecPerCall: number }>[]): Record<string, { calls: number; usecPerCall: number }> {
  const out: Record<string, { calls: number; usecPerCall: number }> = {};
  for (const stats of all) {
    for (const [name, s] of Object.entries(stats)) {
      const o = (out[name] ??= { calls: 0, usecPerCall: 0 });
      const calls = o.calls + s.calls;
      o.usecPerCall = calls === 0 ? 0 : +((o.usecPerCall * o.calls + s.usecPerCall * s.calls) / calls).toFixed(2);
      o.calls = calls;
    }
  }
  return out;
}

async function grantsPerSecond(n: number, store: 'memory' | 'redis', settings: ThroughputSettings, where: Where = {}): Promise<Throughput> {
  const models = where.models ?? [MODEL];
  const groups = Object.fromEntries(models.map((m) => [m, [{ mockResponse: 'ok', mockDelayMs: 0 }]]));
  const options: Parameters<typeof benchYaml>[0] = { groups, maxQueueSize: 100_000 };
  const redisUrl = where.redisUrl;
  if (redisUrl !== undefined || where.clusterNodes !== undefined) {
    options.redisUrl = redisUrl ?? 'redis://cluster';
    options.redisPrefix = `bench-tp-${n}-${models.length}-${process.pid}`;
  }
  let yaml = benchYaml(options);
  // On a cluster the start-up nodes replace the URL (the string form of redis_startup_nodes).
  if (where.clusterNodes !== undefined) yaml = yaml.replace(/redis_url: .*/, `redis_startup_nodes: "${where.clusterNodes}"`);
  const instances = await startInstances(n, { yaml, store });
  try {
    const statsUrls = where.statsUrls ?? (redisUrl !== undefined ? [redisUrl] : []);
    await Promise.all(statsUrls.map((u) => commandStats(u, true)));
    const roundRates: number[] = [];
    let completed = 0;
    let errors = 0;
    let total = 0;
    const redisPids = where.redisPids ?? [];
    const cpu = cpuReading([...redisPids, ...instances.map((i) => i.child.pid)]);
    const startedAt = performance.now();
    for (let round = 0; round < settings.rounds; round++) {
      const warmupMs = round === 0 ? settings.warmupMs * n : 0;
      const calls = instances.flatMap((i) =>
        models.map((model) => {
          const loop = { model, concurrency: settings.concurrency, warmupMs, durationMs: settings.roundMs };
          return i.child.call<{ completed: number; total: number; errors: number }>('loop', loop, warmupMs + settings.roundMs + 30_000);
        }),
      );
      const results = await Promise.all(calls);
      const done = results.reduce((sum, r) => sum + r.completed, 0);
      roundRates.push(done / (settings.roundMs / 1000));
      completed += done;
      total += results.reduce((sum, r) => sum + r.total, 0);
      errors += results.reduce((sum, r) => sum + r.errors, 0);
    }
    const used = cpu.since();
    const wallUs = (performance.now() - startedAt) * 1000;
    const out: Throughput = { rate: median(roundRates), roundRates, completed, errors, total };
    if (store === 'redis' && total > 0) {
      const redisUs = used.slice(0, redisPids.length);
      const instanceUs = used.slice(redisPids.length);
      if (redisPids.length > 0) out.redisCpuUsPerGrant = redisUs.reduce((a, b) => a + b, 0) / total;
      out.instanceCpuUsPerGrant = instanceUs.map((u) => u / (total / n));
      out.cpuShare = { redis: redisUs.map((u) => u / wallUs), instances: instanceUs.map((u) => u / wallUs) };
    }
    if (statsUrls.length > 0) {
      out.redisCommands = summed(await Promise.all(statsUrls.map((u) => commandStats(u, false))));
      const scripts = out.redisCommands.fcall ?? { calls: 0, usecPerCall: 0 };
      out.redisBusy = (scripts.calls * scripts.usecPerCall) / 1000 / (settings.warmupMs * n + settings.rounds * settings.roundMs);
    }
    return out;
  } finally {
    await stopInstances(instances);
  }
}

/** The issue's bound: ≤ 25 µs of Redis CPU per grant, i.e. ≥ 40k grants/s on one shard's core. */
const CPU_TARGET = { comparison: '<=' as const, limit: 25, text: '≤ 25 µs' };

export async function redisThroughput(settings: ThroughputSettings, redisUrl: string, details: Record<string, unknown>, redisPid?: number): Promise<Row[]> {
  step(S, `memory baseline: 1 instance, ${settings.concurrency} in flight, ${settings.rounds} × ${settings.roundMs / 1000}s`);
  const memory = await grantsPerSecond(1, 'memory', settings);
  const redis: Record<number, Awaited<ReturnType<typeof grantsPerSecond>>> = {};
  for (const n of [1, 2, 3]) {
    step(S, `Redis: ${n} instance${n > 1 ? 's' : ''}, ${settings.concurrency} in flight each, ${settings.rounds} × ${settings.roundMs / 1000}s`);
    redis[n] = await grantsPerSecond(n, 'redis', settings, { redisUrl, ...(redisPid !== undefined ? { redisPids: [redisPid] } : {}) });
  }
  const cluster = await clusterThroughput(settings);
  details.redisThroughput = { settings, memory, redis, cluster };
  const rows: Row[] = [];
  for (const n of [1, 2, 3]) {
    const label = `${n} instance${n > 1 ? 's' : ''}`;
    rows.push(
      row({
        scenario: S,
        measure: `grants/s, ${label} on Redis${redis[n].errors ? ` (${redis[n].errors} errors)` : ''}`,
        unit: 'grants/s',
        value: redis[n].rate,
        baseline: memory.rate,
        baselineLabel: '1 instance in memory',
        ...(n === 2 ? { target: { comparison: '>=' as const, limit: 5_000, text: '≥ 5,000/s' } } : {}),
      }),
      row({ scenario: S, measure: `redis-server CPU per grant, ${label}`, unit: 'µs', value: redis[n].redisCpuUsPerGrant ?? null, target: CPU_TARGET }),
    );
  }
  rows.push(...cluster.rows);
  return rows;
}

/** Two model groups whose hash tags fall on the given cluster nodes (first matches of tp-0, tp-1, ...). */
function groupsOn(cluster: BenchCluster, nodeIndexes: number[]): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < nodeIndexes.length; i++) {
    const name = `tp-${i}`;
    const slot = tagSlot(name);
    if (cluster.nodes[nodeIndexes[out.length]].slots.some(([a, b]) => slot >= a && slot <= b)) out.push(name);
  }
  return out;
}

/**
 * Two instances, each looping on two model groups at once, on a 3-master cluster: both groups on one
 * shard, then on two shards, in the same run. Each process's CPU is reported in the details.
 */
async function clusterThroughput(settings: ThroughputSettings): Promise<{ rows: Row[]; oneShard?: Throughput; twoShards?: Throughput; error?: string }> {
  const measures = ['grants/s, cluster, 2 groups on 1 shard', 'grants/s, cluster, 2 groups on 2 shards', 'redis-server CPU per grant, cluster, 2 groups on 2 shards'];
  step(S, 'Redis Cluster: starting 3 masters');
  let cluster: BenchCluster | null = null;
  try {
    cluster = await startCluster(3);
    if (cluster === null) throw new Error('redis-server or redis-cli is missing');
    const pids = cluster.nodes.map((n) => n.pid);
    const statsUrls = cluster.nodes.map((n) => `redis://127.0.0.1:${n.port}`);
    const half = { ...settings, concurrency: Math.max(1, Math.round(settings.concurrency / 2)) };
    step(S, `Redis Cluster: 2 instances, 2 groups on 1 shard, ${half.concurrency} in flight per group and instance`);
    const oneShard = await grantsPerSecond(2, 'redis', half, { clusterNodes: cluster.startupNodes, redisPids: pids, statsUrls, models: groupsOn(cluster, [0, 0]) });
    step(S, 'Redis Cluster: 2 instances, 2 groups on 2 shards');
    const twoShards = await grantsPerSecond(2, 'redis', half, { clusterNodes: cluster.startupNodes, redisPids: pids, statsUrls, models: groupsOn(cluster, [0, 1]) });
    const share = (t: Throughput) =>
      `CPU (share of a core): shards ${t.cpuShare?.redis.map((x) => x.toFixed(2)).join(' / ')}, instances ${t.cpuShare?.instances.map((x) => x.toFixed(2)).join(' / ')}`;
    const rows = [
      row({ scenario: S, measure: measures[0], unit: 'grants/s', value: oneShard.rate, note: share(oneShard) }),
      row({ scenario: S, measure: measures[1], unit: 'grants/s', value: twoShards.rate, baseline: oneShard.rate, baselineLabel: '2 groups on 1 shard', note: share(twoShards) }),
      row({ scenario: S, measure: measures[2], unit: 'µs', value: twoShards.redisCpuUsPerGrant ?? null, target: CPU_TARGET }),
    ];
    return { rows, oneShard, twoShards };
  } catch (e) {
    const reason = (e as Error).message;
    return { rows: measures.map((m) => row({ scenario: S, measure: m, unit: '', value: null, note: `not available: ${reason}` })), error: reason };
  } finally {
    await cluster?.stop();
  }
}
