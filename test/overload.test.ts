/**
 * Overload, told truthfully (#19), through the Router API on both stores: the same tests in memory and
 * on a real Redis (a fresh key prefix per test, two instances sharing it where it matters).
 *
 * Each group here is held at rpm: 1 with one grant made, so every later request waits for a window that
 * reopens a minute later: the queue's contents are decided by the test, never by a race with time.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { TriageConfig } from '../src/core/config-types.js';
import { createRedisStoreFactory } from '../src/adapters/redis-connection.js';
import { TriageError } from '../src/errors.js';
import type { QueueEvent } from '../src/events.js';
import { createRouter, type CompletionParams, type Router, type StoreFactory } from '../src/router.js';
import { testConfig, type TestDeployment } from './support/test-config.js';
import { freshPrefix, sharedRedisUrl } from './support/redis.js';

const MODEL = 'm';
const WAIT = { timeout: 10_000 };
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

type StoreKind = 'memory' | 'redis';

interface Harness {
  /** A store factory for one instance; on Redis every instance of one test shares a prefix. */
  storeFactory(name: string): Promise<StoreFactory | undefined>;
}

function harness(kind: StoreKind): Harness {
  const prefix = freshPrefix('overload');
  return {
    async storeFactory(name) {
      if (kind === 'memory') return undefined;
      const factory = createRedisStoreFactory({ url: sharedRedisUrl(), prefix }, { instanceId: name });
      cleanups.push(() => factory.close());
      await factory.whenReady();
      return factory.storeFactory;
    },
  };
}

interface Running {
  router: Router;
  events: QueueEvent[];
  /** Starts a request and records how it ends (never an unhandled rejection). */
  send(priority: number, extra?: Partial<CompletionParams>): Outcome;
}

interface Outcome {
  id?: string;
  settled: Promise<{ ok: true } | { ok: false; error: TriageError }>;
}

async function start(h: Harness, deployments: TestDeployment[], router: Partial<TriageConfig['router']>, name = 'a'): Promise<Running> {
  const storeFactory = await h.storeFactory(name);
  const r = createRouter(testConfig({ [MODEL]: deployments }, router), storeFactory ? { storeFactory } : {});
  cleanups.push(() => r.close(1_000));
  const events: QueueEvent[] = [];
  r.events.subscribe((e) => events.push(e));
  return {
    router: r,
    events,
    send(priority, extra = {}) {
      const settled = r.scheduleCompletion({ model: MODEL, messages: [{ role: 'user', content: `p${priority}` }], priority, ...extra }).then(
        () => ({ ok: true as const }),
        (error: TriageError) => ({ ok: false as const, error }),
      );
      return { settled };
    },
  };
}

const waiting = async (r: Router) => (await r.queueStatus())[0].waiting;

/** Waits until the group holds `n` waiters. */
async function untilWaiting(r: Router, n: number): Promise<void> {
  await vi.waitFor(async () => expect(await waiting(r)).toBe(n), WAIT);
}

async function rejection(o: Outcome): Promise<TriageError> {
  const result = await o.settled;
  if (result.ok) throw new Error('expected a rejection, got a completion');
  return result.error;
}

describe.each<StoreKind>(['memory', 'redis'])('priority decides who is shed (%s store)', (kind) => {
  it('a better arrival displaces the worst waiter (newest among equals), answered 429 queue_full at once with a request.displaced event; an arrival no better is refused', async () => {
    const g = await start(harness(kind), [{ rpm: 1 }], { maxQueueSize: 2 });
    // The one grant of the window.
    expect((await g.send(5).settled).ok).toBe(true);
    const first = g.send(5);
    await untilWaiting(g.router, 1);
    const second = g.send(5);
    await untilWaiting(g.router, 2);

    // No better than the worst waiter (priority 5): refused as before.
    const equal = await rejection(g.send(5));
    expect(equal.code).toBe('queue_full');
    const worse = await rejection(g.send(9));
    expect(worse.code).toBe('queue_full');

    // Better: it takes the place of the newest of the two priority-5 waiters.
    const better = g.send(1);
    const displaced = await rejection(second);
    expect(displaced.code).toBe('queue_full');
    expect(displaced.status).toBe(429);
    expect(displaced.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(displaced.message).toMatch(/better priority/);
    await untilWaiting(g.router, 2);
    const event = g.events.find((e) => e.type === 'request.displaced');
    expect(event).toMatchObject({ type: 'request.displaced', model: MODEL, priority: 5, retryAfterSeconds: displaced.retryAfterSeconds });
    expect(g.events.filter((e) => e.type === 'request.rejected' && e.code === 'queue_full')).toHaveLength(3);

    // The queue now holds priorities 1 and 5; a priority-0 arrival displaces the 5, not the 1.
    const best = g.send(0);
    expect((await rejection(first)).code).toBe('queue_full');
    await untilWaiting(g.router, 2);
    const snapshot = (await g.router.queueStatus())[0];
    expect(snapshot.waiters.map((w) => w.priority)).toEqual([0, 1]);
    expect(g.events.filter((e) => e.type === 'request.displaced')).toHaveLength(2);

    await g.router.close(0);
    for (const o of [better, best]) expect((await rejection(o)).code).toBe('shutting_down');
  });

  it('with aging, rank decides: a waiter that has aged past an arrival keeps its place', async () => {
    // Aging every 1 ms: a priority-5 waiter that has waited ~50 ms ranks like a priority ~-45 arrival.
    const g = await start(harness(kind), [{ rpm: 1 }], { maxQueueSize: 1, priorityAgingMs: 1 });
    expect((await g.send(5).settled).ok).toBe(true);
    const old = g.send(5);
    await untilWaiting(g.router, 1);
    await vi.waitFor(async () => expect((await g.router.queueStatus())[0].waiters[0].effectivePriority).toBeLessThan(-40), WAIT);
    expect((await rejection(g.send(0))).code).toBe('queue_full');
    await g.router.close(0);
    expect((await rejection(old)).code).toBe('shutting_down');
  });
});

describe('priority decides who is shed across instances (redis store)', () => {
  it("an arrival at one instance displaces another instance's waiter, which that instance answers 429 at once", async () => {
    const h = harness('redis');
    const a = await start(h, [{ rpm: 1 }], { maxQueueSize: 1 }, 'a');
    const b = await start(h, [{ rpm: 1 }], { maxQueueSize: 1 }, 'b');
    expect((await a.send(5).settled).ok).toBe(true);
    const atA = a.send(5);
    await untilWaiting(a.router, 1);
    const atB = b.send(1);
    const displaced = await rejection(atA);
    expect(displaced.code).toBe('queue_full');
    expect(a.events.some((e) => e.type === 'request.displaced')).toBe(true);
    await untilWaiting(b.router, 1);
    await b.router.close(0);
    expect((await rejection(atB)).code).toBe('shutting_down');
  });
});

describe.each<StoreKind>(['memory', 'redis'])('answers early when a deadline cannot be met (%s store)', (kind) => {
  it('an arrival whose deadline passes before the rpm window reopens: 429 queue_timeout_certain at once, Retry-After = when it reopens', async () => {
    const g = await start(harness(kind), [{ rpm: 1 }], {});
    expect((await g.send(0).settled).ok).toBe(true);
    const refused = await rejection(g.send(0, { timeout: 2 }));
    expect(refused).toMatchObject({ code: 'queue_timeout_certain', status: 429, type: 'rate_limit_error' });
    // The window reopens 60 s after the grant (a little of it has passed).
    expect(refused.retryAfterSeconds).toBeGreaterThanOrEqual(55);
    expect(refused.retryAfterSeconds).toBeLessThanOrEqual(60);
    expect(await waiting(g.router)).toBe(0);
    // With a deadline past the reopening it waits, with an ETA of the same moment.
    const patient = g.send(0, { timeout: 120 });
    await untilWaiting(g.router, 1);
    const queued = g.events.filter((e) => e.type === 'request.queued').at(-1);
    expect(queued?.type === 'request.queued' ? queued.etaMs : undefined).toBeGreaterThanOrEqual(55_000);
    await g.router.close(0);
    expect((await rejection(patient)).code).toBe('shutting_down');
  });

  it('max_parallel_requests alone never answers early, and its waiters have no ETA', async () => {
    const g = await start(harness(kind), [{ maxParallelRequests: 1, mockDelayMs: 60_000 }], {});
    const running = g.send(0);
    await vi.waitFor(async () => expect((await g.router.queueStatus())[0].inFlight).toBe(1), WAIT);
    const short = g.send(0, { timeout: 1 });
    await untilWaiting(g.router, 1);
    const queued = g.events.filter((e) => e.type === 'request.queued');
    expect(queued.at(-1)).toMatchObject({ etaMs: null });
    // It waits for its deadline: a call may end at any moment.
    expect((await rejection(short)).code).toBe('queue_timeout');
    await g.router.close(0);
    expect((await rejection(running)).code).toBe('shutting_down');
  });

  it('a tpm reservation of a call in flight is not taken as certain: an arrival that fits once that call reports its real usage waits and is served', async () => {
    const g = await start(harness(kind), [{ tpm: 100, mockDelayMs: 1_000 }], {});
    // Reserves 8 + 80 tokens; the mock's answer uses 9.
    const running = g.send(0, { max_tokens: 80 });
    await vi.waitFor(async () => expect((await g.router.queueStatus())[0].inFlight).toBe(1), WAIT);
    // 58 more: over the limit only while the reservation stands, and the window would reopen only
    // 60 s after it, past this deadline. Counted as certain, it was refused at once (429).
    const next = g.send(0, { max_tokens: 50, timeout: 30 });
    await untilWaiting(g.router, 1);
    expect((await running.settled).ok).toBe(true);
    expect((await next.settled).ok).toBe(true);
    expect(g.events.filter((e) => e.type === 'request.rejected')).toHaveLength(0);
  });

  it('an rpm-bound queue: each waiter is told when it will be granted, exact within a second', async () => {
    const g = await start(harness(kind), [{ rpm: 2 }], {});
    const t0 = Date.now();
    expect((await g.send(0).settled).ok).toBe(true);
    expect((await g.send(0).settled).ok).toBe(true);
    const waiters = [g.send(0), g.send(0), g.send(0)];
    await untilWaiting(g.router, 3);
    const etas = g.events.filter((e) => e.type === 'request.queued').slice(-3).map((e) => (e.type === 'request.queued' ? e.at + (e.etaMs ?? NaN) : NaN));
    // Two lanes reopen 60 s after the two grants; the third waiter goes a minute after that.
    const expected = [t0 + 60_000, t0 + 60_000, t0 + 120_000];
    etas.forEach((eta, i) => expect(Math.abs(eta - expected[i])).toBeLessThanOrEqual(1_000));
    const status = (await g.router.queueStatus())[0];
    status.waiters.forEach((w, i) => expect(Math.abs(Date.now() + (w.etaMs ?? NaN) - expected[i])).toBeLessThanOrEqual(1_000));
    await g.router.close(0);
    for (const w of waiters) expect((await rejection(w)).code).toBe('shutting_down');
  });

  it('a waiter whose deadline a new cooldown makes unreachable is answered then, 429 queue_timeout_certain', async () => {
    const g = await start(harness(kind), [{ maxParallelRequests: 1, mockResponse: 'litellm.RateLimitError', mockDelayMs: 300 }], { numRetries: 0, cooldownTimeMs: 60_000 });
    const failing = g.send(0);
    await vi.waitFor(async () => expect((await g.router.queueStatus())[0].inFlight).toBe(1), WAIT);
    const sentAt = Date.now();
    const waiter = g.send(0, { timeout: 30 });
    await untilWaiting(g.router, 1);
    // The call's 429 starts a 60 s cooldown: the waiter's 30 s deadline is out of reach from then on.
    expect((await rejection(failing)).code).toBe('upstream_error');
    const answered = await rejection(waiter);
    expect(answered.code).toBe('queue_timeout_certain');
    expect(Date.now() - sentAt).toBeLessThan(30_000);
    expect(answered.retryAfterSeconds).toBeGreaterThanOrEqual(55);
    expect(answered.retryAfterSeconds).toBeLessThanOrEqual(60);
  });
});

describe.each<StoreKind>(['memory', 'redis'])('every deployment failing (%s store)', (kind) => {
  const failing = (mockResponse: string) => [
    { maxParallelRequests: 1, mockDelayMs: 200, mockResponse },
    { maxParallelRequests: 1, mockDelayMs: 200, mockResponse },
  ];

  it('after failures that are not 429s: waiters and arrivals are answered 503 upstream_unavailable with the last upstream error and Retry-After = the cooldown end', async () => {
    const g = await start(harness(kind), failing('litellm.InternalServerError'), { numRetries: 1, allowedFails: 0, cooldownTimeMs: 30_000 });
    const calls = [g.send(0), g.send(0)];
    await vi.waitFor(async () => expect((await g.router.queueStatus())[0].inFlight).toBe(2), WAIT);
    const waiter = g.send(0);
    await untilWaiting(g.router, 1);
    for (const o of [...calls, waiter]) {
      const e = await rejection(o);
      expect(e).toMatchObject({ code: 'upstream_unavailable', status: 503, type: 'service_unavailable' });
      expect(e.message).toMatch(/InternalServerError|500/);
      expect(e.retryAfterSeconds).toBeGreaterThanOrEqual(25);
      expect(e.retryAfterSeconds).toBeLessThanOrEqual(30);
    }
    expect(await waiting(g.router)).toBe(0);
    // An arrival meanwhile is told the same at once.
    const late = await rejection(g.send(0));
    expect(late.code).toBe('upstream_unavailable');
  });

  it('a 429-only cooldown still waits', async () => {
    const g = await start(harness(kind), failing('litellm.RateLimitError'), { numRetries: 0, cooldownTimeMs: 30_000 });
    const calls = [g.send(0), g.send(0)];
    for (const o of calls) expect((await rejection(o)).code).toBe('upstream_error');
    const patient = g.send(0, { timeout: 120 });
    await untilWaiting(g.router, 1);
    await g.router.close(0);
    expect((await rejection(patient)).code).toBe('shutting_down');
  });
});

describe.each<StoreKind>(['memory', 'redis'])('request.position (%s store)', (kind) => {
  it('reports each waiter when its position or ETA changes, at most every 250 ms, from one timer per group', async () => {
    const g = await start(harness(kind), [{ rpm: 1 }], {});
    // What the event stream does while a client is connected.
    const unwatch = g.router.watchPositions();
    expect((await g.send(0).settled).ok).toBe(true);
    const controller = new AbortController();
    const first = g.send(0, { signal: controller.signal });
    await untilWaiting(g.router, 1);
    const others = [g.send(0), g.send(0)];
    await untilWaiting(g.router, 3);
    type Position = Extract<QueueEvent, { type: 'request.position' }>;
    const positions = () => g.events.filter((e): e is Position => e.type === 'request.position');
    await vi.waitFor(() => expect(new Set(positions().map((e) => e.id)).size).toBe(3), WAIT);
    // One lane, its grant just made: the waiters' turns are 60, 120 and 180 s away.
    const initial = positions().slice(0, 3);
    expect(initial.map((e) => e.position)).toEqual([0, 1, 2]);
    initial.forEach((e, i) => expect(Math.abs((e.etaMs ?? NaN) - 60_000 * (i + 1))).toBeLessThanOrEqual(1_000));

    // The first leaves: the two behind it move up, and are told so.
    const [, second, third] = initial.map((e) => e.id);
    controller.abort();
    expect((await rejection(first)).code).toBe('client_closed');
    await vi.waitFor(() => expect(positions().filter((e) => e.id === third).at(-1)?.position).toBe(1), WAIT);
    expect(positions().filter((e) => e.id === second).at(-1)?.position).toBe(0);

    for (const id of [second, third]) {
      const mine = positions().filter((e) => e.id === id);
      for (let i = 1; i < mine.length; i++) {
        // Coalesced: never two reports of one request within 250 ms, and never one without a change.
        expect(mine[i].at - mine[i - 1].at).toBeGreaterThanOrEqual(240);
        expect(mine[i].position !== mine[i - 1].position || Math.abs((mine[i].etaMs ?? 0) + mine[i].at - (mine[i - 1].etaMs ?? 0) - mine[i - 1].at) >= 1_000).toBe(true);
      }
    }
    unwatch();
    await g.router.close(0);
    for (const o of others) expect((await rejection(o)).code).toBe('shutting_down');
  });
});

describe.each<StoreKind>(['memory', 'redis'])('max_queue_size_by_priority (%s store)', (kind) => {
  it('priorities >= 100 hold at most one place: a worse one is refused, a better one within the class displaces, others are not bounded', async () => {
    const g = await start(harness(kind), [{ rpm: 1 }], { maxQueueSize: 10, maxQueueSizeByPriority: [{ minPriority: 100, maxWaiting: 1 }] });
    expect((await g.send(0).settled).ok).toBe(true);
    const batch = g.send(200);
    await untilWaiting(g.router, 1);
    expect((await rejection(g.send(300))).code).toBe('queue_full');
    // Better, and of the class: it takes the place of the priority-200 waiter.
    const better = g.send(100);
    expect((await rejection(batch)).code).toBe('queue_full');
    await untilWaiting(g.router, 1);
    // Outside the class: bounded only by max_queue_size.
    const interactive = [g.send(5), g.send(6)];
    await untilWaiting(g.router, 3);
    expect((await g.router.queueStatus())[0].waiters.map((w) => w.priority)).toEqual([5, 6, 100]);
    await g.router.close(0);
    for (const o of [better, ...interactive]) expect((await rejection(o)).code).toBe('shutting_down');
  });
});
