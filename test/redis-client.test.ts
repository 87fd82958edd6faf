/** How the store's client options follow the settings (src/adapters/redis-client.ts), without a server. */
import { describe, expect, it } from 'vitest';
import { clientKind, tlsOptions } from '../src/adapters/redis-client.js';

describe('Redis client options', () => {
  it('TLS is on for a rediss:// URL or redis_ssl: true, with the CA file when given, else Node default CAs', () => {
    expect(tlsOptions({ prefix: 't', url: 'redis://h:6379' })).toBeUndefined();
    expect(tlsOptions({ prefix: 't', url: 'rediss://h:6380' })).toEqual({});
    expect(tlsOptions({ prefix: 't', host: 'h', ssl: true })).toEqual({});
    expect(tlsOptions({ prefix: 't', host: 'h', ssl: false })).toBeUndefined();
    const withCa = tlsOptions({ prefix: 't', host: 'h', ssl: true, sslCaCerts: process.execPath });
    expect(Buffer.isBuffer(withCa?.ca)).toBe(true);
  });

  it('start-up nodes make it a cluster client; anything else one node', () => {
    expect(clientKind({ prefix: 't', clusterNodes: [{ host: 'a', port: 1 }] })).toBe('cluster');
    expect(clientKind({ prefix: 't', url: 'redis://h' })).toBe('node');
    expect(clientKind({ prefix: 't', clusterNodes: [] })).toBe('node');
  });
});
