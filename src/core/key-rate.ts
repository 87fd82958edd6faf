/**
 * A virtual key's own requests-per-minute: the check the HTTP layer runs for each request, counted in
 * this process (src/server/auth.ts takeKeyRate) or in Redis for every instance at once
 * (src/adapters/redis-key-rate.ts). Here so that both sides meet without knowing each other.
 */
import { TriageError } from '../errors.js';

/** What a rate check needs of a caller: its name (never its key) and its rpm limit, if any. */
export interface RateLimitedCaller {
  readonly name: string;
  readonly rpm?: { readonly limit: number };
}

/** Counts one request against the caller's rpm, or throws 429 key_rate_limited with the real wait. */
export type KeyRateCheck<C extends RateLimitedCaller = RateLimitedCaller> = (caller: C, now: number) => void | Promise<void>;

/** The 429 for a key whose rpm is spent, `waitMs` before the window has room again. */
export function keyRateLimited(limit: number, waitMs: number): TriageError {
  const seconds = Math.max(1, Math.ceil(waitMs / 1000));
  return new TriageError('key_rate_limited', `This key allows ${limit} requests per minute; retry in ${seconds}s.`, { retryAfterSeconds: seconds });
}
