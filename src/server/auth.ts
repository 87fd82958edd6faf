/**
 * Who is calling: the master key, a virtual key from the config, or anyone when no key is configured.
 * Keys are compared in constant time and never leave this module: everything downstream sees only
 * the caller's name.
 */
import { hash, timingSafeEqual } from 'node:crypto';
import type { GeneralSettings, VirtualKeyConfig } from '../core/config-types.js';
import { keyRateLimited, type KeyRateCheck } from '../core/key-rate.js';
import { TriageError } from '../errors.js';
import { RateWindow } from '../machines/rate-window.js';
import { matchWildcard } from '../model-resolver.js';

export interface Caller {
  kind: 'master' | 'key' | 'open';
  /** Safe to log and emit: the key's configured name, never the key. */
  name: string;
  models?: string[];
  /** Best priority this caller may claim. */
  maxPriority?: number;
  /** Per-key rpm window (virtual keys with `rpm`). */
  rpm?: RateWindow;
}

// One-shot hash: no Hash object per request (docs/performance.md, "HTTP layer").
const digest = (s: string): Buffer => hash('sha256', s, 'buffer');

/**
 * The presented key's digest, for one comparison: written into one buffer of this module, not a new
 * Buffer per request: on Node 20 a one-shot hash that returns a Buffer costs several times one that
 * returns a string (a fresh ArrayBuffer behind each; docs/performance.md, "HTTP layer"). The
 * comparison is still timingSafeEqual over the whole digest; the buffer is filled and read within one
 * synchronous call.
 */
const presented = Buffer.alloc(32);
function presentedDigest(s: string): Buffer {
  presented.write(hash('sha256', s, 'binary'), 'binary');
  return presented;
}

/** Reads a key from `Authorization: Bearer …`, `x-api-key`, or (browsers, WebSockets) a `token` query value. */
export function presentedKey(headers: Record<string, string | string[] | undefined>, queryToken?: unknown): string | undefined {
  const auth = headers.authorization;
  if (typeof auth === 'string') {
    const m = /^Bearer\s+(.+)$/i.exec(auth.trim());
    if (m) return m[1].trim();
  }
  const apiKey = headers['x-api-key'];
  if (typeof apiKey === 'string' && apiKey !== '') return apiKey.trim();
  if (typeof queryToken === 'string' && queryToken !== '') return queryToken;
  return undefined;
}

export class KeyRing {
  private readonly entries: Array<{ digest: Buffer; caller: Caller }> = [];
  readonly open: boolean;

  constructor(general: GeneralSettings) {
    if (general.masterKey !== undefined) {
      this.entries.push({ digest: digest(general.masterKey), caller: { kind: 'master', name: 'master' } });
    }
    for (const k of general.keys) this.entries.push({ digest: digest(k.key), caller: callerOf(k) });
    this.open = this.entries.length === 0;
  }

  /** The caller for a presented key; throws unauthorized (401) when keys are configured and it matches none. */
  authenticate(key: string | undefined): Caller {
    if (this.open) return { kind: 'open', name: 'anonymous' };
    if (key === undefined) throw new TriageError('unauthorized', 'Missing API key: send Authorization: Bearer <key> or x-api-key.');
    const d = presentedDigest(key);
    let found: Caller | undefined;
    // Compare against every entry so timing does not tell which key was close.
    for (const e of this.entries) if (timingSafeEqual(e.digest, d)) found = e.caller;
    if (found === undefined) throw new TriageError('unauthorized', 'Invalid API key.');
    return found;
  }
}

function callerOf(k: VirtualKeyConfig): Caller {
  const caller: Caller = { kind: 'key', name: k.name };
  if (k.models !== undefined) caller.models = k.models;
  if (k.maxPriority !== undefined) caller.maxPriority = k.maxPriority;
  if (k.rpm !== undefined) caller.rpm = new RateWindow(k.rpm);
  return caller;
}

/** Refuses a model the caller's key does not allow (403). */
export function checkModelAllowed(caller: Caller, model: string): void {
  // A key's models may list a wildcard pattern (`openai/*`), as model_list's model_name may.
  if (caller.models !== undefined && !caller.models.includes(model) && !caller.models.some((m) => m.includes('*') && matchWildcard(m, model) !== undefined)) {
    throw new TriageError('model_not_allowed', `This key may not use the model '${model.slice(0, 200)}'.`, { param: 'model' });
  }
}

/**
 * A key may not claim a better priority than its max_priority: a better one is clamped to it (not
 * refused), so clients written for an open gateway keep working; the response header shows the
 * priority actually used.
 */
export function clampPriority(caller: Caller, priority: number): { priority: number; clamped: boolean } {
  if (caller.maxPriority !== undefined && priority < caller.maxPriority) return { priority: caller.maxPriority, clamped: true };
  return { priority, clamped: false };
}

/** The key's rpm counted in this process (the caller's own RateWindow). */
export const takeKeyRate: KeyRateCheck<Caller> = (caller, now) => {
  const window = caller.rpm;
  if (window === undefined) return;
  if (window.used(now) + 1 > window.limit) throw keyRateLimited(window.limit, window.nextCapacityAt(1, now) - now);
  window.add(1, now);
};
