/**
 * Scenario 2, grant latency: under contention (one deployment with max_parallel_requests N, many
 * waiters of mixed priorities), the time from a call ending (its slot freeing) to the next waiter's
 * upstream call starting. The upstream is bench/gated-upstream.ts: the runner ends one call at a time
 * and waits for the next dispatch, so every sample is one release → grant → dispatch, alone. Each
 * instance is a process of its own (bench/instance-main.ts); the runner learns when the call ended only
 * after the next one started, so no third process is woken inside the span (until 2026-12-05 the
 * instance sent that moment to the runner during the span, which read ~0.025 ms more at p50).
 *
 * In memory: one instance; baseline: the bare MemoryStore's release + pump for the same grant (no
 * actors). On Redis: two instances sharing the queue (the next waiter may belong to the other one);
 * baseline: one Redis round trip (PING) from the runner.
 */
import { Redis } from 'ioredis';
import { MemoryStore } from '../src/machines/memory-store.js';
import type { Grant } from '../src/machines/scheduler-store.js';
import { benchYaml } from './bench-config.js';
import { startInstances, stopInstances, type Instance } from './instances.js';
import { summarize, type Summary } from './measure.js';
import { step } from './progress.js';
import type { Row } from './report.js';
import { row } from './rows.js';

const S = '2 grant latency';
const MODEL = 'latency';

export interface GrantLatencySettings {
  slots: number;
  waiters: number;
  samples: number;
}

export const GRANT_LATENCY_SETTINGS = {
  quick: { slots: 4, waiters: 500, samples: 300 },
  full: { slots: 4, waiters: 2_500, samples: 2_000 },
} satisfies Record<string, GrantLatencySettings>;

/** Ends one call at a time on the instances and times each until the next call starts anywhere. */
async function driveReleases(
  instances: Instance[],
  settings: GrantLatencySettings,
  label: string,
): Promise<{ samples: number[]; sameInstance: number[]; otherInstance: number[]; timeouts: number }> {
  const inFlight = instances.map(() => 0);
  let lastStartedBy = -1;
  let onStarted: ((at: number) => void) | null = null;
  let totalStarted = 0;
  for (const inst of instances) {
    inst.child.onEvent((e) => {
      const at = Number(e.at) + inst.offsetMs;
      if (e.event === 'started') {
        inFlight[inst.index] += 1;
        lastStartedBy = inst.index;
        totalStarted += 1;
        const w = onStarted;
        onStarted = null;
        w?.(at);
      }
    });
  }
  const nextStart = () =>
    new Promise<number | null>((resolve) => {
      const t = setTimeout(() => {
        onStarted = null;
        resolve(null);
      }, 2_000);
      onStarted = (at) => {
        clearTimeout(t);
        resolve(at);
      };
    });
  // Waiters go in small batches alternating between instances, so neighbours in the queue often
  // belong to different instances and a release often grants a waiter of the other instance.
  const batch = 5;
  const perInstance = Math.ceil(settings.waiters / instances.length / batch) * batch;
  for (let sent = 0; sent < perInstance; sent += batch) {
    for (const inst of instances) await inst.child.call('submit', { model: MODEL, count: batch, minPriority: 0, maxPriority: 9 }, 60_000);
  }
  const deadline = Date.now() + 10_000;
  while (totalStarted < settings.slots && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  step(S, `${label}: ${settings.samples} releases with ${perInstance * instances.length - settings.slots} waiting`);
  const samples: number[] = [];
  const sameInstance: number[] = [];
  const otherInstance: number[] = [];
  let timeouts = 0;
  for (let i = 0; i < settings.samples; i++) {
    // The call to end: a random one of those in flight, on whichever instance holds it.
    const holders = instances.filter((inst) => inFlight[inst.index] > 0);
    const holder = holders[Math.floor(Math.random() * holders.length)];
    if (holder === undefined) break;
    const started = nextStart();
    if (!(await holder.child.call<boolean>('finishOne'))) break;
    inFlight[holder.index] -= 1;
    const startedAt = await started;
    // Asked only now: while the span runs, the runner is told nothing (see instance-main.ts finishOne).
    const ended = await holder.child.call<number | null>('takeEnded');
    const endedAt = ended === null ? null : ended + holder.offsetMs;
    if (endedAt === null || startedAt === null) {
      timeouts += 1;
      if (timeouts > 5) break;
      continue;
    }
    samples.push(startedAt - endedAt);
    (lastStartedBy === holder.index ? sameInstance : otherInstance).push(startedAt - endedAt);
  }
  return { samples, sameInstance, otherInstance, timeouts };
}

/** The bare store: release one grant and pump the next, timed, with the same queue shape. */
export function storeGrantLatency(settings: GrantLatencySettings): number[] {
  const store = new MemoryStore({
    model: MODEL,
    deployments: [{ id: 'd0', modelName: MODEL, model: 'mock/x', provider: 'mock', upstreamModel: MODEL, limits: { maxParallelRequests: settings.slots }, mockDelayMs: 0 }],
    maxQueueSize: settings.waiters + 10,
    cooldown: { cooldownTimeMs: 5_000, allowedFails: 3 },
  });
  const now = Date.now();
  for (let i = 0; i < settings.waiters; i++) {
    store.enqueueNow({ id: `r${i}`, priority: Math.floor(Math.random() * 10), tenant: '', enqueuedAt: now, deadline: now + 600_000, tokens: 20 }, now);
  }
  const held: Grant[] = [...store.pumpNow(now).grants];
  const samples: number[] = [];
  let started = 0;
  const startCall = (_g: Grant) => {
    started += 1;
  };
  for (let i = 0; i < settings.samples && held.length > 0; i++) {
    const t0 = performance.now();
    void store.release(held.shift()!, { kind: 'ok', tokensUsed: 2 }, now);
    const { grants } = store.pumpNow(now);
    for (const g of grants) startCall(g);
    const t1 = performance.now();
    held.push(...grants);
    samples.push(t1 - t0);
  }
  if (started === 0) throw new Error('the bare store granted nothing');
  return samples;
}

function latencyRows(where: string, s: Summary, base: Summary, baseLabel: string, target: number, timeouts: number): Row[] {
  const note = timeouts > 0 ? `${timeouts} releases saw no dispatch within 2 s` : undefined;
  const p99: Parameters<typeof row>[0] = {
    scenario: S,
    measure: `p99 release → next dispatch, ${where}`,
    unit: 'ms',
    value: s.p99,
    baseline: base.p99,
    baselineLabel: baseLabel,
    target: { comparison: '<', limit: target, text: `< ${target} ms` },
  };
  if (note) p99.note = note;
  return [row({ scenario: S, measure: `p50 release → next dispatch, ${where}`, unit: 'ms', value: s.p50, baseline: base.p50, baselineLabel: baseLabel }), row(p99)];
}

export async function grantLatencyMemory(settings: GrantLatencySettings, details: Record<string, unknown>): Promise<Row[]> {
  const yaml = benchYaml({ groups: { [MODEL]: [{ maxParallel: settings.slots }] }, maxQueueSize: settings.waiters + 100 });
  step(S, 'memory: bare MemoryStore baseline');
  const base = summarize(storeGrantLatency(settings));
  const instances = await startInstances(1, { yaml, store: 'memory', reportStarts: true });
  try {
    const { samples, timeouts } = await driveReleases(instances, settings, 'memory');
    const s = summarize(samples);
    details.grantLatencyMemory = { settings, latencyMs: s, baselineMs: base, timeouts };
    return latencyRows('memory', s, base, 'bare MemoryStore release+pump', 1, timeouts);
  } finally {
    await stopInstances(instances);
  }
}

export async function redisRoundTrips(url: string, n: number): Promise<Summary> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0 });
  await client.connect();
  try {
    const samples: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await client.ping();
      samples.push(performance.now() - t0);
    }
    return summarize(samples);
  } finally {
    client.disconnect();
  }
}

export async function grantLatencyRedis(settings: GrantLatencySettings, redisUrl: string, details: Record<string, unknown>): Promise<Row[]> {
  const yaml = benchYaml({ groups: { [MODEL]: [{ maxParallel: settings.slots }] }, maxQueueSize: settings.waiters + 100, redisUrl, redisPrefix: `bench-lat-${process.pid}` });
  const instances = await startInstances(2, { yaml, store: 'redis', reportStarts: true });
  try {
    const { samples, sameInstance, otherInstance, timeouts } = await driveReleases(instances, settings, 'redis, 2 instances');
    step(S, 'redis: PING round-trip baseline');
    const base = await redisRoundTrips(redisUrl, Math.min(2_000, settings.samples));
    const s = summarize(samples);
    // Split by where the next waiter lived: the releasing instance, or the other one (mailbox + pub/sub).
    details.grantLatencyRedis = { settings, latencyMs: s, baselineMs: base, timeouts, sameInstanceMs: summarize(sameInstance), otherInstanceMs: summarize(otherInstance) };
    return latencyRows('Redis, 2 instances', s, base, 'one Redis PING round trip', 2, timeouts);
  } finally {
    await stopInstances(instances);
  }
}
