/**
 * The Redis store against a real redis-server (global-setup.ts starts one; every test uses a fresh key
 * prefix). Two "instances" are two factories with their own connections and instance ids sharing a
 * prefix, exactly what two gateway processes are.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Redis } from 'ioredis';
import { createRedisStoreFactory, type RedisStoreFactory, type RedisStoreFactoryOptions } from '../src/adapters/redis-connection.js';
import { grantCounter, groupKeyNames, groupPrefix, instanceChannel, type RedisStore } from '../src/adapters/redis-store.js';
import type { TriageConfig } from '../src/core/config-types.js';
import { FakeClock } from '../src/core/clock.js';
import { CLAIM_RECORD } from '../src/adapters/redis-protocol.js';
import { compareOrder } from '../src/machines/queue-order.js';
import type { EnqueueResult, Grant, PumpResult, ReleaseOutcome, SchedulerStore, WaiterEntry } from '../src/machines/scheduler-store.js';
import { createRouter, memoryStoreFactory, type Router } from '../src/router.js';
import type { QueueEvent } from '../src/events.js';
import { testConfig, type TestDeployment } from './support/test-config.js';
import { freshPrefix, sharedRedisUrl, startRedisServer, type RedisServer } from './support/redis.js';
import { prng } from './support/prng.js';
import { ControlledUpstream } from './support/controlled-upstream.js';

const MODEL = 'm';
/** vi.waitFor's default 1 s is too short on a loaded 2-core CI machine (one run timed out there). */
const WAIT = { timeout: 10_000 };
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

interface Instance {
  factory: RedisStoreFactory;
  store: RedisStore;
  /** Grants and expiries delivered through listener.remote. */
  remoteGrants: Grant[];
  remoteExpired: string[];
  changed: number;
}

async function instance(
  name: string,
  prefix: string,
  config: TriageConfig,
  options: RedisStoreFactoryOptions & { url?: string } = {},
): Promise<Instance> {
  const { url, ...factoryOptions } = options;
  // These tests drive the store's operations one by one, so by default an enqueue does not pump (the
  // scheduler's setting, enqueue + pump in one step, is tested on its own below and by the Router tests).
  const factory = createRedisStoreFactory({ url: url ?? sharedRedisUrl(), prefix }, { instanceId: name, pumpOnEnqueue: false, ...factoryOptions });
  cleanups.push(() => factory.close());
  await factory.whenReady();
  const group = config.modelGroups[0];
  const store = factory.storeFactory(group.name, group.deployments, config) as RedisStore;
  const inst: Instance = { factory, store, remoteGrants: [], remoteExpired: [], changed: 0 };
  store.setListener({
    changed: () => {
      inst.changed += 1;
    },
    remote: ({ grants, expired }) => {
      inst.remoteGrants.push(...grants);
      inst.remoteExpired.push(...expired);
    },
  });
  return inst;
}

/**
 * Two stores' enqueue results alike. The grant estimates (Retry-After, etaAt) read the rate windows on
 * each store's own clock (Redis's real time, the test's stepped time), which drift apart by the test's
 * running time: equal within a few seconds.
 */
function expectSameEnqueue(r: EnqueueResult, m: EnqueueResult): void {
  const strip = (x: EnqueueResult) => {
    if (!x.accepted) return { accepted: x.accepted, reason: x.reason };
    const { etaAt: _eta, ...rest } = x;
    return rest;
  };
  expect(strip(r)).toEqual(strip(m));
  if (!r.accepted && !m.accepted) expect(Math.abs(r.retryAfterMs - m.retryAfterMs)).toBeLessThanOrEqual(5_000);
  if (r.accepted && m.accepted) {
    expect(r.etaAt === null).toBe(m.etaAt === null);
    if (typeof r.etaAt === 'number' && typeof m.etaAt === 'number') expect(Math.abs(r.etaAt - m.etaAt)).toBeLessThanOrEqual(5_000);
  }
}

/**
 * An instance (enqueue + pump in one step) whose claims are counted from its start: it claims its mail
 * once its subscription is in place, and that first claim is awaited and not counted. `sibling`: a
 * store of the same class, whose prototype is watched before the instance exists.
 */
async function instanceWithCountedClaims(name: string, prefix: string, cfg: TriageConfig, sibling: RedisStore) {
  const spy = vi.spyOn(Object.getPrototypeOf(sibling) as { claim(): Promise<void> }, 'claim');
  cleanups.push(() => spy.mockRestore());
  const inst = await instance(name, prefix, cfg, { pumpOnEnqueue: true });
  const claims = () => spy.mock.contexts.filter((c) => c === inst.store).length;
  /** Resolves once every claim so far (of any store) has answered. */
  const claimsAnswered = () => Promise.all(spy.mock.results.map((r) => r.value));
  await vi.waitFor(() => expect(claims()).toBeGreaterThan(0), WAIT);
  await claimsAnswered();
  spy.mockClear();
  return { inst, claims, claimsAnswered };
}

/** Holds the store's enqueue replies back until the returned function is called (the others pass). */
function holdEnqueueReplies(store: RedisStore): () => void {
  type Call = (name: string, extra: unknown[], decode: (r: unknown) => unknown) => Promise<unknown>;
  const target = store as unknown as { call: Call };
  const call = target.call.bind(store);
  let open: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const spy = vi.spyOn(target, 'call').mockImplementation((name, extra, decode) => {
    const reply = call(name, extra, decode);
    return name === 'enqueue' ? reply.then(async (r) => (await gate, r)) : reply;
  });
  cleanups.push(() => spy.mockRestore());
  return () => open();
}

function config(deployments: TestDeployment[], router: Partial<TriageConfig['router']> = {}): TriageConfig {
  return testConfig({ [MODEL]: deployments }, router);
}

/**
 * `a` holds the one slot; `b` enqueues b1 with its reply held back (the order in which a busy process
 * may read its two connections), then `a`'s release grants b1: the grant's message reaches `b` before
 * b1's enqueue reply. Returns that enqueue (answered once `open` is called).
 */
async function grantBeforeEnqueueReply(a: Instance, b: Instance): Promise<{ enqueued: ReturnType<RedisStore['enqueue']>; open: () => void }> {
  const open = holdEnqueueReplies(b.store);
  const onGrants = vi.spyOn(b.store, 'onGrants');
  const now = Date.now();
  const a1 = await a.store.enqueue(entry('a1', 0, now), now);
  const ga1 = a1.accepted ? a1.pumped!.grants[0] : (undefined as never);
  const enqueued = b.store.enqueue(entry('b1', 0, now), now);
  // b1 is in Redis once a snapshot (same connection, later) sees it.
  await vi.waitFor(async () => expect((await a.store.snapshot(Date.now())).waiting).toBe(1), WAIT);
  await a.store.release(ga1, { kind: 'ok' }, Date.now(), { pump: true });
  await vi.waitFor(() => expect(onGrants).toHaveBeenCalledTimes(1), WAIT);
  return { enqueued, open };
}

function entry(id: string, priority: number, now: number, extra: Partial<WaiterEntry> = {}): WaiterEntry {
  return { id, priority, tenant: '', enqueuedAt: now, deadline: now + 600_000, tokens: 10, ...extra };
}

/**
 * Grants of several instances, tallied as they arrive: each grant is released on the next turn by
 * `release` (which returns any grants made in that same step, tallied in turn), and the number held
 * at once is tracked.
 */
function grantLedger(release: (inst: Instance, g: Grant) => Promise<Grant[]>) {
  const ledger = {
    seen: new Map<string, number>(),
    outstanding: 0,
    maxOutstanding: 0,
    released: 0,
    handle(inst: Instance, name: string, grants: Grant[]): void {
      for (const g of grants) {
        // Delivered to the instance that owns the request, whichever instance's step granted it.
        expect(g.requestId.startsWith(name)).toBe(true);
        ledger.seen.set(g.requestId, (ledger.seen.get(g.requestId) ?? 0) + 1);
        ledger.outstanding += 1;
        ledger.maxOutstanding = Math.max(ledger.maxOutstanding, ledger.outstanding);
        setImmediate(() => {
          ledger.outstanding -= 1;
          void release(inst, g).then((more) => {
            ledger.released += 1;
            ledger.handle(inst, name, more);
          });
        });
      }
    },
  };
  return ledger;
}

async function rawClient(url = sharedRedisUrl()): Promise<Redis> {
  const r = new Redis(url);
  cleanups.push(() => void r.disconnect());
  return r;
}


describe('RedisStore: order', () => {
  it('ZSET order equals compareOrder (rank, then round, then seq) for any priorities, rounds and seqs', async () => {
    const a = await instance('a', freshPrefix(), config([{ maxParallelRequests: 1 }]));
    const rand = prng(7);
    const now = Date.now();
    const keys: { id: string; rank: number; round: number; seq: number }[] = [];
    for (let i = 0; i < 300; i++) {
      // Fractional and negative ranks (what aging produces), ties on rank and on round.
      const rank = [-3, -1.5, 0, 0.25, 1, 2, 1e-9, -2.000001][Math.floor(rand() * 8)];
      const round = Math.floor(rand() * 4) * (rand() < 0.2 ? 123_456_789 : 1);
      const seq = 1 + Math.floor(rand() * 1e12);
      const id = `w${i}`;
      keys.push({ id, rank, round, seq });
      // A retry carries its seq and round: the store keeps them, so the test controls the order key.
      const r = await a.store.enqueue(entry(id, rank, now, { seq, round }), now);
      expect(r.accepted).toBe(true);
    }
    const expected = [...keys].sort(compareOrder).map((k) => k.id);
    const snap = await a.store.snapshot(now, 1000);
    expect(snap.waiters.map((w) => w.id)).toEqual(expected);
    for (const k of keys.slice(0, 20)) expect(await a.store.position(k.id)).toBe(expected.indexOf(k.id));
  });

  it('ages priorities with priority_aging: an old low-priority waiter goes before a new high one', async () => {
    const a = await instance('a', freshPrefix(), config([{ maxParallelRequests: 1 }], { priorityAgingMs: 1000 }));
    const now = Date.now();
    await a.store.enqueue(entry('blocker', 0, now), now);
    await a.store.pump(now);
    await a.store.enqueue(entry('new-p0', 0, now), now);
    await a.store.enqueue(entry('old-p2', 2, now - 5000), now);
    const snap = await a.store.snapshot(now);
    expect(snap.waiters.map((w) => w.id)).toEqual(['old-p2', 'new-p0']);
    expect(snap.waiters[0].effectivePriority).toBeLessThanOrEqual(-3);
  });

  it.each([
    { aging: undefined, seed: 42 },
    { aging: 40, seed: 43 },
  ])('behaves exactly like MemoryStore on a random workload (aging $aging): grants, deployments, positions, limits', async ({ aging, seed }) => {
    const deployments: TestDeployment[] = [
      { maxParallelRequests: 3, rpm: 100, tpm: 12_000 },
      { maxParallelRequests: 2 },
      { rpm: 50, tpm: 5000 },
    ];
    const cfg = config(deployments, { maxQueueSize: 40, allowedFails: 4, cooldownTimeMs: 600_000, ...(aging ? { priorityAgingMs: aging } : {}) });
    const a = await instance('a', freshPrefix(), cfg);
    // The same options as the router's in-memory store, from the same config.
    const mem = memoryStoreFactory(MODEL, cfg.modelGroups[0].deployments, cfg);
    const rand = prng(seed);
    const pickOne = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)];
    let now = Date.now();
    let nextId = 1;
    const waiting = new Set<string>();
    const accepted = new Map<string, { seq: number; round: number; priority: number; tenant: string; tokens: number }>();
    const held = new Map<string, { mem: Grant; redis: Grant }>();
    const log: string[] = [];
    let grantCount = 0;
    let rejected = 0;
    const stores: SchedulerStore[] = [mem, a.store];

    const pump = async () => {
      const [m, r] = await Promise.all(stores.map((s) => s.pump(now)));
      const shape = (g: Grant) => `${g.requestId}@${g.deploymentId}:p${g.priority}:s${g.seq}`;
      expect(r.grants.map(shape)).toEqual(m.grants.map(shape));
      expect(r.waiting).toBe(m.waiting);
      expect(r.expired).toEqual(m.expired);
      for (let i = 0; i < m.grants.length; i++) {
        held.set(m.grants[i].requestId, { mem: m.grants[i], redis: r.grants[i] });
        waiting.delete(m.grants[i].requestId);
      }
      log.push(`pump ${m.grants.length}`);
      grantCount += m.grants.length;
    };

    for (let step = 0; step < 700; step++) {
      now += 1;
      const x = rand();
      if (x < 0.42) {
        const id = `r${nextId++}`;
        const e = entry(id, Math.floor(rand() * 4), now, { tenant: pickOne(['a', 'b', 'c', '']), tokens: 20 + Math.floor(rand() * 300) });
        const [m, r] = await Promise.all(stores.map((s) => s.enqueue(e, now)));
        expectSameEnqueue(r, m);
        if (!m.accepted) rejected += 1;
        if (m.accepted) {
          waiting.add(id);
          accepted.set(id, { seq: m.seq, round: m.round, priority: e.priority, tenant: e.tenant, tokens: e.tokens });
        }
      } else if (x < 0.67) {
        await pump();
      } else if (x < 0.9 && held.size > 0) {
        const id = pickOne([...held.keys()]);
        const g = held.get(id)!;
        held.delete(id);
        const y = rand();
        const outcome: ReleaseOutcome =
          y < 0.75
            ? { kind: 'ok', tokensUsed: Math.floor(rand() * 400) }
            : y < 0.88
              ? { kind: 'cancelled' }
              : y < 0.995
                ? { kind: 'failed', failure: pickOne(['server_error', 'network', 'timeout', 'client_error'] as const) }
                : { kind: 'failed', failure: 'rate_limited', retryAfterMs: 600_000 };
        const m = await mem.release(g.mem, outcome, now);
        const r = await a.store.release(g.redis, outcome, now);
        expect(r.cooldown?.deploymentId).toBe(m.cooldown?.deploymentId);
        expect(r.cooldown?.reason).toBe(m.cooldown?.reason);
        if (m.cooldown) expect(Math.abs(r.cooldown!.until - m.cooldown.until)).toBeLessThan(50);
        // A failed call is retried: it re-enters the queue at its old place (same seq and round).
        if (outcome.kind === 'failed' && rand() < 0.5) {
          const k = accepted.get(id)!;
          const e = entry(id, k.priority, now, { tenant: k.tenant, tokens: k.tokens, seq: k.seq, round: k.round });
          const [me, re] = await Promise.all(stores.map((s) => s.enqueue(e, now)));
          expect(re).toEqual(me);
          waiting.add(id);
        }
      } else if (waiting.size > 0) {
        const id = pickOne([...waiting]);
        const [m, r] = await Promise.all(stores.map((s) => s.remove(id, now)));
        expect(r).toBe(m);
        waiting.delete(id);
      }
    }
    await pump();
    const [ms, rs] = await Promise.all(stores.map((s) => s.snapshot(now, 1000)));
    // (With aging the effective priority depends on the clock: the memory store's is fake here.)
    const view = (w: (typeof ms.waiters)[number]) => [w.id, w.position, w.priority, w.round, w.seq, w.tenant, aging ? 0 : w.effectivePriority];
    expect(rs.waiters.map(view)).toEqual(ms.waiters.map(view));
    expect(rs.depthByPriority).toEqual(ms.depthByPriority);
    expect(rs.waiting).toBe(ms.waiting);
    const usage = (d: (typeof ms.deployments)[number]) => [d.id, d.inFlight, d.rpmUsed, d.tpmUsed, d.headroom, d.coolingDownUntil !== null];
    expect(rs.deployments.map(usage)).toEqual(ms.deployments.map(usage));
    // The same estimate, each on its own clock (see expectSameEnqueue).
    expect(Math.abs((await a.store.retryAfterSeconds(now)) - (await mem.retryAfterSeconds(now)))).toBeLessThanOrEqual(5);
    // The workload really exercised the limits and the queue.
    expect(log.filter((l) => l !== 'pump 0').length).toBeGreaterThan(25);
    expect(grantCount).toBeGreaterThan(60);
    expect(rejected).toBeGreaterThan(0);
    expect(ms.waiting).toBeGreaterThan(0);
    expect(accepted.size).toBeGreaterThan(100);
  });
});

describe('RedisStore: limits across instances', () => {
  it('never exceeds rpm with two instances under a concurrent burst', async () => {
    const prefix = freshPrefix();
    const cfg = config([{ rpm: 25 }]);
    const a = await instance('a', prefix, cfg);
    const b = await instance('b', prefix, cfg);
    const now = Date.now();
    const granted: Grant[] = [];
    await Promise.all([
      ...Array.from({ length: 40 }, (_, i) => a.store.enqueue(entry(`a${i}`, i % 3, now), now)),
      ...Array.from({ length: 40 }, (_, i) => b.store.enqueue(entry(`b${i}`, i % 3, now), now)),
    ]);
    const pumps = await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 ? a : b).store.pump(Date.now())));
    for (const p of pumps) granted.push(...p.grants);
    await vi.waitFor(() => expect(granted.length + a.remoteGrants.length + b.remoteGrants.length).toBe(25), WAIT);
    const all = [...granted, ...a.remoteGrants, ...b.remoteGrants];
    expect(new Set(all.map((g) => g.requestId)).size).toBe(25);
    // The 25 best: priorities 0 first (27 waiters have priority 0), in arrival order.
    expect(all.every((g) => g.priority === 0)).toBe(true);
    const redis = await rawClient();
    const rpmKey = `${groupPrefix(prefix, MODEL)}:rpm:${MODEL}#0`;
    expect(groupKeyNames(prefix, MODEL, cfg.modelGroups[0].deployments)).toContain(rpmKey);
    expect(await redis.zcard(rpmKey)).toBe(25);
    const snap = await a.store.snapshot(Date.now());
    expect(snap.deployments[0].rpmUsed).toBe(25);
    expect(snap.deployments[0].headroom).toBe(0);
    expect(snap.waiting).toBe(55);
  });

  it('grants each request exactly once, to its owner, never above max_parallel_requests (concurrent enqueues, pumps, releases)', async () => {
    const prefix = freshPrefix();
    const cfg = config([{ maxParallelRequests: 4 }, { maxParallelRequests: 3, tpm: 1_000_000 }]);
    const a = await instance('a', prefix, cfg);
    const b = await instance('b', prefix, cfg);
    const N = 300;
    const ledger = grantLedger((inst, g) => inst.store.release(g, { kind: 'ok' }, Date.now()).then(() => []));
    const drive = async (inst: Instance, name: string) => {
      const now = Date.now();
      await Promise.all(Array.from({ length: N }, (_, i) => inst.store.enqueue(entry(`${name}${i}`, i % 5, now), now)));
      for (let spins = 0; spins < 100_000 && ledger.released < 2 * N; spins++) {
        const remote = inst.remoteGrants.splice(0);
        ledger.handle(inst, name, remote);
        const r = await inst.store.pump(Date.now());
        ledger.handle(inst, name, r.grants);
        await new Promise((res) => setImmediate(res));
      }
    };
    await Promise.all([drive(a, 'a'), drive(b, 'b')]);
    expect(ledger.released).toBe(2 * N);
    expect(ledger.seen.size).toBe(2 * N);
    expect([...ledger.seen.values()].every((n) => n === 1)).toBe(true);
    expect(ledger.maxOutstanding).toBeLessThanOrEqual(7);
    const snap = await a.store.snapshot(Date.now());
    expect(snap.waiting).toBe(0);
    expect(snap.inFlight).toBe(0);
  });

  it('releases exactly once: a second release (same or another instance, even concurrent) is a no-op', async () => {
    const prefix = freshPrefix();
    const cfg = config([{ maxParallelRequests: 2 }]);
    const a = await instance('a', prefix, cfg);
    const b = await instance('b', prefix, cfg);
    const now = Date.now();
    await a.store.enqueue(entry('x', 0, now), now);
    await a.store.enqueue(entry('y', 0, now), now);
    const { grants } = await a.store.pump(now);
    expect(grants).toHaveLength(2);
    const [gx, gy] = grants;
    expect(await a.store.release(gx, { kind: 'ok' }, now)).toEqual({});
    expect(await a.store.release(gx, { kind: 'ok' }, now)).toEqual({});
    expect((await a.store.snapshot(now)).inFlight).toBe(1);
    // Concurrent releases of one grant from two instances: one of them frees the slot and cools down.
    const outcome: ReleaseOutcome = { kind: 'failed', failure: 'rate_limited', retryAfterMs: 5000 };
    const results = await Promise.all([a.store.release(gy, outcome, now), b.store.release(gy, outcome, now), a.store.release(gy, outcome, now)]);
    expect(results.filter((r) => r.cooldown !== undefined)).toHaveLength(1);
    const snap = await b.store.snapshot(now);
    expect(snap.inFlight).toBe(0);
    expect(snap.deployments[0].coolingDownUntil).not.toBeNull();
  });
});

describe('RedisStore: instances', () => {
  it("delivers a grant or expiry made by another instance's pump to the owner through listener.remote", async () => {
    const prefix = freshPrefix();
    const cfg = config([{ maxParallelRequests: 1 }]);
    const a = await instance('a', prefix, cfg);
    const b = await instance('b', prefix, cfg);
    const now = Date.now();
    await b.store.enqueue(entry('b1', 0, now), now);
    await b.store.enqueue(entry('b2', 0, now, { deadline: now + 150 }), now);
    const pa = await a.store.pump(Date.now());
    expect(pa.grants).toEqual([]);
    await vi.waitFor(() => expect(b.remoteGrants.map((g) => g.requestId)).toEqual(['b1']), WAIT);
    expect(b.remoteGrants[0].deploymentId).toBe(`${MODEL}#0`);
    // b2 waits behind the held slot until its deadline; A's pump expires it and tells B.
    await vi.waitFor(async () => {
      const p = await a.store.pump(Date.now());
      expect(p.expired).toEqual([]);
      expect(b.remoteExpired).toEqual(['b2']);
    }, WAIT);
    expect(a.remoteGrants).toEqual([]);
    expect((await a.store.snapshot(Date.now())).waiting).toBe(0);
  });

  it("reclaims a dead instance's waiters and grants once its lease lapses", async () => {
    const prefix = freshPrefix();
    const cfg = config([{ maxParallelRequests: 1 }]);
    const a = await instance('a', prefix, cfg, { leaseMs: 600 });
    const b = await instance('b', prefix, cfg, { leaseMs: 300 });
    const now = Date.now();
    await b.store.enqueue(entry('b1', 0, now), now);
    expect((await b.store.pump(now)).grants.map((g) => g.requestId)).toEqual(['b1']);
    await b.store.enqueue(entry('b2', 0, now), now);
    await a.store.enqueue(entry('a1', 1, now), now);
    expect((await a.store.pump(now)).grants).toEqual([]);
    const before = await a.store.snapshot(now);
    expect([before.inFlight, before.waiting]).toEqual([1, 2]);

    b.factory.abandon(); // as kill -9: nothing is given back, the heartbeat stops
    const granted: Grant[] = [];
    await vi.waitFor(
      async () => {
        granted.push(...(await a.store.pump(Date.now())).grants);
        expect(granted.map((g) => g.requestId)).toEqual(['a1']);
      },
      { timeout: 5000, interval: 50 },
    );
    const snap = await a.store.snapshot(Date.now());
    expect(snap.waiting).toBe(0);
    expect(snap.inFlight).toBe(1);
    const redis = await rawClient();
    const leasesKey = `${groupPrefix(prefix, MODEL)}:leases`;
    expect(await redis.zrange(leasesKey, '0', '-1')).toEqual(['a']);
  });

  it('a server without Redis Functions (before Redis 7: no FCALL) is named as such in the error of every store call', async () => {
    const server = await startRedisServer({ extraArgs: ['--rename-command', 'FCALL', ''] });
    cleanups.push(() => server.stop());
    const a = await instance('a', freshPrefix(), config([{ maxParallelRequests: 1 }]), { url: server.url });
    const now = Date.now();
    await expect(a.store.enqueue(entry('a1', 0, now), now)).rejects.toThrow(/does not run Redis Functions \(FCALL\).*Redis 7\.0 or later/);
  });

  it('a silence in which no instance reached the group (a failover, a restart of Redis) is not counted against the leases: a live instance is not reaped after it; a dead one is, once what was left of its lease has passed', async () => {
    const prefix = freshPrefix();
    const cfg = config([{ maxParallelRequests: 1 }]);
    const clock = new FakeClock(Date.now());
    // A lease of a minute: the heartbeats (every quarter of it, real time) do not run during the test,
    // so the script clock alone says when each call happens.
    const LEASE = 60_000;
    const a = await instance('a', prefix, cfg, { leaseMs: LEASE, scriptClock: clock });
    const b = await instance('b', prefix, cfg, { leaseMs: LEASE, scriptClock: clock });
    await a.store.enqueue(entry('a1', 0, clock.now()), clock.now());
    expect((await a.store.pump(clock.now())).grants.map((g) => g.requestId)).toEqual(['a1']);
    await b.store.enqueue(entry('b1', 0, clock.now()), clock.now());
    expect((await b.store.pump(clock.now())).grants).toEqual([]);

    // Three leases without a call: every lease has lapsed by the clock when b calls again.
    clock.advance(3 * LEASE);
    expect((await b.store.pump(clock.now())).grants).toEqual([]);
    const redis = await rawClient();
    const leasesKey = `${groupPrefix(prefix, MODEL)}:leases`;
    expect((await redis.zrange(leasesKey, '0', '-1')).sort()).toEqual(['a', 'b']);
    expect(await a.store.snapshot(clock.now())).toMatchObject({ inFlight: 1, waiting: 1 });

    // Now b keeps calling (a heartbeat's pace) and a never does, as if it had died in the silence: a is
    // reaped when what was left of its lease at the silence's start has passed, and b1 gets its slot.
    const granted: string[] = [];
    let at = 0;
    while (granted.length === 0 && at < 2 * LEASE) {
      clock.advance(LEASE / 4);
      at += LEASE / 4;
      granted.push(...(await b.store.pump(clock.now())).grants.map((g) => g.requestId));
    }
    expect(granted).toEqual(['b1']);
    expect(at).toBe(LEASE);
    expect(await redis.zrange(leasesKey, '0', '-1')).toEqual(['b']);
  });

  it('an instance whose lease lapsed while it was alive re-queues its reclaimed waiters at their old place', async () => {
    const prefix = freshPrefix();
    const cfg = config([{ maxParallelRequests: 1 }]);
    const a = await instance('a', prefix, cfg, { leaseMs: 600 });
    const b = await instance('b', prefix, cfg, { leaseMs: 600 });
    const now = Date.now();
    await a.store.enqueue(entry('a0', 0, now), now);
    const [a0] = (await a.store.pump(now)).grants;
    const accepted = await b.store.enqueue(entry('b1', 0, now), now);
    expect(accepted.accepted).toBe(true);
    // B stalls (e.g. a long GC pause): its lease lapses and A's next pump reclaims B's waiter.
    const redis = await rawClient();
    await redis.zadd(`${groupPrefix(prefix, MODEL)}:leases`, '0', 'b');
    await a.store.pump(Date.now());
    expect((await a.store.snapshot(Date.now())).waiting).toBe(0);
    // B's next heartbeat finds its lease gone and puts b1 back, with its arrival seq.
    await vi.waitFor(async () => {
      const snap = await a.store.snapshot(Date.now());
      expect(snap.waiters.map((w) => [w.id, w.seq])).toEqual([['b1', accepted.accepted ? accepted.seq : -1]]);
    }, WAIT);
    await a.store.release(a0, { kind: 'ok' }, Date.now());
    expect((await a.store.pump(Date.now())).grants).toEqual([]);
    await vi.waitFor(() => expect(b.remoteGrants.map((g) => g.requestId)).toEqual(['b1']), WAIT);
  });

  it('a clean close gives everything back and tells the other instances to pump', async () => {
    const prefix = freshPrefix();
    const cfg = config([{ maxParallelRequests: 1 }]);
    const a = await instance('a', prefix, cfg);
    const b = await instance('b', prefix, cfg);
    const now = Date.now();
    await b.store.enqueue(entry('b1', 0, now), now);
    await b.store.pump(now);
    await a.store.enqueue(entry('a1', 0, now), now);
    const changedBefore = a.changed;
    await b.factory.close();
    await vi.waitFor(() => expect(a.changed).toBeGreaterThan(changedBefore), WAIT);
    expect((await a.store.pump(Date.now())).grants.map((g) => g.requestId)).toEqual(['a1']);
  });
});

describe('RedisStore: enqueue + pump and release + pump in one step', () => {
  const shape = (g: Grant) => `${g.requestId}@${g.deploymentId}:p${g.priority}:s${g.seq}`;

  it.each([
    { aging: undefined, seed: 52 },
    { aging: 40, seed: 53 },
  ])('grants exactly as MemoryStore enqueue → pump and release → pump on a random workload (aging $aging)', async ({ aging, seed }) => {
    const deployments: TestDeployment[] = [{ maxParallelRequests: 3, rpm: 150, tpm: 20_000 }, { maxParallelRequests: 2 }];
    // (Failures are frequent here, for the retries: the cooldown policy is left to the test above.)
    const cfg = config(deployments, { maxQueueSize: 25, allowedFails: 1000, cooldownTimeMs: 600_000, ...(aging ? { priorityAgingMs: aging } : {}) });
    const a = await instance('a', freshPrefix(), cfg, { pumpOnEnqueue: true });
    // The same options as the router's in-memory store, from the same config.
    const mem = memoryStoreFactory(MODEL, cfg.modelGroups[0].deployments, cfg);
    const rand = prng(seed);
    const pickOne = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)];
    let now = Date.now();
    let nextId = 1;
    const waiting = new Set<string>();
    const accepted = new Map<string, WaiterEntry & { seq: number; round: number }>();
    const held = new Map<string, { mem: Grant; redis: Grant }>();
    const counts = { arrivalGranted: 0, queuedGranted: 0, rejected: 0, retries: 0, grants: 0 };

    /** The Redis store's `pumped` must be what MemoryStore's pump right after the same step gives. */
    const samePump = (m: PumpResult, r: PumpResult | undefined, arrival?: string) => {
      expect(r).toBeDefined();
      expect(r!.grants.map(shape)).toEqual(m.grants.map(shape));
      expect(r!.expired).toEqual(m.expired);
      expect(r!.waiting).toBe(m.waiting);
      for (let i = 0; i < m.grants.length; i++) {
        held.set(m.grants[i].requestId, { mem: m.grants[i], redis: r!.grants[i] });
        waiting.delete(m.grants[i].requestId);
        if (m.grants[i].requestId === arrival) counts.arrivalGranted += 1;
        else counts.queuedGranted += 1;
      }
      counts.grants += m.grants.length;
    };
    const enqueueBoth = async (e: WaiterEntry) => {
      const m = await mem.enqueue(e, now);
      const r = await a.store.enqueue(e, now);
      const { pumped, ...rest } = r as EnqueueResult & { pumped?: PumpResult };
      expectSameEnqueue(rest as EnqueueResult, m);
      if (!m.accepted) {
        counts.rejected += 1;
        expect(pumped).toBeUndefined();
        return;
      }
      waiting.add(e.id);
      accepted.set(e.id, { ...e, seq: m.seq, round: m.round });
      samePump(await mem.pump(now), pumped, e.id);
    };

    for (let step = 0; step < 800; step++) {
      now += 1;
      const x = rand();
      // Busy phases fill the queue (to full), quiet ones drain it (arrivals at an empty queue).
      if (x < (step % 200 < 100 ? 0.6 : 0.3)) {
        await enqueueBoth(entry(`r${nextId++}`, Math.floor(rand() * 4), now, { tenant: pickOne(['a', 'b', '']), tokens: 20 + Math.floor(rand() * 300) }));
      } else if (x < 0.85 && held.size > 0) {
        const id = pickOne([...held.keys()]);
        const g = held.get(id)!;
        held.delete(id);
        const y = rand();
        const outcome: ReleaseOutcome =
          y < 0.75 ? { kind: 'ok', tokensUsed: Math.floor(rand() * 400) } : y < 0.85 ? { kind: 'cancelled' } : { kind: 'failed', failure: pickOne(['server_error', 'network', 'client_error'] as const) };
        // A failed call that is retried releases without a grant step, then re-enters at its old place.
        const retry = outcome.kind === 'failed' && rand() < 0.6;
        const m = await mem.release(g.mem, outcome, now);
        const r = await a.store.release(g.redis, outcome, now, { pump: !retry });
        expect(r.cooldown?.deploymentId).toBe(m.cooldown?.deploymentId);
        if (retry) {
          expect(r.pumped).toBeUndefined();
          counts.retries += 1;
          const k = accepted.get(id)!;
          await enqueueBoth({ ...k, enqueuedAt: now, deadline: now + 600_000 });
        } else {
          samePump(await mem.pump(now), r.pumped);
        }
      } else if (x < 0.93 && waiting.size > 0) {
        const id = pickOne([...waiting]);
        expect(await a.store.remove(id, now)).toBe(await mem.remove(id));
        waiting.delete(id);
        // The scheduler pumps after a removal (the head may have been held back).
        const [m, r] = [await mem.pump(now), await a.store.pump(now)];
        samePump(m, r);
      } else {
        const [m, r] = [await mem.pump(now), await a.store.pump(now)];
        samePump(m, r);
      }
    }
    const [ms, rs] = await Promise.all([mem.snapshot(now, 1000), a.store.snapshot(now, 1000)]);
    const view = (w: (typeof ms.waiters)[number]) => [w.id, w.position, w.priority, w.round, w.seq, w.tenant];
    expect(rs.waiters.map(view)).toEqual(ms.waiters.map(view));
    expect(rs.depthByPriority).toEqual(ms.depthByPriority);
    const usage = (d: (typeof ms.deployments)[number]) => [d.id, d.inFlight, d.rpmUsed, d.tpmUsed, d.headroom];
    expect(rs.deployments.map(usage)).toEqual(ms.deployments.map(usage));
    // Both paths of the enqueue script ran (an arrival granted at once at an empty queue, and waiters
    // granted by later steps), and the queue filled up and refused.
    expect(counts.arrivalGranted).toBeGreaterThan(20);
    expect(counts.queuedGranted).toBeGreaterThan(20);
    expect(counts.rejected).toBeGreaterThan(0);
    expect(counts.retries).toBeGreaterThan(5);
  });

  it('a release without a grant step frees the slot but grants nobody (a retry gets back in line first)', async () => {
    const a = await instance('a', freshPrefix(), config([{ maxParallelRequests: 1 }]), { pumpOnEnqueue: true });
    const now = Date.now();
    const x = await a.store.enqueue(entry('x', 0, now), now);
    expect(x.accepted && x.pumped?.grants.map((g) => g.requestId)).toEqual(['x']);
    const y = await a.store.enqueue(entry('y', 5, now), now);
    expect(y.accepted && y.pumped).toMatchObject({ grants: [], waiting: 1 });
    const gx = x.accepted ? x.pumped!.grants[0] : undefined;
    expect(await a.store.release(gx!, { kind: 'failed', failure: 'server_error' }, now, { pump: false })).toEqual({});
    expect(await a.store.snapshot(now)).toMatchObject({ waiting: 1, inFlight: 0 });
    // The retry re-enters at its old place, ahead of y, and takes the slot in its own step.
    const again = await a.store.enqueue(entry('x', 0, now, { seq: x.accepted ? x.seq : 0, round: 0 }), now);
    expect(again.accepted && again.pumped?.grants.map((g) => g.requestId)).toEqual(['x']);
    const gx2 = again.accepted ? again.pumped!.grants[0] : undefined;
    expect(gx2!.grantId).not.toBe(gx!.grantId);
    const done = await a.store.release(gx2!, { kind: 'ok' }, now, { pump: true });
    expect(done.pumped?.grants.map((g) => g.requestId)).toEqual(['y']);
    expect(done.pumped?.waiting).toBe(0);
  });

  it('judges a full queue after the grant step of the same script', async () => {
    const a = await instance('a', freshPrefix(), config([{ maxParallelRequests: 1 }], { maxQueueSize: 2 }), { pumpOnEnqueue: true });
    const now = Date.now();
    const h = await a.store.enqueue(entry('h', 0, now), now);
    await a.store.enqueue(entry('w1', 0, now), now);
    await a.store.enqueue(entry('w2', 0, now), now);
    const full = await a.store.enqueue(entry('w3', 0, now), now);
    expect(full).toMatchObject({ accepted: false, reason: 'queue_full' });
    // The slot comes free without a grant step; the next arrival's step grants w1 first, so w4 fits.
    await a.store.release(h.accepted ? h.pumped!.grants[0] : (undefined as never), { kind: 'ok' }, now);
    const w4 = await a.store.enqueue(entry('w4', 0, now), now);
    expect(w4.accepted).toBe(true);
    expect(w4.accepted && w4.pumped?.grants.map((g) => g.requestId)).toEqual(['w1']);
    expect((await a.store.snapshot(now)).waiters.map((w) => w.id)).toEqual(['w2', 'w4']);
  });

  it("delivers another instance's grant from the notification itself, and never a stale one to a re-queued request", async () => {
    const prefix = freshPrefix();
    const cfg = config([{ maxParallelRequests: 1 }]);
    const a = await instance('a', prefix, cfg, { pumpOnEnqueue: true });
    const { inst: b, claims: claimsOfB, claimsAnswered } = await instanceWithCountedClaims('b', prefix, cfg, a.store);
    const claims = { calls: claimsOfB };
    const now = Date.now();
    const a1 = await a.store.enqueue(entry('a1', 0, now), now);
    const ga1 = a1.accepted ? a1.pumped!.grants[0] : (undefined as never);
    const b1 = await b.store.enqueue(entry('b1', 0, now), now);
    expect(b1.accepted && b1.pumped?.grants).toEqual([]);
    const rel = await a.store.release(ga1, { kind: 'ok' }, Date.now(), { pump: true });
    expect(rel.pumped?.grants).toEqual([]);
    await vi.waitFor(() => expect(b.remoteGrants.map((g) => g.requestId)).toEqual(['b1']), WAIT);
    const old = b.remoteGrants[0];
    expect(old.deploymentId).toBe(`${MODEL}#0`);
    expect(claims.calls()).toBe(0);

    // b1's call fails and is retried while a2 holds the slot: it waits again, under the same id.
    const a2 = await a.store.enqueue(entry('a2', 0, Date.now()), Date.now());
    expect(a2.accepted && a2.pumped?.grants).toEqual([]);
    await b.store.release(old, { kind: 'failed', failure: 'server_error' }, Date.now(), { pump: false });
    const ga2 = (await a.store.pump(Date.now())).grants[0];
    expect(ga2.requestId).toBe('a2');
    const seq = b1.accepted ? b1.seq : 0;
    const retry = await b.store.enqueue(entry('b1', 0, Date.now(), { seq, round: 0 }), Date.now());
    expect(retry.accepted && retry.pumped?.grants).toEqual([]);
    // A late copy of the first notification must not be taken for the new wait: b claims instead, and
    // Redis says that grant is over.
    const record = [old.grantId, old.requestId, old.deploymentId, old.tokens, 0, 0, old.priority, old.seq].join('\t');
    b.store.onGrants(record);
    await vi.waitFor(() => expect(claims.calls()).toBe(1), WAIT);
    // That claim has answered (and delivered whatever it found): nothing new reached b.
    await claimsAnswered();
    expect(b.remoteGrants).toHaveLength(1);

    await a.store.release(ga2, { kind: 'ok' }, Date.now(), { pump: true });
    await vi.waitFor(() => expect(b.remoteGrants.map((g) => g.requestId)).toEqual(['b1', 'b1']), WAIT);
    expect(b.remoteGrants[1].grantId).not.toBe(old.grantId);
    expect(grantCounter(b.remoteGrants[1].grantId)).toBeGreaterThan(grantCounter(old.grantId));
    expect(await a.store.snapshot(Date.now())).toMatchObject({ waiting: 0, inFlight: 1 });
  });

  it('a grants message that also asks for a claim: the grant is delivered from the message itself, the expiry of the same step by the claim', async () => {
    // One script grants a waiter of b and expires another: b's message carries the grant and a claim
    // request (it used to be a bare "claim your mail", a round trip before the grant was dispatched).
    const prefix = freshPrefix();
    const cfg = config([{ maxParallelRequests: 1 }]);
    const clock = new FakeClock(Date.now());
    const a = await instance('a', prefix, cfg, { pumpOnEnqueue: true, scriptClock: clock });
    const b = await instance('b', prefix, cfg, { pumpOnEnqueue: true, scriptClock: clock });
    const onGrants = b.store.onGrants.bind(b.store);
    const messages: Array<{ payload: string; deliveredByThen: string[] }> = [];
    b.store.onGrants = (payload: string) => {
      onGrants(payload);
      // Read before any reply can come back: what the message alone delivered.
      messages.push({ payload, deliveredByThen: b.remoteGrants.map((g) => g.requestId) });
    };
    const now = clock.now();
    const a1 = await a.store.enqueue(entry('a1', 0, now), now);
    const ga1 = a1.accepted ? a1.pumped!.grants[0] : (undefined as never);
    expect(ga1.requestId).toBe('a1');
    expect((await b.store.enqueue(entry('b1', 1, now), now)).accepted).toBe(true);
    expect((await b.store.enqueue(entry('b2', 0, now, { deadline: now + 500 }), now)).accepted).toBe(true);
    clock.advance(1_000);
    const rel = await a.store.release(ga1, { kind: 'ok' }, clock.now(), { pump: true });
    expect(rel.pumped?.grants).toEqual([]);
    await vi.waitFor(() => expect(b.remoteExpired).toEqual(['b2']), WAIT);
    expect(messages).toHaveLength(1);
    expect(messages[0].payload.endsWith(`\0${CLAIM_RECORD}`)).toBe(true);
    expect(messages[0].deliveredByThen).toEqual(['b1']);
    expect(b.remoteGrants.map((g) => g.requestId)).toEqual(['b1']);
    expect(await a.store.snapshot(clock.now())).toMatchObject({ waiting: 0, inFlight: 1 });
  });

  it("a grant whose message overtakes its waiter's enqueue reply waits for that reply instead of a claim, and comes with the acceptance", async () => {
    const prefix = freshPrefix();
    const cfg = config([{ maxParallelRequests: 1 }]);
    const a = await instance('a', prefix, cfg, { pumpOnEnqueue: true });
    const { inst: b, claims: claimsOfB } = await instanceWithCountedClaims('b', prefix, cfg, a.store);
    const { enqueued, open } = await grantBeforeEnqueueReply(a, b);
    expect(b.remoteGrants).toEqual([]);
    expect(claimsOfB()).toBe(0);
    open();
    const r = await enqueued;
    // Handed out with the acceptance, as a grant made in the enqueue's own step is.
    expect(r.accepted && r.pumped?.grants.map((g) => g.requestId)).toEqual(['b1']);
    expect(b.remoteGrants).toEqual([]);
    expect(claimsOfB()).toBe(0);
    expect(await a.store.snapshot(Date.now())).toMatchObject({ waiting: 0, inFlight: 1 });
  });

  it('a grant kept for an unanswered enqueue whose request leaves meanwhile is given back, not leaked', async () => {
    const prefix = freshPrefix();
    const cfg = config([{ maxParallelRequests: 1 }]);
    const a = await instance('a', prefix, cfg, { pumpOnEnqueue: true });
    const b = await instance('b', prefix, cfg, { pumpOnEnqueue: true });
    const { enqueued, open } = await grantBeforeEnqueueReply(a, b);
    // The request is cancelled while its grant waits for the enqueue's answer.
    expect(await b.store.remove('b1', Date.now())).toBe(false);
    open();
    const r = await enqueued;
    expect(r.accepted && r.pumped?.grants).toEqual([]);
    // The mail decides: the grant is for a request no longer here, so its slot is released.
    await vi.waitFor(async () => expect(await a.store.snapshot(Date.now())).toMatchObject({ waiting: 0, inFlight: 0 }), WAIT);
    expect(b.remoteGrants).toEqual([]);
  });

  it('grants each request exactly once across two instances when every enqueue and release grants in its own step', async () => {
    const prefix = freshPrefix();
    const cfg = config([{ maxParallelRequests: 4 }, { maxParallelRequests: 3, tpm: 1_000_000 }]);
    const a = await instance('a', prefix, cfg, { pumpOnEnqueue: true });
    const b = await instance('b', prefix, cfg, { pumpOnEnqueue: true });
    const N = 300;
    let remote = 0;
    const ledger = grantLedger((inst, g) => inst.store.release(g, { kind: 'ok' }, Date.now(), { pump: true }).then((r) => r.pumped?.grants ?? []));
    for (const [inst, name] of [
      [a, 'a'],
      [b, 'b'],
    ] as const) {
      inst.store.setListener({
        changed: () => void inst.store.pump(Date.now()).then((r) => ledger.handle(inst, name, r.grants)),
        remote: ({ grants }) => {
          remote += grants.length;
          ledger.handle(inst, name, grants);
        },
      });
    }
    const drive = (inst: Instance, name: string) =>
      Promise.all(
        Array.from({ length: N }, async (_, i) => {
          const now = Date.now();
          const r = await inst.store.enqueue(entry(`${name}${i}`, i % 5, now), now);
          expect(r.accepted).toBe(true);
          if (r.accepted) ledger.handle(inst, name, r.pumped?.grants ?? []);
        }),
      );
    await Promise.all([drive(a, 'a'), drive(b, 'b')]);
    await vi.waitFor(() => expect(ledger.released).toBe(2 * N), { timeout: 20_000 });
    expect(ledger.seen.size).toBe(2 * N);
    expect([...ledger.seen.values()].every((n) => n === 1)).toBe(true);
    expect(ledger.maxOutstanding).toBeLessThanOrEqual(7);
    expect(remote).toBeGreaterThan(0);
    const snap = await a.store.snapshot(Date.now());
    expect(snap.waiting).toBe(0);
    expect(snap.inFlight).toBe(0);
  });
});

describe('RedisStore: Redis down', () => {
  let server: RedisServer | undefined;
  afterEach(async () => {
    await server?.stop(true);
    server = undefined;
  });

  it('rejects promptly while Redis is down (fail closed) and works again after a restart, without a new store', async () => {
    server = await startRedisServer();
    const cfg = config([{ maxParallelRequests: 1 }]);
    const a = await instance('a', freshPrefix(), cfg, { url: server.url, commandTimeoutMs: 500 });
    const now = Date.now();
    await a.store.enqueue(entry('blocker', 0, now), now);
    const [blocker] = (await a.store.pump(now)).grants;
    await a.store.enqueue(entry('w1', 0, now), now);
    await a.store.enqueue(entry('short', 0, now, { deadline: now + 100 }), now);

    await server.stop(true);
    await vi.waitFor(() => expect(a.factory.ready()).toBe(false), WAIT);
    const t0 = Date.now();
    await expect(a.store.pump(Date.now())).rejects.toThrow();
    await expect(a.store.enqueue(entry('w2', 0, Date.now()), Date.now())).rejects.toThrow();
    await expect(a.store.release(blocker, { kind: 'ok' }, Date.now())).rejects.toThrow();
    expect(Date.now() - t0).toBeLessThan(1000);
    // Without Redis nothing is granted, but a waiter past its deadline still times out (locally).
    await vi.waitFor(async () => {
      await expect(a.store.pump(Date.now())).rejects.toThrow();
      expect(a.remoteExpired).toEqual(['short']);
    }, WAIT);
    expect(a.remoteGrants).toEqual([]);

    await server.restart(); // a fresh, empty Redis on the same port
    await vi.waitFor(() => expect(a.factory.ready()).toBe(true), { timeout: 5000 });
    // The store re-queues what the empty Redis lost (w1, at its old place) and serves it again.
    const granted: Grant[] = [];
    await vi.waitFor(
      async () => {
        granted.push(...(await a.store.pump(Date.now())).grants, ...a.remoteGrants.splice(0));
        expect(granted.map((g) => g.requestId)).toEqual(['w1']);
      },
      { timeout: 5000, interval: 50 },
    );
    const r = await a.store.enqueue(entry('w3', 0, Date.now()), Date.now());
    expect(r.accepted).toBe(true);
    expect((await a.store.snapshot(Date.now())).inFlight).toBe(1);
  });
  it('an enqueue that Redis runs only after its call timed out changes nothing: no waiter, no grant, no rpm used', async () => {
    server = await startRedisServer();
    const a = await instance('a', freshPrefix(), config([{ id: 'd', rpm: 5 }]), { url: server.url, commandTimeoutMs: 200, pumpOnEnqueue: true });
    // One answered call first: the store has read the Redis clock.
    expect((await a.store.snapshot(Date.now())).deployments[0].rpmUsed).toBe(0);
    const admin = new Redis(server.url);
    cleanups.push(() => void admin.disconnect());
    // Every client paused for 700 ms: the enqueue times out after 200 ms, and Redis runs it after the pause.
    await admin.call('CLIENT', 'PAUSE', '700', 'ALL');
    const sent = Date.now();
    await expect(a.store.enqueue(entry('late', 0, sent), sent)).rejects.toThrow(/timed out|timeout/i);
    expect(Date.now() - sent).toBeLessThan(600);
    // A later call on the same connection is answered only after the enqueue has run (one connection,
    // commands in order); until the pause ends, each attempt times out in turn.
    let snap: Awaited<ReturnType<RedisStore['snapshot']>> | undefined;
    const deadline = Date.now() + 5_000;
    while (snap === undefined) {
      try {
        snap = await a.store.snapshot(Date.now());
      } catch (e) {
        if (Date.now() > deadline) throw e;
      }
    }
    expect(snap.waiting).toBe(0);
    expect(snap.inFlight).toBe(0);
    expect(snap.deployments[0].rpmUsed).toBe(0);
    expect(a.remoteGrants).toEqual([]);
  });
});

describe('Router on the Redis store', () => {
  // Each call holds its slot until the test releases it, so the order is never a race against a delay.

  function liveConfig(): TriageConfig {
    const cfg = testConfig({ [MODEL]: [{ maxParallelRequests: 1 }] });
    for (const d of cfg.modelGroups[0].deployments) delete d.mockResponse;
    return cfg;
  }

  async function routerOn(name: string, prefix: string, upstream: ControlledUpstream): Promise<{ router: Router; events: QueueEvent[] }> {
    const factory = createRedisStoreFactory({ url: sharedRedisUrl(), prefix }, { instanceId: name });
    await factory.whenReady();
    const router = createRouter(liveConfig(), { storeFactory: factory.storeFactory, upstreamFactory: () => upstream });
    cleanups.push(async () => {
      await router.close(1000);
      await factory.close();
    });
    const events: QueueEvent[] = [];
    router.events.subscribe((e) => events.push(e));
    return { router, events };
  }

  const queued = (events: QueueEvent[]) => events.filter((e) => e.type === 'request.queued').length;

  /** Ends the calls one at a time, in the order they reach the upstream: the order the queue granted them. */
  async function releaseInTurn(upstream: ControlledUpstream, n: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      await vi.waitFor(() => expect(upstream.calls.length).toBeGreaterThan(i), WAIT);
      upstream.calls[i].release();
    }
  }

  it('serves priorities in order under max_parallel_requests: 1', async () => {
    const upstream = new ControlledUpstream();
    const { router, events } = await routerOn('a', freshPrefix(), upstream);
    const ask = (priority: number) => router.scheduleCompletion({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], priority });
    const all = [ask(0)];
    await vi.waitFor(() => expect(upstream.calls).toHaveLength(1), WAIT);
    for (const p of [5, 1, 3]) {
      all.push(ask(p));
      await vi.waitFor(() => expect(queued(events)).toBe(all.length), WAIT);
    }
    await releaseInTurn(upstream, 4);
    const done = await Promise.all(all);
    expect(done.every((c) => c.choices[0].message.content === 'done')).toBe(true);
    expect(events.filter((e) => e.type === 'request.dispatched').map((e) => e.priority)).toEqual([0, 1, 3, 5]);
  });

  it('a request its own enqueue granted goes from queued straight to dispatched: its acceptance comes with the grant, as in memory', async () => {
    const upstream = new ControlledUpstream();
    const { router, events } = await routerOn('a', freshPrefix(), upstream);
    const states: string[] = [];
    const received: Array<{ type: string; accepted: boolean }> = [];
    // The request actor's states and the scheduler's replies to it, as XState's inspection reports them.
    router.setInspector((e) => {
      const snapshot = (e.type === '@xstate.snapshot' ? e.snapshot : undefined) as unknown as { machine?: { id?: string }; value?: unknown } | undefined;
      if (snapshot?.machine?.id === 'request') {
        const value = String(snapshot.value);
        if (states[states.length - 1] !== value) states.push(value);
      }
      if (e.type === '@xstate.event' && (e.event.type === 'grant' || e.event.type === 'queue.accepted')) {
        received.push({ type: e.event.type, accepted: (e.event as { accepted?: unknown }).accepted !== undefined });
      }
    });
    const done = router.scheduleCompletion({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] });
    await vi.waitFor(() => expect(upstream.calls).toHaveLength(1), WAIT);
    upstream.calls[0].release();
    await done;
    expect(received).toEqual([{ type: 'grant', accepted: true }]);
    expect(states).toEqual(['queued', 'dispatched', 'done']);
    // The events are those of memory: queued (with its position), dispatched, done.
    expect(events.map((e) => e.type)).toEqual(['request.queued', 'request.dispatched', 'request.done']);
  });

  it('two routers sharing Redis serve one global queue in priority order', async () => {
    const prefix = freshPrefix();
    const upstream = new ControlledUpstream();
    const A = await routerOn('a', prefix, upstream);
    const B = await routerOn('b', prefix, upstream);
    const dispatched: string[] = [];
    A.router.events.subscribe((e) => e.type === 'request.dispatched' && dispatched.push(`a${e.priority}`));
    B.router.events.subscribe((e) => e.type === 'request.dispatched' && dispatched.push(`b${e.priority}`));
    const ask = (r: Router, priority: number) => r.scheduleCompletion({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], priority });
    const all = [ask(A.router, 0)];
    await vi.waitFor(() => expect(upstream.calls).toHaveLength(1), WAIT);
    all.push(ask(B.router, 5));
    await vi.waitFor(() => expect(queued(B.events)).toBe(1), WAIT);
    all.push(ask(A.router, 1));
    await vi.waitFor(() => expect(queued(A.events)).toBe(2), WAIT);
    all.push(ask(B.router, 3));
    await vi.waitFor(() => expect(queued(B.events)).toBe(2), WAIT);
    await releaseInTurn(upstream, 4);
    await Promise.all(all);
    expect(dispatched).toEqual(['a0', 'a1', 'b3', 'b5']);
  });
});
