/**
 * Upstream rate-limit headers: parsing (OpenAI/Azure durations, Anthropic RFC 3339 resets), the block
 * they imply, and that a block stops grants until its reset in the in-memory store and in the Redis
 * store, where a second instance sees it too.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createRedisStoreFactory, type RedisStoreFactory } from '../src/adapters/redis-connection.js';
import type { RedisStore } from '../src/adapters/redis-store.js';
import {
  MAX_UPSTREAM_BLOCK_MS,
  parseAnthropicRateLimitHeaders,
  parseOpenAIRateLimitHeaders,
  parseResetDuration,
  upstreamBlock,
} from '../src/core/upstream-limits.js';
import { DeploymentState } from '../src/machines/deployment-state.js';
import { MemoryStore } from '../src/machines/memory-store.js';
import type { Grant, WaiterEntry } from '../src/machines/scheduler-store.js';
import { waitFor } from './support/gateway.js';
import { freshPrefix, sharedRedisUrl } from './support/redis.js';
import { testConfig } from './support/test-config.js';

describe('parseResetDuration (OpenAI x-ratelimit-reset-*)', () => {
  it.each([
    ['1s', 1000],
    ['6m0s', 360_000],
    ['20ms', 20],
    ['1h2m3.5s', 3_723_500],
    ['0.5s', 500],
    ['17ms', 17],
    ['2', 2000],
    [' 3s ', 3000],
  ])('%s is %d ms', (text, ms) => {
    expect(parseResetDuration(text)).toBe(ms);
  });

  it.each(['', 'soon', '1x', '-1s', 's', '1s2', '1.2.3s'])('%j is no duration', (text) => {
    expect(parseResetDuration(text)).toBeUndefined();
  });

  it('absent is undefined', () => {
    expect(parseResetDuration(null)).toBeUndefined();
    expect(parseResetDuration(undefined)).toBeUndefined();
  });
});

describe('parseOpenAIRateLimitHeaders', () => {
  it('reads remaining and reset for requests and tokens', () => {
    const h = new Headers({
      'x-ratelimit-limit-requests': '60',
      'x-ratelimit-remaining-requests': '0',
      'x-ratelimit-reset-requests': '6m0s',
      'x-ratelimit-remaining-tokens': '149984',
      'x-ratelimit-reset-tokens': '6ms',
    });
    expect(parseOpenAIRateLimitHeaders(h)).toEqual([
      { kind: 'requests', remaining: 0, resetMs: 360_000 },
      { kind: 'tokens', remaining: 149_984, resetMs: 6 },
    ]);
  });

  it('no headers, or unreadable remaining counts, give nothing', () => {
    expect(parseOpenAIRateLimitHeaders(new Headers())).toEqual([]);
    expect(parseOpenAIRateLimitHeaders(new Headers({ 'x-ratelimit-remaining-requests': 'lots' }))).toEqual([]);
  });

  it('an unreadable reset keeps the count without a reset', () => {
    expect(parseOpenAIRateLimitHeaders(new Headers({ 'x-ratelimit-remaining-tokens': '0', 'x-ratelimit-reset-tokens': 'later' }))).toEqual([
      { kind: 'tokens', remaining: 0 },
    ]);
  });
});

describe('parseAnthropicRateLimitHeaders', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  it('reads requests, tokens, input and output tokens with RFC 3339 resets relative to now', () => {
    const h = new Headers({
      'anthropic-ratelimit-requests-limit': '50',
      'anthropic-ratelimit-requests-remaining': '0',
      'anthropic-ratelimit-requests-reset': '2026-01-01T00:00:12Z',
      'anthropic-ratelimit-tokens-remaining': '1000',
      'anthropic-ratelimit-tokens-reset': '2026-01-01T00:00:01.500Z',
      'anthropic-ratelimit-input-tokens-remaining': '0',
      'anthropic-ratelimit-input-tokens-reset': '2026-01-01T00:00:30+00:00',
      'anthropic-ratelimit-output-tokens-remaining': '10',
    });
    expect(parseAnthropicRateLimitHeaders(h, now)).toEqual([
      { kind: 'requests', remaining: 0, resetMs: 12_000 },
      { kind: 'tokens', remaining: 1000, resetMs: 1_500 },
      { kind: 'input-tokens', remaining: 0, resetMs: 30_000 },
      { kind: 'output-tokens', remaining: 10 },
    ]);
  });

  it('a reset in the past is 0; a reset that is not RFC 3339 is none', () => {
    const h = new Headers({
      'anthropic-ratelimit-requests-remaining': '0',
      'anthropic-ratelimit-requests-reset': '2025-12-31T23:59:00Z',
      'anthropic-ratelimit-tokens-remaining': '0',
      'anthropic-ratelimit-tokens-reset': 'Thu, 01 Jan 2026 00:00:10 GMT',
    });
    expect(parseAnthropicRateLimitHeaders(h, now)).toEqual([
      { kind: 'requests', remaining: 0, resetMs: 0 },
      { kind: 'tokens', remaining: 0 },
    ]);
  });
});

describe('upstreamBlock', () => {
  it('is the longest reset among exhausted limits', () => {
    expect(
      upstreamBlock([
        { kind: 'requests', remaining: 0, resetMs: 2_000 },
        { kind: 'tokens', remaining: 0, resetMs: 7_250.4 },
        { kind: 'input-tokens', remaining: 5, resetMs: 60_000 },
      ]),
    ).toEqual({ forMs: 7_251, reason: 'tokens' });
  });

  it('nothing when something remains, or an exhausted limit has no (or a past) reset', () => {
    expect(upstreamBlock([{ kind: 'requests', remaining: 3, resetMs: 1_000 }])).toBeUndefined();
    expect(upstreamBlock([{ kind: 'requests', remaining: 0 }])).toBeUndefined();
    expect(upstreamBlock([{ kind: 'requests', remaining: 0, resetMs: 0 }])).toBeUndefined();
    expect(upstreamBlock([])).toBeUndefined();
  });

  it('is capped, so a daily limit cannot park a deployment for hours', () => {
    expect(upstreamBlock([{ kind: 'requests', remaining: 0, resetMs: 86_400_000 }])).toEqual({ forMs: MAX_UPSTREAM_BLOCK_MS, reason: 'requests' });
  });
});

describe('DeploymentState under an upstream block', () => {
  it('takes nothing until the reset, and nextCapacityAt is at least the reset', () => {
    const d = new DeploymentState('d', { rpm: 100 });
    const r = d.reserve(1, 1_000);
    d.release(r, { kind: 'ok', upstreamBlock: { forMs: 5_000, reason: 'requests' } }, 2_000, { cooldownTimeMs: 1_000, allowedFails: 3 });
    expect(d.blockUpstream({ kind: 'ok', upstreamBlock: { forMs: 5_000, reason: 'requests' } }, 2_000)).toBe(7_000);
    expect(d.canTake(1, 6_999)).toBe(false);
    expect(d.nextCapacityAt(1, 3_000)).toBe(7_000);
    expect(d.usage(3_000)).toMatchObject({ upstreamBlockedUntil: 7_000, headroom: 0 });
    expect(d.canTake(1, 7_000)).toBe(true);
    expect(d.usage(7_000).upstreamBlockedUntil).toBeNull();
  });

  it('a shorter block never shortens a longer one', () => {
    const d = new DeploymentState('d', {});
    expect(d.blockUpstream({ kind: 'ok', upstreamBlock: { forMs: 10_000, reason: 'tokens' } }, 0)).toBe(10_000);
    expect(d.blockUpstream({ kind: 'failed', failure: 'rate_limited', upstreamBlock: { forMs: 1_000, reason: 'requests' } }, 1_000)).toBeUndefined();
    expect(d.upstreamBlockedUntil).toBe(10_000);
    expect(d.blockUpstream({ kind: 'cancelled' }, 1_000)).toBeUndefined();
  });
});

const entry = (id: string, now: number): WaiterEntry => ({ id, priority: 0, tenant: '', enqueuedAt: now, deadline: now + 600_000, tokens: 10 });

describe('MemoryStore under an upstream block', () => {
  it('a release with a block holds the next waiter until the reset, and says when to wake', () => {
    const config = testConfig({ m: [{}] });
    const store = new MemoryStore({ model: 'm', deployments: config.modelGroups[0].deployments, maxQueueSize: 100, cooldown: { cooldownTimeMs: 5_000, allowedFails: 3 } });
    const T = 1_000_000;
    store.enqueueNow(entry('a', T), T);
    const [ga] = store.pumpNow(T).grants;
    store.enqueueNow(entry('b', T), T);
    const result = store.releaseNow(ga, { kind: 'ok', tokensUsed: 20, upstreamBlock: { forMs: 3_000, reason: 'requests' } }, T + 100);
    expect(result.upstreamLimited).toEqual({ deploymentId: 'm#0', until: T + 3_100, reason: 'requests' });
    const held = store.pumpNow(T + 100);
    expect(held.grants).toEqual([]);
    expect(held.nextWakeAt).toBe(T + 3_100);
    expect(store.pumpNow(T + 3_099).grants).toEqual([]);
    expect(store.pumpNow(T + 3_100).grants.map((g) => g.requestId)).toEqual(['b']);
  });
});

describe('RedisStore under an upstream block (shared by every instance)', () => {
  const factories: RedisStoreFactory[] = [];
  afterEach(async () => {
    while (factories.length > 0) await factories.pop()!.close();
  });

  async function instance(name: string, prefix: string): Promise<RedisStore> {
    const factory = createRedisStoreFactory({ url: sharedRedisUrl(), prefix }, { instanceId: name, pumpOnEnqueue: false });
    factories.push(factory);
    await factory.whenReady();
    const config = testConfig({ m: [{}] });
    const store = factory.storeFactory('m', config.modelGroups[0].deployments, config) as RedisStore;
    store.setListener({ changed: () => {}, remote: () => {} });
    return store;
  }

  it('a block set through one instance holds grants on another until the reset, and shows in both snapshots', async () => {
    const prefix = freshPrefix('ublock');
    const a = await instance('a', prefix);
    const b = await instance('b', prefix);
    const now = Date.now();
    await a.enqueue(entry('r1', now), now);
    const [g1] = (await a.pump(now)).grants as Grant[];
    expect(g1.requestId).toBe('r1');
    const released = await a.release(g1, { kind: 'ok', tokensUsed: 12, upstreamBlock: { forMs: 60_000, reason: 'tokens' } }, Date.now());
    expect(released.upstreamLimited).toMatchObject({ deploymentId: 'm#0', reason: 'tokens' });
    const until = released.upstreamLimited!.until;
    expect(until).toBeGreaterThan(now + 55_000);

    await b.enqueue(entry('r2', Date.now()), Date.now());
    const pumped = await b.pump(Date.now());
    expect(pumped.grants).toEqual([]);
    // The next capacity is the reset (within the clocks' skew), not "never" and not "now".
    expect(pumped.nextWakeAt).not.toBeNull();
    expect(Math.abs(pumped.nextWakeAt! - until)).toBeLessThan(1_000);
    for (const s of [a, b]) {
      const snap = await s.snapshot(Date.now());
      expect(snap.deployments[0].headroom).toBe(0);
      expect(Math.abs(snap.deployments[0].upstreamBlockedUntil! - until)).toBeLessThan(1_000);
    }
  });

  it('a short block lapses by itself and the waiter is granted; a cancelled release sets none', async () => {
    const prefix = freshPrefix('ublock2');
    const a = await instance('a', prefix);
    const now = Date.now();
    await a.enqueue(entry('r1', now), now);
    const [g1] = (await a.pump(now)).grants as Grant[];
    await a.release(g1, { kind: 'failed', failure: 'client_error', upstreamBlock: { forMs: 1_000, reason: 'requests' } }, Date.now());
    await a.enqueue(entry('r2', Date.now()), Date.now());
    const held = await a.pump(Date.now());
    expect(held.grants).toEqual([]);
    expect(held.nextWakeAt).not.toBeNull();
    // Polled with a deadline: r2 goes once the block lapses, not before.
    const g2 = await waitFor(async () => (await a.pump(Date.now())).grants[0], 'r2 to be granted after the block');
    expect(Date.now()).toBeGreaterThanOrEqual(held.nextWakeAt! - 50);
    expect(g2.requestId).toBe('r2');
    const cancelled = await a.release(g2, { kind: 'cancelled' }, Date.now());
    expect(cancelled.upstreamLimited).toBeUndefined();
    expect((await a.snapshot(Date.now())).deployments[0].upstreamBlockedUntil).toBeNull();
  });
});
