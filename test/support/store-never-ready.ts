/**
 * The check of a Redis configuration that must never connect (a certificate from another CA, no TLS, a
 * wrong password): the store never becomes ready, and a gateway on it answers a chat completion
 * 503 store_unavailable with a Retry-After.
 */
import { expect } from 'vitest';
import { createRedisStoreFactory, type RedisStoreFactoryOptions } from '../../src/adapters/redis-connection.js';
import type { TriageConfig } from '../../src/core/config-types.js';
import { startGateway } from './gateway.js';

export async function expectStoreNeverReady(config: TriageConfig, model: string, options: RedisStoreFactoryOptions = {}): Promise<void> {
  const redis = createRedisStoreFactory(config.router.redis!, { maxReconnectDelayMs: 200, ...options });
  try {
    await expect(redis.whenReady(1_500)).rejects.toThrow(/Redis not reachable/);
    const gw = await startGateway(config, { store: redis });
    try {
      const res = await fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
      });
      expect(res.status).toBe(503);
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('store_unavailable');
    } finally {
      await gw.stop();
    }
  } finally {
    redis.abandon();
  }
}
