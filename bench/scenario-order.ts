/**
 * Scenario 5, order: priority inversions under mixed random load: arrivals at random times with random
 * priorities, some with a short queue timeout, some cancelled while waiting, against a group of two
 * deployments with different parallel limits, call times and an rpm limit. An inversion is a grant
 * made while a strictly better (priority, arrival) request was already waiting in the same group
 * (one tenant, so round-robin between keys does not apply).
 *
 * In memory the store's records are in exact decision order (must be 0). On Redis three instances
 * share the queue; decisions are ordered by Redis's own decision counter, each placed at the latest
 * moment it is known to have begun, and arrivals count only 5 ms after Redis confirmed them, so only
 * proven inversions are counted (see orderEventsFromTimed); the figure is reported.
 */
import { FakeClock } from '../src/core/clock.js';
import { createRouter } from '../src/router.js';
import { benchConfig, benchYaml, type BenchConfigOptions } from './bench-config.js';
import { simulate, type TimedAction } from './fake-time.js';
import { clockTolerance, startInstances, stopInstances } from './instances.js';
import { countInversions, orderEventsFromTimed, type OrderEvent } from './measure.js';
import { step } from './progress.js';
import type { Row } from './report.js';
import { row } from './rows.js';
import { memoryStoreFactory, recording } from './store-factories.js';
import { shiftRecord, type StoreRecord } from './store-log.js';

const S = '5 order';
const MODEL = 'order';

export interface OrderSettings {
  memoryRequests: number;
  redisRequestsPerInstance: number;
  redisWaves: number;
}

export const ORDER_SETTINGS = {
  quick: { memoryRequests: 2_000, redisRequestsPerInstance: 200, redisWaves: 2 },
  full: { memoryRequests: 10_000, redisRequestsPerInstance: 1_000, redisWaves: 5 },
} satisfies Record<string, OrderSettings>;

function orderGroups(scale: number): BenchConfigOptions['groups'] {
  return {
    [MODEL]: [
      { mockResponse: 'ok', maxParallel: 2, mockDelayMs: 300 * scale },
      { mockResponse: 'ok', maxParallel: 3, rpm: 120, mockDelayMs: 700 * scale },
    ],
  };
}

/** The records of one process, in the order they were made, as order events. */
export function orderEventsInRecordOrder(records: StoreRecord[]): OrderEvent[] {
  const events: OrderEvent[] = [];
  for (const r of records) {
    if (r.op === 'arrive') events.push({ type: 'arrive', id: r.id, priority: r.priority, seq: r.seq });
    else if (r.op === 'grant') events.push({ type: 'grant', id: r.id });
    else if (r.op === 'leave') events.push({ type: 'leave', id: r.id });
  }
  return events;
}

export async function orderMemory(settings: OrderSettings, details: Record<string, unknown>): Promise<Row[]> {
  const clock = new FakeClock(1_000_000);
  const records: StoreRecord[] = [];
  const config = benchConfig({ groups: orderGroups(1), maxQueueSize: 100_000 });
  const router = createRouter(config, { clock, storeFactory: recording(memoryStoreFactory, records) });
  const start = clock.now();
  const arrivalSpanMs = 60_000;
  const actions: TimedAction[] = [];
  let cancelled = 0;
  for (let i = 0; i < settings.memoryRequests; i++) {
    const at = start + Math.floor(Math.random() * arrivalSpanMs);
    const roll = Math.random();
    actions.push({
      at,
      run: () => {
        const controller = new AbortController();
        const params: Parameters<typeof router.schedule>[0] = { model: MODEL, messages: [{ role: 'user', content: 'hi' }], priority: Math.floor(Math.random() * 10), signal: controller.signal };
        if (roll < 0.1) params.timeout = 5;
        router.schedule(params).catch(() => undefined);
        if (roll > 0.95) {
          cancelled += 1;
          clock.setTimeout(() => controller.abort(), 1 + Math.floor(Math.random() * 20_000));
        }
      },
    });
  }
  step(S, `memory: ${settings.memoryRequests} random arrivals over 60 s of fake time`);
  const end = start + 60 * 60_000;
  let steps = 0;
  // Run in slices until every request has finished (bounded by `end`).
  for (let t = start + arrivalSpanMs; t <= end && (t === start + arrivalSpanMs || router.liveRequests > 0); t += 5 * 60_000) {
    steps += await simulate(clock, t === start + arrivalSpanMs ? actions : [], t);
  }
  const live = router.liveRequests;
  await router.close(0);
  const inversions = countInversions(orderEventsInRecordOrder(records));
  const grants = records.filter((r) => r.op === 'grant').length;
  details.orderMemory = { settings, grants, cancelled, live, steps, inversions };
  return [
    row({
      scenario: S,
      measure: `priority inversions, memory (${grants} grants, mixed load)`,
      unit: 'count',
      value: inversions,
      target: { comparison: '==', limit: 0, text: '0' },
    }),
  ];
}

export async function orderRedis(settings: OrderSettings, redisUrl: string, details: Record<string, unknown>): Promise<Row[]> {
  const yaml = benchYaml({ groups: orderGroups(0.02), redisUrl, redisPrefix: `bench-order-${process.pid}`, maxQueueSize: 100_000 });
  const instances = await startInstances(3, { yaml, store: 'redis', log: true });
  try {
    step(S, `redis: 3 instances, ${settings.redisWaves} waves of random priorities`);
    const perWave = Math.ceil(settings.redisRequestsPerInstance / settings.redisWaves);
    for (let w = 0; w < settings.redisWaves; w++) {
      await Promise.all(instances.map((inst) => inst.child.call('submit', { model: MODEL, count: perWave, minPriority: 0, maxPriority: 9 }, 30_000)));
      await new Promise((r) => setTimeout(r, 150));
    }
    const deadline = Date.now() + 30_000;
    for (;;) {
      const live = await Promise.all(instances.map((i) => i.child.call<{ live: number }>('outcomes')));
      if (live.every((o) => o.live === 0) || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const records: StoreRecord[] = [];
    for (const inst of instances) {
      for (const r of await inst.child.call<StoreRecord[]>('records', {}, 30_000)) records.push(shiftRecord(r, inst.offsetMs));
    }
    const toleranceMs = Math.max(5, clockTolerance(instances));
    const arrivals = records.flatMap((r) => (r.op === 'arrive' ? [{ id: r.id, priority: r.priority, seq: r.seq, at: r.hr }] : []));
    const grants = records.flatMap((r) => (r.op === 'grant' ? [{ id: r.id, decision: Number(r.decision ?? NaN), notBefore: Number(r.notBefore ?? NaN) }] : []));
    const leaves = records.flatMap((r) => (r.op === 'leave' ? [{ id: r.id, at: r.hr }] : []));
    const undated = grants.filter((g) => !Number.isFinite(g.decision)).length;
    const examples: unknown[] = [];
    const byId = (id: string) => records.filter((r) => r.id === id);
    const inversions = countInversions(orderEventsFromTimed(arrivals, grants.filter((g) => Number.isFinite(g.decision)), leaves, toleranceMs), (granted, better) => {
      if (examples.length < 5) examples.push({ granted: byId(granted.id), better: byId(better.id) });
    });
    details.orderRedis = { settings, grants: grants.length, undated, inversions, toleranceMs, examples };
    return [
      row({
        scenario: S,
        measure: `priority inversions, Redis ×3 (${grants.length} grants, ${toleranceMs.toFixed(0)} ms tolerance)`,
        unit: 'count',
        value: inversions,
        target: { comparison: '==', limit: 0, text: 'report (0 expected)' },
      }),
    ];
  } finally {
    await stopInstances(instances);
  }
}
