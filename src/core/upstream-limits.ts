/**
 * The limits a provider says it enforces, read from its rate-limit headers: OpenAI and Azure send
 * `x-ratelimit-remaining-{requests,tokens}` with `x-ratelimit-reset-{requests,tokens}` as durations
 * (`1s`, `6m0s`, `20ms`, `1h2m3.5s`); Anthropic sends `anthropic-ratelimit-{requests,tokens,
 * input-tokens,output-tokens}-{remaining,reset}` with resets as RFC 3339 times. A deployment's key is
 * often shared with other programs, so these, not Triage's own counts, say when the next call would be
 * refused. Pure functions; the stores only see the resulting block (a duration and its reason).
 */

/** One limit's state as the provider reported it; `resetMs` is relative to when the answer arrived. */
export interface UpstreamLimit {
  /** 'requests', 'tokens', 'input-tokens' or 'output-tokens'. */
  kind: string;
  remaining: number;
  resetMs?: number;
}

/** The deployment grants nothing for `forMs` from the release: the provider said a limit is used up. */
export interface UpstreamBlock {
  forMs: number;
  /** The limit that is used up ('requests', 'tokens', ...). */
  reason: string;
}

/**
 * Longest block a provider's headers can impose: as with Retry-After (MAX_COOLDOWN_MS), a misbehaving
 * or daily-limited upstream cannot park a deployment for hours; after this one call tries again and
 * its answer's headers block it again if the limit still holds.
 */
export const MAX_UPSTREAM_BLOCK_MS = 300_000;

const UNIT_MS: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001, µs: 0.001, ns: 0.000001 };

/**
 * A Go-style duration as OpenAI writes resets (`1s`, `6m0s`, `20ms`, `1h2m3.5s`, `0.5s`) in ms; a bare
 * number is seconds. undefined for anything else (never a guess).
 */
export function parseResetDuration(text: string | null | undefined): number | undefined {
  const value = text?.trim();
  if (value === undefined || value === '') return undefined;
  if (/^\d+(\.\d+)?$/.test(value)) return Number(value) * 1000;
  const part = /(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)/y;
  let ms = 0;
  let at = 0;
  while (at < value.length) {
    part.lastIndex = at;
    const m = part.exec(value);
    if (m === null) return undefined;
    ms += Number(m[1]) * UNIT_MS[m[2]];
    at = part.lastIndex;
  }
  return ms;
}

function remainingOf(text: string | null): number | undefined {
  const value = text?.trim();
  return value !== undefined && /^\d+$/.test(value) ? Number(value) : undefined;
}

/** OpenAI / Azure headers; an empty list when the answer carried none. */
export function parseOpenAIRateLimitHeaders(headers: Headers): UpstreamLimit[] {
  const limits: UpstreamLimit[] = [];
  for (const kind of ['requests', 'tokens']) {
    const remaining = remainingOf(headers.get(`x-ratelimit-remaining-${kind}`));
    if (remaining === undefined) continue;
    const resetMs = parseResetDuration(headers.get(`x-ratelimit-reset-${kind}`));
    limits.push(resetMs === undefined ? { kind, remaining } : { kind, remaining, resetMs });
  }
  return limits;
}

/** Anthropic headers (resets are absolute RFC 3339 times, made relative to `now`, epoch ms). */
export function parseAnthropicRateLimitHeaders(headers: Headers, now = Date.now()): UpstreamLimit[] {
  const limits: UpstreamLimit[] = [];
  for (const kind of ['requests', 'tokens', 'input-tokens', 'output-tokens']) {
    const remaining = remainingOf(headers.get(`anthropic-ratelimit-${kind}-remaining`));
    if (remaining === undefined) continue;
    const reset = headers.get(`anthropic-ratelimit-${kind}-reset`)?.trim();
    // RFC 3339 starts with a four-digit year; Date.parse alone accepts much else.
    const at = reset !== undefined && /^\d{4}-\d\d-\d\dT/.test(reset) ? Date.parse(reset) : NaN;
    limits.push(Number.isNaN(at) ? { kind, remaining } : { kind, remaining, resetMs: Math.max(0, at - now) });
  }
  return limits;
}

/**
 * The block the limits imply: the longest reset among limits with nothing remaining, capped at
 * MAX_UPSTREAM_BLOCK_MS. undefined when something remains everywhere, or an exhausted limit gave no
 * reset time (the 429 that follows cools the deployment down instead).
 */
export function upstreamBlock(limits: readonly UpstreamLimit[]): UpstreamBlock | undefined {
  let block: UpstreamBlock | undefined;
  for (const l of limits) {
    if (l.remaining > 0 || l.resetMs === undefined || l.resetMs <= 0) continue;
    if (block === undefined || l.resetMs > block.forMs) block = { forMs: l.resetMs, reason: l.kind };
  }
  if (block !== undefined) block.forMs = Math.min(Math.ceil(block.forMs), MAX_UPSTREAM_BLOCK_MS);
  return block;
}
