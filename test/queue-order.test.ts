import { describe, it, expect } from 'vitest';
import { compareOrder, effectivePriority, FairRounds, orderRank, writeOrderKey, type OrderKey } from '../src/machines/queue-order.js';
import { RankedQueue } from '../src/machines/ranked-queue.js';
import { MemoryStore } from '../src/machines/memory-store.js';
import type { WaiterEntry } from '../src/machines/scheduler-store.js';
import { prng } from './support/prng.js';
import { testConfig } from './support/test-config.js';

const T = 1_000_000;
const MINUTE = 60_000;

function entry(id: string, priority: number, tenant = '', enqueuedAt = T): WaiterEntry {
  return { id, priority, tenant, enqueuedAt, deadline: enqueuedAt + 3_600_000, tokens: 10 };
}

/** A store whose single deployment runs one call at a time, so pumps grant strictly one by one. */
function serialStore(priorityAgingMs?: number): MemoryStore {
  const deployments = testConfig({ m: [{ maxParallelRequests: 1 }] }).modelGroups[0].deployments;
  const options: ConstructorParameters<typeof MemoryStore>[0] = {
    model: 'm',
    deployments,
    maxQueueSize: 1_000,
    cooldown: { cooldownTimeMs: 5_000, allowedFails: 3 },
  };
  if (priorityAgingMs !== undefined) options.priorityAgingMs = priorityAgingMs;
  return new MemoryStore(options);
}

/** Grants everything waiting, one call at a time, and returns the ids in grant order. */
async function drain(store: MemoryStore, now: number): Promise<string[]> {
  const order: string[] = [];
  for (;;) {
    const { grants } = await store.pump(now);
    if (grants.length === 0) break;
    expect(grants).toHaveLength(1);
    order.push(grants[0].requestId);
    await store.release(grants[0], { kind: 'ok' }, now);
  }
  return order;
}

describe('compareOrder', () => {
  const key = (rank: number, round: number, seq: number): OrderKey => ({ rank, round, seq });

  it('orders by rank, then round, then arrival sequence', () => {
    expect(compareOrder(key(0, 5, 9), key(1, 0, 1))).toBeLessThan(0);
    expect(compareOrder(key(1, 0, 9), key(1, 1, 1))).toBeLessThan(0);
    expect(compareOrder(key(1, 1, 2), key(1, 1, 3))).toBeLessThan(0);
    expect(compareOrder(key(1, 1, 3), key(1, 1, 3))).toBe(0);
    expect(compareOrder(key(2, 0, 0), key(1, 9, 9))).toBeGreaterThan(0);
  });

  it('a RankedQueue keyed by writeOrderKey drains in compareOrder order (aging ranks, rounds, seqs)', () => {
    const random = prng(7);
    const keys = Array.from({ length: 2_000 }, (_, seq) => key(orderRank(Math.floor(random() * 5), T + Math.floor(random() * 1e6), 60_000), Math.floor(random() * 4), seq));
    const q = new RankedQueue<OrderKey>(writeOrderKey);
    for (const k of keys) q.insert(k);
    const drained: OrderKey[] = [];
    for (let k = q.shift(); k !== undefined; k = q.shift()) drained.push(k);
    expect(drained).toEqual([...keys].sort(compareOrder));
  });

  it('without aging the rank is the priority itself', () => {
    expect(orderRank(3, T, undefined)).toBe(3);
    expect(orderRank(0, T + 99_999, undefined)).toBe(0);
  });
});

describe('FairRounds (round-robin between tenants at one priority)', () => {
  it('gives a tenant increasing rounds and a newcomer the round being served', () => {
    const rounds = new FairRounds();
    expect([1, 2, 3, 4, 5].map(() => rounds.next(0, 'A'))).toEqual([0, 1, 2, 3, 4]);
    expect(rounds.next(0, 'B')).toBe(0);
    expect(rounds.next(0, 'B')).toBe(1);
    // Other priorities keep their own rounds.
    expect(rounds.next(1, 'A')).toBe(0);
    rounds.markServed(0, 3);
    expect(rounds.next(0, 'C')).toBe(3);
    // B's next request cannot fall behind the round being served...
    expect(rounds.next(0, 'B')).toBe(3);
    // ...nor can A's run ahead of its own history.
    expect(rounds.next(0, 'A')).toBe(5);
    // Serving an older round never moves the served mark back.
    rounds.markServed(0, 1);
    expect(rounds.next(0, 'D')).toBe(3);
  });

  it('tenants A×5 then B×1 at equal priority: B is served second, not last', async () => {
    const store = serialStore();
    for (let i = 0; i < 5; i++) store.enqueueNow(entry(`A${i}`, 0, 'A'), T);
    store.enqueueNow(entry('B0', 0, 'B'), T);
    expect(await drain(store, T)).toEqual(['A0', 'B0', 'A1', 'A2', 'A3', 'A4']);
  });

  it('three tenants interleave; a late tenant joins at the round being served', async () => {
    const store = serialStore();
    for (let i = 0; i < 4; i++) store.enqueueNow(entry(`A${i}`, 0, 'A'), T);
    for (let i = 0; i < 2; i++) store.enqueueNow(entry(`B${i}`, 0, 'B'), T);
    // Serve two waiters (A0, B0), then C arrives: it starts at round 0 (the round being served), so
    // it goes before A1 and B1.
    const first: string[] = [];
    for (let k = 0; k < 2; k++) {
      const { grants } = await store.pump(T);
      first.push(grants[0].requestId);
      await store.release(grants[0], { kind: 'ok' }, T);
    }
    expect(first).toEqual(['A0', 'B0']);
    store.enqueueNow(entry('C0', 0, 'C'), T);
    store.enqueueNow(entry('C1', 0, 'C'), T);
    expect(await drain(store, T)).toEqual(['C0', 'A1', 'B1', 'C1', 'A2', 'A3']);
  });

  it('fairness never overrides priority', async () => {
    const store = serialStore();
    for (let i = 0; i < 3; i++) store.enqueueNow(entry(`A${i}`, 0, 'A'), T);
    store.enqueueNow(entry('B-low', 1, 'B'), T);
    store.enqueueNow(entry('B-high', 0, 'B'), T);
    expect(await drain(store, T)).toEqual(['A0', 'B-high', 'A1', 'A2', 'B-low']);
  });
});

describe('priority aging', () => {
  const I = 30_000;

  it('a priority-1 request that waited one interval ties with a fresh priority-0 one (and wins on arrival)', () => {
    const old = orderRank(1, T, I);
    const fresh = orderRank(0, T + I, I);
    expect(old).toBe(fresh);
    // Exact at any clock value, including wall-clock milliseconds (no float rounding in the tie).
    for (const t0 of [0, 1, 7, 1_000_003, 1_700_000_000_123, 1_765_432_109_876]) {
      for (const interval of [1, 999, 30_000, 7_000, 60_000]) {
        expect(orderRank(1, t0, interval)).toBe(orderRank(0, t0 + interval, interval));
        expect(orderRank(3, t0, interval)).toBe(orderRank(1, t0 + 2 * interval, interval));
      }
    }
  });

  it('a request that waited longer than one interval beats a fresh request one priority better', () => {
    expect(orderRank(1, T, I)).toBeLessThan(orderRank(0, T + I + 1, I));
    // Less than an interval of waiting is not enough.
    expect(orderRank(1, T, I)).toBeGreaterThan(orderRank(0, T + I - 1, I));
    // Among equal priorities, earlier arrivals rank first.
    expect(orderRank(2, T, I)).toBeLessThan(orderRank(2, T + 1, I));
  });

  it('the store serves an aged priority-1 request before a fresh priority-0 one (tie → earlier arrival)', async () => {
    const store = serialStore(I);
    store.enqueueNow(entry('old-p1', 1, '', T), T);
    store.enqueueNow(entry('fresh-p0-tie', 0, '', T + I), T + I);
    store.enqueueNow(entry('fresh-p0-later', 0, '', T + I + 1), T + I + 1);
    store.enqueueNow(entry('fresh-p1', 1, '', T + I + 1), T + I + 1);
    expect(await drain(store, T + I + 1)).toEqual(['old-p1', 'fresh-p0-tie', 'fresh-p0-later', 'fresh-p1']);
  });

  it('without aging a fresh priority-0 request always goes first', async () => {
    const store = serialStore();
    store.enqueueNow(entry('old-p1', 1, '', T), T);
    store.enqueueNow(entry('fresh-p0', 0, '', T + 10 * MINUTE), T + 10 * MINUTE);
    expect(await drain(store, T + 10 * MINUTE)).toEqual(['fresh-p0', 'old-p1']);
  });

  it('effectivePriority improves by one per full interval waited', () => {
    expect(effectivePriority(5, T, T, I)).toBe(5);
    expect(effectivePriority(5, T, T + I - 1, I)).toBe(5);
    expect(effectivePriority(5, T, T + I, I)).toBe(4);
    expect(effectivePriority(5, T, T + 3 * I + 5, I)).toBe(2);
    // A clock read before enqueuedAt never makes it worse.
    expect(effectivePriority(5, T, T - 10_000, I)).toBe(5);
    // Without aging it is the priority.
    expect(effectivePriority(5, T, T + 100 * I, undefined)).toBe(5);
  });

  it('the store reports effective priorities in its snapshot', async () => {
    const store = serialStore(I);
    // Occupy the one slot so the others wait.
    store.enqueueNow(entry('busy', 0, '', T), T);
    await store.pump(T);
    store.enqueueNow(entry('p3', 3, '', T), T);
    store.enqueueNow(entry('p1', 1, '', T + 2 * I), T + 2 * I);
    const snap = await store.snapshot(T + 2 * I + 10);
    expect(snap.waiters.map((w) => [w.id, w.priority, w.effectivePriority])).toEqual([
      ['p3', 3, 1],
      ['p1', 1, 1],
    ]);
  });
});
