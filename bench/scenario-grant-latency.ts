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
 * baseline: the same hops with no Triage code (bench/redis-hop-main.ts: one process sends one command
 * to the same Redis and the next "call" starts when its reply comes back or, as often as the next
 * waiter belonged to the other instance, when another process hears it published), driven the same
 * way. That floor is this machine's: waking two or three processes in a row on a 2-core VM. One Redis
 * PING round trip from the runner (the baseline until 2026-12-05) is kept in the JSON.
 */
import { Redis } from 'ioredis';
import { MemoryStore } from '../src/machines/memory-store.js';
import type { Grant } from '../src/machines/scheduler-store.js';
import { benchYaml } from './bench-config.js';
import { probeOffset, startChild, type Child } from './child-rpc.js';
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

/** A sample slower than this counts as slow in SlowWithGc (the Redis row's target). */
const SLOW_MS = 2;

/** How many samples were slow, and how many of those overlapped a garbage-collection pause of an instance. */
export interface SlowWithGc {
  slow: number;
  overlappingGc: number;
  pauses: number;
  pauseMsTotal: number;
}

/** Counts the spans ([start, end], ms) longer than `slowMs` and those of them a pause ([start, ms]) overlaps. */
export function slowSamplesWithGc(spans: ReadonlyArray<readonly [number, number]>, pauses: ReadonlyArray<readonly [number, number]>, slowMs: number): SlowWithGc {
  let slow = 0;
  let overlappingGc = 0;
  for (const [a, b] of spans) {
    if (b - a <= slowMs) continue;
    slow += 1;
    if (pauses.some(([at, ms]) => at < b && at + ms > a)) overlappingGc += 1;
  }
  return { slow, overlappingGc, pauses: pauses.length, pauseMsTotal: pauses.reduce((sum, [, ms]) => sum + ms, 0) };
}

/** Ends one call at a time on the instances and times each until the next call starts anywhere. */
async function driveReleases(
  instances: Instance[],
  settings: GrantLatencySettings,
  label: string,
): Promise<{ samples: number[]; sameInstance: number[]; otherInstance: number[]; timeouts: number; slowWithGc: SlowWithGc }> {
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
  for (const inst of instances) await inst.child.call('gcPauses');
  const samples: number[] = [];
  const sameInstance: number[] = [];
  const otherInstance: number[] = [];
  let timeouts = 0;
  const spans: Array<[number, number]> = [];
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
    spans.push([endedAt, startedAt]);
    (lastStartedBy === holder.index ? sameInstance : otherInstance).push(startedAt - endedAt);
  }
  const pauses: Array<[number, number]> = [];
  for (const inst of instances) for (const [at, ms] of await inst.child.call<Array<[number, number]>>('gcPauses')) pauses.push([at + inst.offsetMs, ms]);
  return { samples, sameInstance, otherInstance, timeouts, slowWithGc: slowSamplesWithGc(spans, pauses, SLOW_MS) };
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

function latencyRows(where: string, s: Summary, base: Summary, baseLabel: string, target: number, timeouts: number, gc?: SlowWithGc): Row[] {
  const notes: string[] = [];
  if (timeouts > 0) notes.push(`${timeouts} releases saw no dispatch within 2 s`);
  if (gc !== undefined) notes.push(`${gc.slow} samples over ${SLOW_MS} ms, ${gc.overlappingGc} of them during a GC pause of an instance (${gc.pauses} pauses, ${gc.pauseMsTotal.toFixed(1)} ms in all)`);
  const p99: Parameters<typeof row>[0] = {
    scenario: S,
    measure: `p99 release → next dispatch, ${where}`,
    unit: 'ms',
    value: s.p99,
    baseline: base.p99,
    baselineLabel: baseLabel,
    target: { comparison: '<', limit: target, text: `< ${target} ms` },
  };
  if (notes.length > 0) p99.note = notes.join('; ');
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

/**
 * The baseline of the Redis rows: the hops without Triage (see the header), `samples` times, a reply to
 * the sender in `sameFraction` of them (the share of Triage's grants that went to the releasing
 * instance in the same run) and a message heard by the other process in the rest.
 */
export async function bareRedisHops(redisUrl: string, samples: number, sameFraction: number): Promise<number[]> {
  const channel = (i: number) => `bench-hop-${process.pid}-${i}`;
  const children: Array<{ child: Child; offsetMs: number }> = [];
  try {
    for (let i = 0; i < 2; i++) {
      const child = await startChild('redis-hop-main.js');
      children.push({ child, offsetMs: 0 });
      await child.call('init', { url: redisUrl, listenOn: channel(i) }, 10_000);
    }
    for (const c of children) c.offsetMs = (await probeOffset(c.child)).offsetMs;
    let onStarted: ((at: number) => void) | null = null;
    children.forEach((c) =>
      c.child.onEvent((e) => {
        if (e.event !== 'started') return;
        const w = onStarted;
        onStarted = null;
        w?.(Number(e.at) + c.offsetMs);
      }),
    );
    const out: number[] = [];
    for (let i = 0; i < samples; i++) {
      const from = Math.floor(Math.random() * 2);
      const sender = children[from];
      const started = new Promise<number | null>((resolve) => {
        const t = setTimeout(() => resolve(null), 2_000);
        onStarted = (at) => {
          clearTimeout(t);
          resolve(at);
        };
      });
      await sender.child.call('fire', { to: Math.random() < sameFraction ? null : channel(1 - from) });
      const startedAt = await started;
      const ended = await sender.child.call<number | null>('takeEnded');
      if (startedAt !== null && ended !== null) out.push(startedAt - (ended + sender.offsetMs));
    }
    if (out.length === 0) throw new Error('no bare Redis hop was heard');
    return out;
  } finally {
    await Promise.all(children.map((c) => c.child.stop(5_000)));
  }
}

export async function grantLatencyRedis(settings: GrantLatencySettings, redisUrl: string, details: Record<string, unknown>): Promise<Row[]> {
  const yaml = benchYaml({ groups: { [MODEL]: [{ maxParallel: settings.slots }] }, maxQueueSize: settings.waiters + 100, redisUrl, redisPrefix: `bench-lat-${process.pid}` });
  const instances = await startInstances(2, { yaml, store: 'redis', reportStarts: true });
  try {
    const { samples, sameInstance, otherInstance, timeouts, slowWithGc } = await driveReleases(instances, settings, 'redis, 2 instances');
    step(S, 'redis: the same hops without Triage (baseline)');
    const base = summarize(await bareRedisHops(redisUrl, samples.length, sameInstance.length / Math.max(1, samples.length)));
    const ping = await redisRoundTrips(redisUrl, Math.min(2_000, settings.samples));
    const s = summarize(samples);
    // Split by where the next waiter lived: the releasing instance, or the other one (mailbox + pub/sub).
    details.grantLatencyRedis = { settings, latencyMs: s, baselineMs: base, pingMs: ping, timeouts, slowWithGc, sameInstanceMs: summarize(sameInstance), otherInstanceMs: summarize(otherInstance) };
    return [
      ...latencyRows('Redis, 2 instances', s, base, 'the same Redis hops, no Triage code', 2, timeouts, slowWithGc),
      row({ scenario: S, measure: 'p50 added over the same hops without Triage (Redis, 2 instances)', unit: 'ms', value: s.p50 - base.p50 }),
      row({ scenario: S, measure: 'p99 added over the same hops without Triage (Redis, 2 instances)', unit: 'ms', value: s.p99 - base.p99 }),
    ];
  } finally {
    await stopInstances(instances);
  }
}
