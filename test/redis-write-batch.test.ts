import { describe, expect, it } from 'vitest';
import type { RedisClient } from '../src/adapters/redis-client.js';
import { WriteBatch } from '../src/adapters/redis-write-batch.js';

/** A socket that records cork/uncork, as ioredis's `stream` of a single-node client. */
function fakeStream() {
  const calls: string[] = [];
  return { calls, cork: () => calls.push('cork'), uncork: () => calls.push('uncork') };
}

const nextTick = () => new Promise<void>((resolve) => process.nextTick(resolve));

describe('WriteBatch', () => {
  it('holds the socket once per turn and sends at the end of the turn', async () => {
    const stream = fakeStream();
    const batch = new WriteBatch({ stream } as unknown as RedisClient);
    batch.hold();
    batch.hold();
    batch.hold();
    expect(stream.calls).toEqual(['cork']);
    await nextTick();
    expect(stream.calls).toEqual(['cork', 'uncork']);
    batch.hold();
    await nextTick();
    expect(stream.calls).toEqual(['cork', 'uncork', 'cork', 'uncork']);
  });

  it('a socket replaced mid-turn (reconnect): the old one is sent, the new one held until the end of the turn', async () => {
    const client = { stream: fakeStream() };
    const first = client.stream;
    const batch = new WriteBatch(client as unknown as RedisClient);
    batch.hold();
    client.stream = fakeStream();
    batch.hold();
    expect(first.calls).toEqual(['cork', 'uncork']);
    expect(client.stream.calls).toEqual(['cork']);
    await nextTick();
    expect(client.stream.calls).toEqual(['cork', 'uncork']);
  });

  it('does nothing for a client without a socket of its own (a Cluster)', async () => {
    const batch = new WriteBatch({} as unknown as RedisClient);
    expect(() => batch.hold()).not.toThrow();
    await nextTick();
  });
});
