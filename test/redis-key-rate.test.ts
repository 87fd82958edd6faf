/**
 * A virtual key's rpm counted in Redis (src/adapters/redis-key-rate.ts, key_rate.lua) against the
 * suite's real redis-server, a fresh key prefix per test. Across gateway processes: multi-instance.test.ts.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { keyRateKey, redisKeyRate } from '../src/adapters/redis-key-rate.js';
import { TriageError } from '../src/errors.js';
import { RateWindow } from '../src/machines/rate-window.js';
import type { Caller } from '../src/server/auth.js';
import { freePort, freshPrefix, sharedRedisUrl } from './support/redis.js';

const clients: Redis[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.disconnect();
});

function client(url = sharedRedisUrl(), options: RedisOptions = {}): Redis {
  const c = new Redis(url, { maxRetriesPerRequest: 0, enableOfflineQueue: false, ...options });
  clients.push(c);
  return c;
}

const keyed = (name: string, rpm: number): Caller => ({ kind: 'key', name, rpm: new RateWindow(rpm) });

async function refusal(p: void | Promise<void>): Promise<TriageError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof TriageError) return e;
    throw e;
  }
  throw new Error('the request was counted, not refused');
}

describe('a key rpm counted in Redis', () => {
  it('counts rpm requests from two connections as one window, then refuses with the wait until the oldest leaves', async () => {
    const prefix = freshPrefix('keyrpm');
    const [a, b] = [client(), client()];
    await Promise.all([a, b].map((c) => new Promise((r) => c.once('ready', r))));
    const onA = redisKeyRate(a, prefix);
    const onB = redisKeyRate(b, prefix);
    const team = keyed('team-a', 3);
    await onA(team, 0);
    await onB(team, 0);
    await onA(team, 0);
    for (const check of [onB, onA]) {
      const e = await refusal(check(team, 0));
      expect(e).toMatchObject({ code: 'key_rate_limited', status: 429 });
      expect(e.retryAfterSeconds).toBeGreaterThanOrEqual(59);
      expect(e.retryAfterSeconds).toBeLessThanOrEqual(60);
      expect(e.message).toBe(`This key allows 3 requests per minute; retry in ${e.retryAfterSeconds}s.`);
    }
    // Refusals are not counted; the window holds the three requests, and expires with them.
    expect(await a.zcard(keyRateKey(prefix, 'team-a'))).toBe(3);
    const ttl = await a.pttl(keyRateKey(prefix, 'team-a'));
    expect(ttl).toBeGreaterThan(55_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
    // Another key has its own window; a caller without rpm is not sent to Redis at all.
    await onB(keyed('team-b', 1), 0);
    expect(await a.exists(keyRateKey(prefix, 'master'))).toBe(0);
    await onA({ name: 'master' }, 0);
    expect(await a.exists(keyRateKey(prefix, 'master'))).toBe(0);
  });

  it('refuses 503 store_unavailable when Redis does not answer, instead of letting the request through uncounted', async () => {
    // Nothing listens on this port: the client never connects and has no offline queue.
    const down = client(`redis://127.0.0.1:${await freePort()}`, { lazyConnect: true, retryStrategy: () => null });
    const e = await refusal(redisKeyRate(down, freshPrefix('keyrpm'))(keyed('team-a', 3), 0));
    expect(e).toMatchObject({ code: 'store_unavailable', status: 503 });
  });
});
