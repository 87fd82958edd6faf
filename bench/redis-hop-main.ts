/**
 * A benchmark child for scenario 2's Redis baseline: the hops a grant makes between instances, with
 * no Triage code. `fire` ends a "call" on the next turn (as instance-main.ts's `finishOne` does) and
 * sends one command to Redis: a PUBLISH that the other child hears on its subscriber connection
 * (a grant for the other instance), or a command whose reply comes back here (a grant for this one).
 * Either way the moment it is heard is pushed to the runner as `started`, like a dispatch.
 */
import { Redis } from 'ioredis';
import { pushEvent, serveCommands } from './child-rpc.js';
import { hrNow } from './hr-clock.js';

let client: Redis | undefined;
let subscriber: Redis | undefined;
let endedAt: number | null = null;

function need(): Redis {
  if (client === undefined) throw new Error('init first');
  return client;
}

serveCommands({
  async init(a) {
    client = new Redis(String(a.url), { maxRetriesPerRequest: 0 });
    subscriber = new Redis(String(a.url), { maxRetriesPerRequest: 0 });
    subscriber.on('message', () => pushEvent('started', { at: hrNow() }));
    await subscriber.subscribe(String(a.listenOn));
    await client.ping();
    return null;
  },
  /** `to`: the channel the other child listens on, or null for a reply back to this one. */
  fire(a) {
    const redis = need();
    const to = a.to === null || a.to === undefined ? null : String(a.to);
    endedAt = null;
    setImmediate(() => {
      endedAt = hrNow();
      if (to !== null) void redis.publish(to, 'g');
      else void redis.publish('bench-hop-nobody', 'g').then(() => pushEvent('started', { at: hrNow() }));
    });
    return true;
  },
  takeEnded: () => {
    const at = endedAt;
    endedAt = null;
    return at;
  },
  close() {
    client?.disconnect();
    subscriber?.disconnect();
  },
});
