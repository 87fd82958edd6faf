/**
 * One deployment's live usage against its limits (rpm, tpm, max_parallel_requests) and its cooldown.
 * Plain data and functions: the in-memory store calls them; the Redis store does the same in Lua.
 */
import type { DeploymentLimits } from '../core/config-types.js';
import type { CapacityView } from './grant-estimate.js';
import { RateWindow, WINDOW_MS, type WindowRecord } from './rate-window.js';
import type { DeploymentUsage, ReleaseOutcome } from './scheduler-store.js';

/** Longest cooldown an upstream's Retry-After can impose (a misbehaving upstream cannot park a deployment for hours). */
export const MAX_COOLDOWN_MS = 300_000;

export interface CooldownPolicy {
  cooldownTimeMs: number;
  /** Failures tolerated within a minute before cooldown; a 429 cools down at once. */
  allowedFails: number;
}

export interface Reservation {
  deploymentId: string;
  tokens: number;
  tpmRecord?: WindowRecord;
}

/**
 * Requests a deployment could take right now, from its usage; null when nothing bounds it. A full
 * tpm window bounds it to 0; otherwise tpm does not, since how many requests fit depends on their
 * tokens. Shared by the in-memory and the Redis store's snapshots.
 */
export function deploymentHeadroom(u: DeploymentUsage): number | null {
  if (u.coolingDownUntil !== null || u.upstreamBlockedUntil !== null) return 0;
  if (u.tpm !== null && u.tpmUsed >= u.tpm) return 0;
  let headroom: number | null = null;
  if (u.maxParallelRequests !== null) headroom = Math.max(0, u.maxParallelRequests - u.inFlight);
  if (u.rpm !== null) headroom = Math.min(headroom ?? Infinity, Math.max(0, u.rpm - u.rpmUsed));
  return headroom;
}

export class DeploymentState {
  inFlight = 0;
  /**
   * The tpm reservations of the calls in flight, summed: each is reconciled with the real usage when its
   * call ends (often far less: max_tokens is a budget), so the certain bound of nextCapacityAt counts
   * them as possibly nothing.
   */
  inFlightTokens = 0;
  coolingDownUntil: number | null = null;
  /** Until when the provider said a limit is used up (its rate-limit headers); nothing is granted before. */
  upstreamBlockedUntil: number | null = null;
  /** The failure that started (or last extended) the cooldown. */
  coolingReason: string | null = null;
  /** The last upstream error seen here (for 503 upstream_unavailable). */
  lastFailure: string | undefined;
  private readonly rpm?: RateWindow;
  private readonly tpm?: RateWindow;
  private failures: number[] = [];

  constructor(
    readonly id: string,
    readonly limits: DeploymentLimits,
  ) {
    if (limits.rpm !== undefined) this.rpm = new RateWindow(limits.rpm);
    if (limits.tpm !== undefined) this.tpm = new RateWindow(limits.tpm);
  }

  coolingDown(now: number): boolean {
    return this.coolingDownUntil !== null && now < this.coolingDownUntil;
  }

  /** Ends a lapsed cooldown; returns true when it just ended. */
  endCooldownIfDue(now: number): boolean {
    if (this.coolingDownUntil !== null && now >= this.coolingDownUntil) {
      this.coolingDownUntil = null;
      return true;
    }
    return false;
  }

  upstreamBlocked(now: number): boolean {
    return this.upstreamBlockedUntil !== null && now < this.upstreamBlockedUntil;
  }

  /**
   * Applies a release's upstream block (the provider's headers said 0 remaining until a reset); returns
   * the new end when it moved later, undefined when the outcome had none or an existing block lasts longer.
   */
  blockUpstream(outcome: ReleaseOutcome, now: number): number | undefined {
    const block = outcome.kind === 'cancelled' ? undefined : outcome.upstreamBlock;
    if (block === undefined || block.forMs <= 0) return undefined;
    const until = now + block.forMs;
    if (this.upstreamBlocked(now) && this.upstreamBlockedUntil! >= until) return undefined;
    this.upstreamBlockedUntil = until;
    return until;
  }

  canTake(tokens: number, now: number): boolean {
    if (this.coolingDown(now)) return false;
    if (this.upstreamBlocked(now)) return false;
    const max = this.limits.maxParallelRequests;
    if (max !== undefined && this.inFlight >= max) return false;
    if (this.rpm && !this.rpm.fits(1, now)) return false;
    if (this.tpm && !this.tpm.fits(tokens, now)) return false;
    return true;
  }

  /** Fraction of the tightest limit in use: the router sends work to the least loaded deployment. */
  load(now: number): number {
    let load = 0;
    const max = this.limits.maxParallelRequests;
    if (max !== undefined) load = Math.max(load, this.inFlight / max);
    if (this.rpm) load = Math.max(load, this.rpm.used(now) / this.rpm.limit);
    if (this.tpm) load = Math.max(load, this.tpm.used(now) / this.tpm.limit);
    return load;
  }

  /**
   * When this deployment could next take `tokens`, ignoring in-flight calls (their end is an event,
   * not a time). Infinity when only a release can free it, unless `ignoreInFlight` (the grant
   * estimate's certain bound, which a call ending at any moment cannot move: it also counts the tpm
   * reserved by calls in flight as possibly unused, since each is reconciled with its real usage).
   */
  nextCapacityAt(tokens: number, now: number, ignoreInFlight = false): number {
    let at = now;
    if (this.coolingDown(now)) at = Math.max(at, this.coolingDownUntil!);
    if (this.upstreamBlocked(now)) at = Math.max(at, this.upstreamBlockedUntil!);
    const max = this.limits.maxParallelRequests;
    if (!ignoreInFlight && max !== undefined && this.inFlight >= max) return Infinity;
    if (this.rpm) at = Math.max(at, this.rpm.nextCapacityAt(1, now));
    // The certain bound: the calls in flight might end having used none of what they reserved.
    if (this.tpm) at = Math.max(at, this.tpm.nextCapacityAt(ignoreInFlight ? tokens - this.inFlightTokens : tokens, now));
    return at;
  }

  /** This deployment for the grant estimate (grant-estimate.ts): when it is ready, and its rpm lanes. */
  capacityView(now: number): CapacityView {
    const readyAt = this.nextCapacityAt(1, now, true);
    const rpm = this.rpm;
    if (rpm === undefined) return { readyAt, rpm: null };
    return { readyAt, rpm: { limit: rpm.limit, free: Math.max(0, rpm.limit - rpm.used(now)), reopenedBy: (t) => rpm.leavingBy(t, now) } };
  }

  reserve(tokens: number, now: number): Reservation {
    this.inFlight += 1;
    this.rpm?.add(1, now);
    const tpmRecord = this.tpm?.add(tokens, now);
    if (tpmRecord) this.inFlightTokens += tokens;
    return tpmRecord ? { deploymentId: this.id, tokens, tpmRecord } : { deploymentId: this.id, tokens };
  }

  /** Ends a reservation: reconciles tokens and, for failures, applies the cooldown policy. */
  release(reservation: Reservation, outcome: ReleaseOutcome, now: number, policy: CooldownPolicy): { until: number; reason: string } | undefined {
    this.inFlight = Math.max(0, this.inFlight - 1);
    if (reservation.tpmRecord) this.inFlightTokens = Math.max(0, this.inFlightTokens - reservation.tokens);
    if (outcome.kind === 'ok' && outcome.tokensUsed !== undefined && reservation.tpmRecord && this.tpm) {
      this.tpm.adjust(reservation.tpmRecord, outcome.tokensUsed, now);
    }
    if (outcome.kind !== 'failed' || outcome.failure === 'client_error') return undefined;
    if (outcome.message !== undefined) this.lastFailure = outcome.message;
    this.failures = this.failures.filter((t) => t > now - WINDOW_MS);
    this.failures.push(now);
    // A 429 says so itself; a refused key will not fix itself within a minute either.
    const immediate = outcome.failure === 'rate_limited' || outcome.failure === 'auth_failed';
    if (!immediate && this.failures.length <= policy.allowedFails) return undefined;
    // An upstream's Retry-After is honoured, but never for longer than MAX_COOLDOWN_MS.
    const duration = Math.min(outcome.retryAfterMs ?? policy.cooldownTimeMs, Math.max(MAX_COOLDOWN_MS, policy.cooldownTimeMs));
    if (duration <= 0) return undefined;
    this.coolingDownUntil = Math.max(this.coolingDownUntil ?? 0, now + duration);
    this.coolingReason = outcome.failure;
    this.failures = [];
    return { until: this.coolingDownUntil, reason: outcome.failure };
  }

  usage(now: number): DeploymentUsage {
    const usage: DeploymentUsage = {
      id: this.id,
      inFlight: this.inFlight,
      maxParallelRequests: this.limits.maxParallelRequests ?? null,
      rpmUsed: this.rpm ? this.rpm.used(now) : 0,
      rpm: this.limits.rpm ?? null,
      tpmUsed: this.tpm ? this.tpm.used(now) : 0,
      tpm: this.limits.tpm ?? null,
      coolingDownUntil: this.coolingDown(now) ? this.coolingDownUntil : null,
      upstreamBlockedUntil: this.upstreamBlocked(now) ? this.upstreamBlockedUntil : null,
      headroom: null,
    };
    usage.headroom = deploymentHeadroom(usage);
    return usage;
  }

  /** Grants per second this deployment sustains at its limits (for Retry-After); Infinity if unlimited. */
  sustainedRate(): number {
    let rate = Infinity;
    if (this.limits.rpm !== undefined) rate = Math.min(rate, this.limits.rpm / 60);
    return rate;
  }
}
