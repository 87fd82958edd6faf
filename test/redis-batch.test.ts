/**
 * Operations batched per turn (includes/batch.lua): the enqueues, releases and pumps one store issues in one
 * turn of the event loop reach Redis as one FCALL, each with its own answer, in issue order; another
 * operation issued after them in the same turn runs after them. Against a private redis-server, so
 * INFO commandstats counts only this test's calls.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { createRedisStoreFactory, type RedisStoreFactory } from '../src/adapters/redis-connection.js';
import { batchArguments, batchReplies } from '../src/adapters/redis-library.js';
import type { RedisStore } from '../src/adapters/redis-store.js';
import type { WaiterEntry } from '../src/machines/scheduler-store.js';
import { testConfig } from './support/test-config.js';
import { freshPrefix, startRedisServer, type RedisServer } from './support/redis.js';

let server: RedisServer;
let admin: Redis;

beforeAll(async () => {
  server = await startRedisServer();
  admin = new Redis(server.url, { maxRetriesPerRequest: 0 });
}, 30_000);

afterAll(async () => {
  admin?.disconnect();
  await server?.stop();
});

async function fcallCount(): Promise<number> {
  const stats = await admin.info('commandstats');
  const m = /cmdstat_fcall:calls=(\d+)/.exec(stats);
  return m ? Number(m[1]) : 0;
}

async function openStore(maxParallelRequests: number): Promise<{ factory: RedisStoreFactory; store: RedisStore }> {
  const config = testConfig({ m: [{ id: 'd', maxParallelRequests }] });
  const factory = createRedisStoreFactory({ url: server.url, prefix: freshPrefix('batch') }, { instanceId: 'one' });
  await factory.whenReady();
  const group = config.modelGroups[0];
  const store = factory.storeFactory(group.name, group.deployments, config) as RedisStore;
  store.setListener({ changed: () => {}, remote: () => {} });
  return { factory, store };
}

const entry = (id: string, now: number): WaiterEntry => ({ id, priority: 0, tenant: '', enqueuedAt: now, deadline: now + 60_000, tokens: 1 });

describe('operations batched per turn', () => {
  it('enqueues of one turn go as one call, each answered as if alone: granted while capacity lasts, then queued in order', async () => {
    const { factory, store } = await openStore(2);
    try {
      // The library is loaded and the lease taken before counting.
      await store.pump(Date.now());
      await admin.config('RESETSTAT');
      const now = Date.now();
      const results = await Promise.all(['a', 'b', 'c', 'd', 'e'].map((id) => store.enqueue(entry(id, now), now)));
      expect(await fcallCount()).toBe(1);
      const granted = results.map((r) => (r.accepted ? (r.pumped?.grants.map((g) => g.requestId) ?? []) : null));
      expect(granted).toEqual([['a'], ['b'], [], [], []]);
      expect(results.map((r) => (r.accepted ? r.position : null))).toEqual([0, 0, 0, 1, 2]);
    } finally {
      await factory.close();
    }
  });

  it('an operation issued after batched ones in the same turn runs after them: a remove finds the waiter its enqueue just queued', async () => {
    const { factory, store } = await openStore(1);
    try {
      const now = Date.now();
      const first = await store.enqueue(entry('busy', now), now);
      expect(first.accepted && first.pumped?.grants.map((g) => g.requestId)).toEqual(['busy']);
      const enqueued = store.enqueue(entry('w', now), now);
      const removed = store.remove('w', now);
      expect((await enqueued).accepted).toBe(true);
      expect(await removed).toBe(true);
      expect((await store.snapshot(now)).waiting).toBe(0);
    } finally {
      await factory.close();
    }
  });

  it('builds the arguments of a batch and checks its reply layout', () => {
    expect(batchArguments(['1', 'k', 'x'], [{ name: 'release', extra: ['g1', 'ok'] }, { name: 'pump', extra: [256] }])).toEqual(['1', 'k', 'x', 'release', 2, 'g1', 'ok', 'pump', 1, 256]);
    expect(batchReplies([['r1'], ['r2']], 2)).toEqual([['r1'], ['r2']]);
    expect(() => batchReplies([['r1']], 2)).toThrow(/a batch of 2 Redis operations got a reply of the wrong layout/);
    expect(() => batchReplies('OK', 1)).toThrow(/wrong layout/);
  });
});
