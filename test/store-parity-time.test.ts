/**
 * MemoryStore and the Redis store on the same fake clock: the Redis scripts take their time from it
 * (RedisStoreOptions.scriptClock), so a random workload can move time across everything that depends
 * on it (rpm/tpm windows rolling off, queue-wait deadlines passing, cooldowns ending, aging) and both
 * stores must decide the same: grants, expiries, cooldown ends, the next wake-up moment, snapshots.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createRedisStoreFactory } from '../src/adapters/redis-connection.js';
import type { RedisStore } from '../src/adapters/redis-store.js';
import { FakeClock } from '../src/core/clock.js';
import type { Grant, GroupSnapshot, PumpResult, ReleaseOutcome, SchedulerStore, WaiterEntry } from '../src/machines/scheduler-store.js';
import { memoryStoreFactory } from '../src/router.js';
import { prng } from './support/prng.js';
import { freshPrefix, sharedRedisUrl } from './support/redis.js';
import { testConfig, type TestDeployment } from './support/test-config.js';

const MODEL = 'm';
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function pair(deployments: TestDeployment[], router: Parameters<typeof testConfig>[1], clock: FakeClock) {
  const cfg = testConfig({ [MODEL]: deployments }, router);
  const factory = createRedisStoreFactory({ url: sharedRedisUrl(), prefix: freshPrefix('parity') }, { instanceId: 'a', pumpOnEnqueue: false, scriptClock: clock });
  cleanups.push(() => factory.close());
  await factory.whenReady();
  const redis = factory.storeFactory(MODEL, cfg.modelGroups[0].deployments, cfg) as RedisStore;
  redis.setListener({ changed: () => undefined, remote: () => undefined });
  const memory = memoryStoreFactory(MODEL, cfg.modelGroups[0].deployments, cfg);
  return { memory, redis };
}

const grantShape = (g: Grant) => `${g.requestId}@${g.deploymentId}:p${g.priority}:s${g.seq}:t${g.tokens}:at${g.grantedAt}:w${g.waitedMs}`;
const pumpShape = (p: PumpResult) => ({
  grants: p.grants.map(grantShape),
  expired: p.expired,
  cooldownsEnded: [...p.cooldownsEnded].sort(),
  waiting: p.waiting,
  nextWakeAt: p.nextWakeAt,
});
const snapshotShape = (s: GroupSnapshot) => ({
  waiting: s.waiting,
  depthByPriority: s.depthByPriority,
  oldestWaitMs: s.oldestWaitMs,
  inFlight: s.inFlight,
  deployments: s.deployments,
  waiters: s.waiters,
});

describe('MemoryStore and the Redis store under moving time', () => {
  it.each([
    { aging: undefined, seed: 7 },
    { aging: undefined, seed: 9 },
    { aging: 2_000, seed: 8 },
  ])('decide the same across window roll-off, expiry, cooldown end and aging (aging $aging)', async ({ aging, seed }) => {
    const clock = new FakeClock(1_700_000_000_000);
    const { memory, redis } = await pair(
      [{ rpm: 5, maxParallelRequests: 3 }, { rpm: 3, tpm: 2_000 }, { rpm: 4, tpm: 1_500, maxParallelRequests: 2 }],
      { maxQueueSize: 30, allowedFails: 1, cooldownTimeMs: 4_000, ...(aging ? { priorityAgingMs: aging } : {}) },
      clock,
    );
    const stores: SchedulerStore[] = [memory, redis];
    const rand = prng(seed);
    const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)];
    const held = new Map<string, { memory: Grant; redis: Grant }>();
    const waiting = new Set<string>();
    const seen = { grants: 0, expired: 0, cooldownEnds: 0, rolledOff: 0, wakeCompared: 0, exactWakes: 0 };
    let nextId = 1;
    /** The last wake-up moment the stores gave: time is sometimes moved exactly there (or 1 ms short). */
    let lastWake: number | null = null;

    const pump = async () => {
      const now = clock.now();
      const [m, r] = await Promise.all(stores.map((s) => s.pump(now)));
      expect(pumpShape(r)).toEqual(pumpShape(m));
      for (let i = 0; i < m.grants.length; i++) {
        held.set(m.grants[i].requestId, { memory: m.grants[i], redis: r.grants[i] });
        waiting.delete(m.grants[i].requestId);
      }
      for (const id of m.expired) waiting.delete(id);
      seen.grants += m.grants.length;
      seen.expired += m.expired.length;
      seen.cooldownEnds += m.cooldownsEnded.length;
      if (m.nextWakeAt !== null) seen.wakeCompared += 1;
      lastWake = m.nextWakeAt;
      return m;
    };

    for (let step = 0; step < 800; step++) {
      // Time moves by a few ms, by seconds, to either side of a rate window's length, or past it.
      const t = rand();
      const jump =
        t < 0.55 ? 1 + Math.floor(rand() * 40) : t < 0.85 ? 500 + Math.floor(rand() * 4_000) : t < 0.95 ? 57_000 + Math.floor(rand() * 6_000) : 60_000 + Math.floor(rand() * 10_000);
      if (jump >= 60_000) seen.rolledOff += 1;
      if (lastWake !== null && lastWake > clock.now() && rand() < 0.3) {
        // The scheduler's own moment: exactly when a window edge, a cooldown or a deadline is due.
        clock.advanceTo(lastWake - (rand() < 0.3 ? 1 : 0));
        seen.exactWakes += 1;
      } else clock.advance(jump);
      const now = clock.now();
      const x = rand();
      if (x < 0.4) {
        const id = `r${nextId++}`;
        const e: WaiterEntry = {
          id,
          priority: Math.floor(rand() * 3),
          tenant: pick(['a', 'b', '']),
          enqueuedAt: now,
          deadline: now + 1_000 + Math.floor(rand() * 40_000),
          tokens: 50 + Math.floor(rand() * 600),
        };
        const [m, r] = await Promise.all(stores.map((s) => s.enqueue(e, now)));
        expect(r).toEqual(m);
        if (m.accepted) waiting.add(id);
      } else if (x < 0.7) {
        await pump();
      } else if (x < 0.92 && held.size > 0) {
        const id = pick([...held.keys()]);
        const g = held.get(id)!;
        held.delete(id);
        const y = rand();
        const outcome: ReleaseOutcome =
          y < 0.7
            ? { kind: 'ok', tokensUsed: Math.floor(rand() * 700) }
            : y < 0.8
              ? { kind: 'cancelled' }
              : y < 0.93
                ? { kind: 'failed', failure: pick(['server_error', 'network', 'timeout'] as const) }
                : { kind: 'failed', failure: 'rate_limited', retryAfterMs: 2_000 + Math.floor(rand() * 8_000) };
        const m = await memory.release(g.memory, outcome, now);
        const r = await redis.release(g.redis, outcome, now);
        expect(r.cooldown).toEqual(m.cooldown);
      } else if (waiting.size > 0) {
        const id = pick([...waiting]);
        const [m, r] = await Promise.all(stores.map((s) => s.remove(id, now)));
        expect(r).toBe(m);
        waiting.delete(id);
      }
      if (step % 25 === 0) {
        const [ms, rs] = await Promise.all(stores.map((s) => s.snapshot(clock.now(), 100)));
        expect(snapshotShape(rs)).toEqual(snapshotShape(ms));
      }
    }
    await pump();
    const [ms, rs] = await Promise.all(stores.map((s) => s.snapshot(clock.now(), 100)));
    expect(snapshotShape(rs)).toEqual(snapshotShape(ms));
    expect(await redis.retryAfterSeconds(clock.now())).toBe(await memory.retryAfterSeconds(clock.now()));
    // The workload crossed what it claims to: grants, deadlines, cooldown ends, whole windows, wake-ups.
    expect(seen.grants).toBeGreaterThan(100);
    expect(seen.expired).toBeGreaterThan(40);
    expect(seen.cooldownEnds).toBeGreaterThan(3);
    expect(seen.rolledOff).toBeGreaterThan(30);
    expect(seen.wakeCompared).toBeGreaterThan(10);
    expect(seen.exactWakes).toBeGreaterThan(5);
  });
});
