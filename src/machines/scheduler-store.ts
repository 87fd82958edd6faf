/**
 * The scheduler actor's memory: the waiting queue and each deployment's usage. Two stores implement
 * it: in memory (one process) and Redis (many instances, one queue); the scheduler machine cannot tell
 * them apart. Every method is one atomic state change.
 */
import type { DeploymentConfig, TriageConfig } from '../core/config-types.js';
import type { UpstreamFailureKind } from '../core/upstream.js';
import type { UpstreamBlock } from '../core/upstream-limits.js';

export interface WaiterEntry {
  /** Request id, unique across instances. */
  id: string;
  priority: number;
  /** Round-robin group at equal priority: the key's name, '' when anonymous. */
  tenant: string;
  enqueuedAt: number;
  /** Absolute queue-wait deadline (clock ms). */
  deadline: number;
  /** tpm reservation estimate. */
  tokens: number;
  /** Arrival sequence; set by the store on first enqueue and kept when a retry re-queues the request. */
  seq?: number;
  round?: number;
}

export interface Grant {
  grantId: string;
  requestId: string;
  deploymentId: string;
  tokens: number;
  grantedAt: number;
  waitedMs: number;
  /** The waiter's priority and arrival sequence (for order checks and events). */
  priority: number;
  seq: number;
}

export type EnqueueResult =
  | {
      accepted: true;
      seq: number;
      position: number;
      priority: number;
      round: number;
      /** Estimated grant time (clock ms; grant-estimate.ts), null when unknown; absent when the store does not estimate. */
      etaAt?: number | null;
      /** Set when the store pumped in the same atomic step as the enqueue (saves a round trip). */
      pumped?: PumpResult;
    }
  /**
   * `deadline_unreachable`: the request's deadline certainly passes before it could be granted
   * (grant-estimate.ts); `upstream_unavailable`: every deployment cools down after failures that are
   * not 429s (`message`: the last upstream error).
   */
  | { accepted: false; reason: 'queue_full' | 'deadline_unreachable' | 'upstream_unavailable'; retryAfterMs: number; message?: string };

/** A waiter a better arrival took the place of in a full queue; already removed from the queue. */
export interface Displaced {
  id: string;
  /** Seconds until a newcomer of its priority could be granted (its 429's Retry-After). */
  retryAfterSeconds: number;
  /** Not displaced: its deadline became certainly unreachable (429 queue_timeout_certain). */
  unreachable?: boolean;
  /**
   * Not displaced: every deployment is cooling down after failures that are not 429s (503
   * upstream_unavailable); the last upstream error.
   */
  unavailable?: string;
}

export interface PumpResult {
  grants: Grant[];
  /** Waiters whose deadline passed; already removed from the queue. */
  expired: string[];
  /**
   * Waiters displaced from a full queue by better arrivals, or (`unreachable`) whose deadline a new
   * cooldown made certainly unreachable; already removed from the queue (absent when none).
   */
  displaced?: Displaced[];

  /** Deployments whose cooldown ended since the last pump. */
  cooldownsEnded: string[];
  /** Waiting count after the pump. */
  waiting: number;
  /** When capacity or a deadline next changes things (clock ms), or null if nothing is pending. */
  nextWakeAt: number | null;
}

/**
 * `upstreamBlock`: the provider's rate-limit headers said a limit is used up for this long (from the
 * answer): the deployment grants nothing until then (upstream-limits.ts).
 */
export type ReleaseOutcome =
  | { kind: 'ok'; tokensUsed?: number; upstreamBlock?: UpstreamBlock }
  | { kind: 'cancelled' }
  /** `message`: the upstream's error, for 503 upstream_unavailable when every deployment fails. */
  | { kind: 'failed'; failure: UpstreamFailureKind; retryAfterMs?: number; upstreamBlock?: UpstreamBlock; message?: string };

export interface ReleaseResult {
  /** Set when this release put the deployment into cooldown. */
  cooldown?: { deploymentId: string; until: number; reason: string };
  /** Set when this release blocked the deployment until the provider's limit resets (`reason`: the limit). */
  upstreamLimited?: { deploymentId: string; until: number; reason: string };
  /** Set when the store pumped in the same atomic step as the release (asked with `{ pump: true }`). */
  pumped?: PumpResult;
}

export interface DeploymentUsage {
  id: string;
  inFlight: number;
  maxParallelRequests: number | null;
  rpmUsed: number;
  rpm: number | null;
  tpmUsed: number;
  tpm: number | null;
  coolingDownUntil: number | null;
  /** While the provider's rate-limit headers said a limit is used up: when it resets (grants wait until then). */
  upstreamBlockedUntil: number | null;
  /** Requests this deployment could take right now (null = unlimited); a full tpm window makes it 0 (deploymentHeadroom). */
  headroom: number | null;
}

export interface WaiterView {
  id: string;
  position: number;
  priority: number;
  /** The ordering key's tie-breakers (see queue-order.ts), so a client can keep the order itself. */
  round: number;
  seq: number;
  effectivePriority: number;
  tenant: string;
  waitedMs: number;
  /** Estimated ms until it is granted (grant-estimate.ts), null when unknown (or past the first 100 listed). */
  etaMs: number | null;
}

export interface GroupSnapshot {
  model: string;
  waiting: number;
  depthByPriority: Record<string, number>;
  oldestWaitMs: number;
  inFlight: number;
  deployments: DeploymentUsage[];
  /** The first waiters in grant order (bounded). */
  waiters: WaiterView[];
}

/** Calls from a shared store about changes made elsewhere (another instance). */
export interface StoreListener {
  /** Capacity or the queue changed outside this process: pump again. */
  changed(): void;
  /**
   * Another instance's pump granted or expired waiters that this instance owns (global order means
   * any instance may grant the head of the queue). Delivered like the results of a local pump.
   */
  remote(result: { grants: Grant[]; expired: string[]; displaced?: Displaced[] }): void;
}

/** The same operations answered at once, for stores that need no I/O (in memory). */
export interface ImmediateStoreOps {
  enqueue(entry: WaiterEntry, now: number): EnqueueResult;
  remove(id: string, now: number): boolean;
  pump(now: number): PumpResult;
  release(grant: Grant, outcome: ReleaseOutcome, now: number): ReleaseResult;
}

export interface SchedulerStore {
  /** True when other processes change the state too: the scheduler then re-checks every polling_interval. */
  readonly shared: boolean;
  /**
   * Present when the store answers without I/O: the scheduler then calls these and skips a promise
   * hop per operation (the in-memory hot path). Same semantics as the async methods.
   */
  readonly immediate?: ImmediateStoreOps;
  enqueue(entry: WaiterEntry, now: number): Promise<EnqueueResult>;
  /** Removes a waiter (cancel); false when it was no longer waiting. */
  remove(id: string, now: number): Promise<boolean>;
  /** Grants what capacity allows, strictly in queue order, and expires overdue waiters. */
  pump(now: number): Promise<PumpResult>;
  /**
   * Ends a grant exactly once (a second release of the same grant is ignored). With `pump: true` the
   * store may also pump in the same step and return the result as `pumped`; without it, it must not
   * (a retrying request releases, then re-enqueues: the slot must not go to the next waiter first).
   */
  release(grant: Grant, outcome: ReleaseOutcome, now: number, options?: { pump?: boolean }): Promise<ReleaseResult>;
  position(id: string): Promise<number | null>;
  snapshot(now: number, maxWaiters?: number): Promise<GroupSnapshot>;
  /** Seconds a rejected caller should wait: from queue depth and the limiter's recent grant rate. */
  retryAfterSeconds(now: number): Promise<number>;
  setListener(listener: StoreListener): void;
  close(): Promise<void>;
}

/** Builds a model group's store (in memory, or shared through Redis) from the group's deployments and the config. */
export type StoreFactory = (model: string, deployments: DeploymentConfig[], config: TriageConfig) => SchedulerStore;
