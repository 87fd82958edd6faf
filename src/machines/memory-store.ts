/**
 * The in-memory SchedulerStore: one model group's waiters and deployments in this process.
 *
 * Waiters live in two size-augmented treaps (grant order and deadline order) and one Map, so enqueue,
 * grant, cancel and expiry are O(log n) and nothing copies the queue. One `pump` grants as many
 * waiters as capacity allows, strictly in order, and reports the single next moment worth waking for.
 */
import type { DeploymentConfig, QueueBound } from '../core/config-types.js';
import { fullBound } from './queue-bounds.js';
import { ChurnMap } from './churn-map.js';
import { DeploymentState, MAX_COOLDOWN_MS, type CooldownPolicy, type Reservation } from './deployment-state.js';
import { boundIsEstimate, earliestGrantAt, reachable, retryAfterSecondsUntil } from './grant-estimate.js';
import { effectivePriority, FairRounds, orderRank, writeOrderKey, type OrderKey } from './queue-order.js';
import { RankedQueue, type RankKey } from './ranked-queue.js';
import { EventRate, WINDOW_MS } from './rate-window.js';
import type {
  Displaced,
  EnqueueResult,
  GroupSnapshot,
  ImmediateStoreOps,
  Grant,
  PumpResult,
  ReleaseOutcome,
  ReleaseResult,
  SchedulerStore,
  StoreListener,
  WaiterEntry,
  WaiterView,
} from './scheduler-store.js';

interface Waiter extends OrderKey {
  entry: WaiterEntry;
}

export interface MemoryStoreOptions {
  model: string;
  deployments: DeploymentConfig[];
  maxQueueSize: number;
  /** Per-priority bounds (config-queue-bounds.ts). */
  maxQueueSizeByPriority?: QueueBound[];
  priorityAgingMs?: number;
  cooldown: CooldownPolicy;
}

/** Waiters of a snapshot that get an ETA (each is a bisection). */
const ETA_LISTED = 100;

/** Priorities whose count is kept at 0 (see addDepth). */
const MAX_IDLE_DEPTH_KEYS = 64;

const byDeadline: RankKey<Waiter> = (w, out) => {
  out[0] = w.entry.deadline;
  out[1] = w.seq;
  out[2] = 0;
};

export class MemoryStore implements SchedulerStore {
  readonly shared = false;
  readonly immediate: ImmediateStoreOps = {
    // The scheduler pumps right after an accepted enqueue, in the same call: an arrival that finds
    // capacity can be granted at once (enqueueNow's grantIfFree).
    enqueue: (entry, now) => this.enqueueNow(entry, now, true),
    remove: (id) => this.removeNow(id),
    pump: (now) => this.pumpNow(now),
    release: (grant, outcome, now) => this.releaseNow(grant, outcome, now),
  };
  private readonly queue = new RankedQueue<Waiter>(writeOrderKey);
  private readonly deadlines = new RankedQueue<Waiter>(byDeadline);
  /** Waiters in insertion order, which is the order of their enqueuedAt except for those in `outOfOrder`. */
  private readonly waiters = new ChurnMap<Waiter>();
  /**
   * Waiters inserted with an enqueuedAt older than one inserted before them: retries, which keep
   * their first enqueuedAt. With them, the first waiter in the Map is no longer sure to be the oldest.
   */
  private readonly outOfOrder = new Set<Waiter>();
  private latestEnqueuedAt = -Infinity;
  private readonly depth = new Map<number, number>();
  /** Waiters in each per-priority bound's class (priority >= its minPriority), in the bounds' order. */
  private readonly classCounts: number[];
  private readonly deployments: DeploymentState[];
  private readonly reservations = new ChurnMap<Reservation>();
  private readonly rounds = new FairRounds();
  /** Grants in the last minute, for Retry-After when no rpm limit bounds the rate. */
  private readonly grantRate = new EventRate();
  /** Grants made outside a pump (while judging a full queue), handed out by the next pump. */
  private undelivered: Grant[] = [];
  /** Waiters displaced by enqueues since the last pump, answered by the next pump (every accepted enqueue pumps). */
  private displaced: Displaced[] = [];
  /** A cooldown started since the last pump: waiters' deadlines may have become unreachable. */
  private recheckDeadlines = false;
  private nextSeq = 1;
  private nextGrant = 1;
  /** Search keys for the two treaps' rank queries (no object per query). */
  private readonly deadlineProbe = { entry: { deadline: 0 }, seq: Infinity } as unknown as Waiter;
  private readonly orderProbe: OrderKey = { rank: 0, round: -Infinity, seq: -Infinity };
  /** Whether the grant estimate is also a fair ETA (no deployment bounded by max_parallel_requests alone). */
  private readonly etaKnown: boolean;

  constructor(private readonly options: MemoryStoreOptions) {
    this.deployments = options.deployments.map((d) => new DeploymentState(d.id, d.limits));
    this.etaKnown = boundIsEstimate(options.deployments.map((d) => d.limits));
    this.classCounts = (options.maxQueueSizeByPriority ?? []).map(() => 0);
  }

  get waiting(): number {
    return this.waiters.size;
  }

  /**
   * A priority's count stays in the Map at 0 while few priorities are in use: a long-lived Map that
   * gains and loses a key per request reallocates its table every few requests, in old space. Past
   * MAX_IDLE_DEPTH_KEYS, empty priorities are dropped, so a client sending many distinct priorities
   * cannot grow it.
   */
  private addDepth(priority: number, delta: number): void {
    const n = (this.depth.get(priority) ?? 0) + delta;
    if (n === 0 && this.depth.size > MAX_IDLE_DEPTH_KEYS) this.depth.delete(priority);
    else this.depth.set(priority, n);
  }

  private insert(waiter: Waiter): void {
    this.queue.insert(waiter);
    this.deadlines.insert(waiter);
    this.waiters.set(waiter.entry.id, waiter);
    this.addDepth(waiter.entry.priority, 1);
    if (this.classCounts.length > 0) this.countClasses(waiter.entry.priority, 1);
    if (waiter.entry.enqueuedAt < this.latestEnqueuedAt) this.outOfOrder.add(waiter);
    else this.latestEnqueuedAt = waiter.entry.enqueuedAt;
  }

  private take(waiter: Waiter): void {
    this.queue.delete(waiter);
    this.deadlines.delete(waiter);
    this.waiters.delete(waiter.entry.id);
    this.addDepth(waiter.entry.priority, -1);
    if (this.classCounts.length > 0) this.countClasses(waiter.entry.priority, -1);
    if (this.outOfOrder.size > 0) this.outOfOrder.delete(waiter);
  }

  private countClasses(priority: number, delta: number): void {
    const bounds = this.options.maxQueueSizeByPriority!;
    for (let i = 0; i < bounds.length; i++) if (priority >= bounds[i].minPriority) this.classCounts[i] += delta;
  }

  /** Waiters of priority >= a bound's minPriority (one of the configured bounds). */
  private readonly countAtLeast = (minPriority: number): number => {
    const i = this.options.maxQueueSizeByPriority!.findIndex((b) => b.minPriority === minPriority);
    return i < 0 ? 0 : this.classCounts[i];
  };

  /** The longest-waiting waiter's enqueuedAt: the first in insertion order, or an older retry. */
  private oldestEnqueuedAt(): number | undefined {
    let oldest = this.waiters.first()?.entry.enqueuedAt;
    for (const w of this.outOfOrder) if (oldest === undefined || w.entry.enqueuedAt < oldest) oldest = w.entry.enqueuedAt;
    return oldest;
  }

  async enqueue(entry: WaiterEntry, now: number): Promise<EnqueueResult> {
    return this.enqueueNow(entry, now);
  }

  /**
   * Synchronous core of enqueue (benchmarks and the store's own tests call it directly).
   * `grantIfFree`: when nobody waits and a deployment has headroom, grant the arrival now (handed out
   * by the next pump) instead of queueing it for that pump to grant. The pump would grant it first,
   * on the same deployment, so the two agree when the pump follows before any other enqueue, as on
   * the scheduler's synchronous path; between an enqueue and a later pump they do not (that pump
   * would grant the better priority of several arrivals first).
   */
  enqueueNow(entry: WaiterEntry, now: number, grantIfFree = false): EnqueueResult {
    const retry = entry.seq !== undefined;
    if (this.waiters.has(entry.id)) throw new Error(`request ${entry.id} is already waiting`);
    const down = this.unavailable(now);
    if (down !== undefined) {
      const refused: EnqueueResult = { accepted: false, reason: 'upstream_unavailable', retryAfterMs: down.until - now };
      if (down.message !== undefined) refused.message = down.message;
      return refused;
    }
    // A burst can fill the queue before the next pump runs: grant what capacity allows now (delivered
    // by that pump) so only requests that really have to wait count against max_queue_size.
    const bounds = this.options.maxQueueSizeByPriority;
    const full = () => this.waiters.size >= this.options.maxQueueSize || fullBound(bounds, entry.priority, this.countAtLeast) !== undefined;
    if (!retry && full()) this.grantAvailable(now, this.undelivered);
    const rank = orderRank(entry.priority, entry.enqueuedAt, this.options.priorityAgingMs);
    // A retry was admitted before: it re-enters even when the queue is full, at its old place.
    let worst: Waiter | undefined;
    if (!retry && full()) {
      // Priority decides who is shed: a better arrival takes the place of the waiter served last, if
      // that waiter holds a place the arrival may have (of the full per-priority bound's class).
      const bound = fullBound(bounds, entry.priority, this.countAtLeast);
      worst = this.queue.peekLast();
      if (worst === undefined || !(rank < worst.rank) || (bound !== undefined && worst.entry.priority < bound.minPriority)) {
        return { accepted: false, reason: 'queue_full', retryAfterMs: this.retryAfterSecondsNow(now, entry.tokens) * 1000 };
      }
    }
    // A deadline that certainly cannot be met is answered now, not when it passes (and displaces nobody).
    // Only waiters of strictly better rank are sure to be ahead before its round is drawn.
    const free = this.waiters.size === 0 ? this.pickDeployment(entry.tokens, now) : undefined;
    const waits = free === undefined;
    if (waits && !this.unboundedNow(entry.tokens, now) && !this.grantableBy(this.aheadOf(rank), entry.tokens, now, entry.deadline)) {
      const bound = this.earliestGrant(this.aheadOf(rank), entry.tokens, now, this.horizon(now));
      return { accepted: false, reason: 'deadline_unreachable', retryAfterMs: (bound === Infinity ? 3600 : retryAfterSecondsUntil(bound, now)) * 1000 };
    }
    if (worst !== undefined) {
      this.take(worst);
      this.displaced.push({ id: worst.entry.id, retryAfterSeconds: this.retryAfterSecondsNow(now, worst.entry.tokens) });
    }
    const seq = entry.seq ?? this.nextSeq++;
    const round = entry.round ?? this.rounds.next(entry.priority, entry.tenant);
    // Written out, not `{ ...entry, seq, round }`: on Node 20 that gives every waiter a hidden class
    // of its own (docs/performance.md, "Object spread on the hot path").
    const stored: WaiterEntry = { id: entry.id, priority: entry.priority, tenant: entry.tenant, enqueuedAt: entry.enqueuedAt, deadline: entry.deadline, tokens: entry.tokens, seq, round };
    const waiter: Waiter = { entry: stored, seq, round, rank };
    if (grantIfFree && free !== undefined && entry.deadline > now) {
      // The usual request, which finds capacity at once, never enters the queues.
      this.undelivered.push(this.grant(waiter, free, now));
      return { accepted: true, seq, position: 0, priority: entry.priority, round, etaAt: now };
    }
    this.insert(waiter);
    const position = this.queue.rank(waiter);
    let eta: number | null = now;
    if (waits) {
      const at = this.etaKnown ? this.earliestGrant(position, entry.tokens, now, this.horizon(now)) : Infinity;
      eta = at === Infinity ? null : at;
    }
    return { accepted: true, seq, position, priority: entry.priority, round, etaAt: eta };
  }

  async remove(id: string): Promise<boolean> {
    return this.removeNow(id);
  }

  removeNow(id: string): boolean {
    const waiter = this.waiters.get(id);
    if (waiter === undefined) return false;
    this.take(waiter);
    return true;
  }

  async pump(now: number): Promise<PumpResult> {
    return this.pumpNow(now);
  }

  pumpNow(now: number): PumpResult {
    const cooldownsEnded: string[] = [];
    for (const d of this.deployments) if (d.endCooldownIfDue(now)) cooldownsEnded.push(d.id);

    const expired: string[] = [];
    for (let w = this.deadlines.peek(); w !== undefined && w.entry.deadline <= now; w = this.deadlines.peek()) {
      this.take(w);
      expired.push(w.entry.id);
    }

    const grants = this.undelivered;
    this.undelivered = [];
    this.grantAvailable(now, grants);
    const result: PumpResult = { grants, expired, cooldownsEnded, waiting: this.waiters.size, nextWakeAt: this.nextWakeAt(now) };
    if (this.displaced.length > 0) {
      result.displaced = this.displaced;
      this.displaced = [];
    }
    if (this.recheckDeadlines) {
      this.recheckDeadlines = false;
      const unreachable = this.unavailable(now) === undefined ? this.takeUnreachable(now) : this.takeAllUnavailable(now);
      if (unreachable.length > 0) {
        result.displaced = result.displaced === undefined ? unreachable : result.displaced.concat(unreachable);
        result.waiting = this.waiters.size;
        result.nextWakeAt = this.nextWakeAt(now);
      }
    }
    return result;
  }

  /** Grants waiters in order while a deployment has headroom for the head. */
  private grantAvailable(now: number, into: Grant[]): void {
    for (let head = this.queue.peek(); head !== undefined; head = this.queue.peek()) {
      const deployment = this.pickDeployment(head.entry.tokens, now);
      // Strict order: if the head cannot go, nobody behind it jumps the queue.
      if (deployment === undefined) break;
      this.take(head);
      into.push(this.grant(head, deployment, now));
    }
  }

  /** Among deployments with headroom, the least loaded; ties go to fewer in-flight calls, then config order. */
  private pickDeployment(tokens: number, now: number): DeploymentState | undefined {
    let best: DeploymentState | undefined;
    let bestLoad = Infinity;
    for (const d of this.deployments) {
      if (!d.canTake(tokens, now)) continue;
      const load = d.load(now);
      if (best === undefined || load < bestLoad || (load === bestLoad && d.inFlight < best.inFlight)) {
        best = d;
        bestLoad = load;
      }
    }
    return best;
  }

  private grant(waiter: Waiter, deployment: DeploymentState, now: number): Grant {
    const { entry } = waiter;
    const grantId = `g${this.nextGrant++}`;
    this.reservations.set(grantId, deployment.reserve(entry.tokens, now));
    this.rounds.markServed(entry.priority, waiter.round);
    this.grantRate.add(now);
    return {
      grantId,
      requestId: entry.id,
      deploymentId: deployment.id,
      tokens: entry.tokens,
      grantedAt: now,
      waitedMs: now - entry.enqueuedAt,
      priority: entry.priority,
      seq: waiter.seq,
    };
  }

  private nextWakeAt(now: number): number | null {
    let at = Infinity;
    const firstDeadline = this.deadlines.peek();
    if (firstDeadline !== undefined) at = firstDeadline.entry.deadline;
    for (const d of this.deployments) if (d.coolingDownUntil !== null) at = Math.min(at, d.coolingDownUntil);
    const head = this.queue.peek();
    if (head !== undefined) {
      for (const d of this.deployments) {
        const when = d.nextCapacityAt(head.entry.tokens, now);
        // `when === now` with no grant means only a release can help; releases are events, not times.
        if (when > now) at = Math.min(at, when);
      }
    }
    return at === Infinity ? null : at;
  }

  async release(grant: Grant, outcome: ReleaseOutcome, now: number): Promise<ReleaseResult> {
    return this.releaseNow(grant, outcome, now);
  }

  releaseNow(grant: Grant, outcome: ReleaseOutcome, now: number): ReleaseResult {
    const reservation = this.reservations.get(grant.grantId);
    // Exactly once: a second release of the same grant finds nothing.
    if (reservation === undefined) return {};
    this.reservations.delete(grant.grantId);
    const deployment = this.deployments.find((d) => d.id === reservation.deploymentId)!;
    const cooldown = deployment.release(reservation, outcome, now, this.options.cooldown);
    const result: ReleaseResult = cooldown ? { cooldown: { deploymentId: deployment.id, ...cooldown } } : {};
    const blockedUntil = deployment.blockUpstream(outcome, now);
    if (blockedUntil !== undefined && outcome.kind !== 'cancelled') {
      result.upstreamLimited = { deploymentId: deployment.id, until: blockedUntil, reason: outcome.upstreamBlock!.reason };
    }
    // A new cooldown or provider block may put waiters' deadlines out of reach: the next pump looks.
    if (cooldown || result.upstreamLimited) this.recheckDeadlines = true;
    return result;
  }

  async position(id: string): Promise<number | null> {
    const waiter = this.waiters.get(id);
    return waiter === undefined ? null : this.queue.rank(waiter);
  }

  async snapshot(now: number, maxWaiters = 50): Promise<GroupSnapshot> {
    const waiters: WaiterView[] = [];
    const horizon = this.horizon(now);
    this.queue.forEach((w) => {
      if (waiters.length >= maxWaiters) return false;
      // Each estimate costs a bisection: only the first ETA_LISTED waiters get one.
      const at = this.etaKnown && waiters.length < ETA_LISTED ? this.earliestGrant(waiters.length, w.entry.tokens, now, horizon) : Infinity;
      waiters.push({
        id: w.entry.id,
        position: waiters.length,
        priority: w.entry.priority,
        round: w.round,
        seq: w.seq,
        effectivePriority: effectivePriority(w.entry.priority, w.entry.enqueuedAt, now, this.options.priorityAgingMs),
        tenant: w.entry.tenant,
        waitedMs: now - w.entry.enqueuedAt,
        etaMs: at === Infinity ? null : at - now,
      });
      return true;
    });
    const depthByPriority: Record<string, number> = {};
    for (const [p, n] of [...this.depth].sort((a, b) => a[0] - b[0])) if (n > 0) depthByPriority[String(p)] = n;
    const oldest = this.oldestEnqueuedAt();
    const deployments = this.deployments.map((d) => d.usage(now));
    return {
      model: this.options.model,
      waiting: this.waiters.size,
      depthByPriority,
      oldestWaitMs: oldest === undefined ? 0 : now - oldest,
      inFlight: deployments.reduce((n, d) => n + d.inFlight, 0),
      deployments,
      waiters,
    };
  }

  async retryAfterSeconds(now: number): Promise<number> {
    return this.retryAfterSecondsNow(now);
  }

  /** Waiters certainly ahead of an arrival of queue rank `rank`: those of strictly better rank. */
  private aheadOf(rank: number): number {
    this.orderProbe.rank = rank;
    return this.queue.rank(this.orderProbe as Waiter);
  }

  /** Waiters whose deadline is at or before t. */
  private leavingBy = (t: number): number => {
    (this.deadlineProbe.entry as { deadline: number }).deadline = t;
    return this.deadlines.rank(this.deadlineProbe);
  };

  /** Far enough that every waiter has left and capacity has returned: past it, nobody waits for anything. */
  private horizon(now: number): number {
    const latest = this.deadlines.peekLast()?.entry.deadline ?? now;
    let ready = now;
    for (const d of this.deployments) ready = Math.max(ready, d.nextCapacityAt(1, now, true));
    return Math.max(latest, ready, now) + MAX_COOLDOWN_MS + 2 * WINDOW_MS;
  }

  /**
   * The certain lower bound on when a waiter with `ahead` waiters before it and `tokens` to reserve is
   * granted (grant-estimate.ts); Infinity when not by `horizon`.
   */
  private earliestGrant(ahead: number, tokens: number, now: number, horizon: number): number {
    const views = this.deployments.map((d) => d.capacityView(now));
    const at = earliestGrantAt({ now, deployments: views, ahead, leavingBy: this.leavingBy, horizon });
    // Its own reservation must fit somewhere too.
    let own = Infinity;
    for (const d of this.deployments) own = Math.min(own, d.nextCapacityAt(tokens, now, true));
    return Math.max(at, own);
  }

  /**
   * After a cooldown started: the waiters whose deadline passes before anyone at all could be granted
   * leave now (answered 429 queue_timeout_certain), in deadline order, O(log n) each. Waiters further
   * back whose deadline the queue ahead makes unreachable are not looked for (that would walk the
   * queue); they are answered at their deadline as before.
   */
  private takeUnreachable(now: number): Displaced[] {
    const out: Displaced[] = [];
    const first = this.earliestGrant(0, 1, now, this.horizon(now));
    if (first === Infinity || first <= now) return out;
    const seconds = retryAfterSecondsUntil(first, now);
    for (let w = this.deadlines.peek(); w !== undefined && w.entry.deadline < first; w = this.deadlines.peek()) {
      this.take(w);
      out.push({ id: w.entry.id, retryAfterSeconds: seconds, unreachable: true });
    }
    return out;
  }

  /**
   * Whether a deployment without an rpm limit could take `tokens` now but for calls in flight: then
   * nothing is certain (a call may end at any moment) and the estimate need not be asked.
   */
  private unboundedNow(tokens: number, now: number): boolean {
    for (const d of this.deployments) if (d.limits.rpm === undefined && d.nextCapacityAt(tokens, now, true) <= now) return true;
    return false;
  }

  /** Whether a waiter with `ahead` waiters before it could be granted by `t` (one step of the estimate). */
  private grantableBy(ahead: number, tokens: number, now: number, t: number): boolean {
    const views = this.deployments.map((d) => d.capacityView(now));
    if (!reachable({ now, deployments: views, ahead, leavingBy: this.leavingBy, horizon: t }, t)) return false;
    for (const d of this.deployments) if (d.nextCapacityAt(tokens, now, true) <= t) return true;
    return false;
  }

  /**
   * When every deployment is cooling down after failures that are not 429s, when the first comes back
   * and the last upstream error; undefined otherwise (a 429's cooldown is the upstream's own schedule:
   * its waiters wait).
   */
  private unavailable(now: number): { until: number; message: string | undefined } | undefined {
    if (this.deployments.length === 0) return undefined;
    let until = Infinity;
    let message: string | undefined;
    for (const d of this.deployments) {
      if (!d.coolingDown(now) || d.coolingReason === 'rate_limited') return undefined;
      until = Math.min(until, d.coolingDownUntil!);
      message = d.lastFailure ?? message;
    }
    return { until, message };
  }

  /** Every waiter, answered 503 upstream_unavailable (all deployments failing): a rare walk of the queue. */
  private takeAllUnavailable(now: number): Displaced[] {
    const down = this.unavailable(now)!;
    const seconds = retryAfterSecondsUntil(down.until, now);
    const all: Waiter[] = [];
    this.queue.forEach((w) => {
      all.push(w);
    });
    const out: Displaced[] = [];
    for (const w of all) {
      this.take(w);
      out.push({ id: w.entry.id, retryAfterSeconds: seconds, unavailable: down.message ?? '' });
    }
    return out;
  }

  /** A waiter's estimated grant time (clock ms), or null when only calls ending could tell. */
  etaOf(id: string, now: number): number | null {
    const waiter = this.waiters.get(id);
    if (waiter === undefined || !this.etaKnown) return null;
    const at = this.earliestGrant(this.queue.rank(waiter), waiter.entry.tokens, now, this.horizon(now));
    return at === Infinity ? null : at;
  }

  /**
   * When a newcomer behind every waiter could be granted (the grant estimate's certain bound), in
   * seconds: it counts down as time passes, and waiters that will have timed out by then do not count.
   * Where only max_parallel_requests bounds a deployment, that bound says little: the time for the queue
   * to drain at the grant rate observed over the last minute is used if longer, but never past the
   * longest wait still ahead.
   */
  private retryAfterSecondsNow(now: number, tokens = 1): number {
    const at = this.earliestGrant(this.waiters.size, tokens, now, this.horizon(now));
    let seconds = at === Infinity ? 3600 : retryAfterSecondsUntil(at, now);
    if (!this.etaKnown) {
      const rate = this.grantRate.count(now) / 60;
      const drain = rate > 0 ? Math.ceil((this.waiters.size + 1) / rate) : 1;
      const latest = this.deadlines.peekLast()?.entry.deadline ?? now;
      seconds = Math.max(seconds, Math.min(drain, retryAfterSecondsUntil(latest, now)));
    }
    return Math.min(3600, seconds);
  }

  setListener(_listener: StoreListener): void {
    // Nothing changes this store from outside the process.
  }

  async close(): Promise<void> {
    this.queue.clear();
    this.deadlines.clear();
    this.waiters.clear();
    this.depth.clear();
  }
}
