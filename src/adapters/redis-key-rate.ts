/**
 * A virtual key's rpm counted once for every instance sharing Redis: one script call (key_rate.lua)
 * per request of a key that has an rpm; keys without one cost nothing. Like the stores it fails
 * closed: without an answer from Redis the request is refused 503 store_unavailable, not let through
 * uncounted.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { StoreUnavailableError } from '../errors.js';
import type { RedisClient as Redis } from './redis-client.js';
import { WINDOW_MS } from '../machines/rate-window.js';
import { newRequestId } from '../machines/request-id.js';
import { keyRateLimited, type KeyRateCheck } from '../core/key-rate.js';
import { scriptDirectory } from './redis-library.js';

const COMMAND = 'triage_key_rate';

type KeyRateScript = (key: string, limit: number, windowMs: number, member: string) => Promise<[number, number]>;

/**
 * The Redis key of a virtual key's window (its configured name, never the key itself). The name is its
 * own hash tag: on a cluster each key's window lands in a slot of its own, apart from the groups.
 */
export function keyRateKey(prefix: string, name: string): string {
  return `${prefix}:keyrpm:{${name}}`;
}

export function redisKeyRate(redis: Redis, prefix: string): KeyRateCheck {
  const commands = redis as unknown as Record<string, KeyRateScript | undefined>;
  if (commands[COMMAND] === undefined) {
    redis.defineCommand(COMMAND, { numberOfKeys: 1, lua: readFileSync(join(scriptDirectory(), 'key_rate.lua'), 'utf8') });
  }
  const script = commands[COMMAND]!.bind(redis);
  return async (caller) => {
    const limit = caller.rpm?.limit;
    if (limit === undefined) return;
    let reply: [number, number];
    try {
      reply = await script(keyRateKey(prefix, caller.name), limit, WINDOW_MS, newRequestId());
    } catch (e) {
      throw new StoreUnavailableError("The shared store did not count this key's request, so it was not queued; retry after the Retry-After interval.");
    }
    if (Number(reply[0]) !== 1) throw keyRateLimited(limit, Number(reply[1]));
  };
}
