/**
 * The Redis SchedulerStore: ONE queue and ONE set of deployment limits per model group, shared by every
 * Triage instance that points at the same Redis and prefix.
 *
 * Every state change is one Lua script (src/adapters/redis/*.lua on the helpers of lib.lua's includes), each a function of
 * one Redis Function library (redis-library.ts) called by FCALL. Nothing reads state, decides in
 * JavaScript and writes it back: enqueue, grant (deployment choice and every limit), release, removal
 * and expiry each happen atomically inside Redis, against Redis's own clock.
 *
 * A request costs two scripts: its enqueue grants in the same step (enqueue + pump), and its release
 * grants the freed slot in the same step (release + pump, unless the request is retrying). The results
 * go back to the scheduler as `pumped`. Commands issued in one turn of the event loop leave in one
 * socket write (see redis-write-batch.ts).
 *
 * Order is global, so a pump here may grant a waiter owned by another instance. Such grants (and
 * expiries) go to the owner's mailbox in Redis and the owner is told on its channel: the message
 * carries the grants themselves, so the owner delivers them through `listener.remote` without a round
 * trip (expiries in the same message, or a grant it cannot match to a waiter of its own, make it claim
 * its mail as well; a grant that overtook its waiter's enqueue reply waits for that reply).
 * The mailbox makes delivery exactly-once even when a notification is lost (every grant step and the
 * heartbeat claim mail too; a grant already delivered is recognised and dropped).
 *
 * Crash safety: each instance holds a lease per group (renewed by every script call and by the
 * heartbeat). A script that finds a lapsed lease removes that instance's waiters and releases its
 * grants. After an error, or when this instance finds its own lease gone, it reconciles (`sync`):
 * undelivered grants are delivered or given back, waiters Redis lost are re-queued at their old place.
 */
import type { DeploymentConfig, QueueBound } from '../core/config-types.js';
import type { RedisClient as Redis } from './redis-client.js';
import type { WriteBatch } from './redis-write-batch.js';
import { batchArguments, batchReplies, callScript, type BatchedOperation, type ScriptName } from './redis-library.js';
import { ChurnMap } from '../machines/churn-map.js';
import type { Clock } from '../core/clock.js';
import { MAX_COOLDOWN_MS, deploymentHeadroom, type CooldownPolicy } from '../machines/deployment-state.js';
import { effectivePriority, orderRank } from '../machines/queue-order.js';
import type {
  Displaced,
  DeploymentUsage,
  EnqueueResult,
  GroupSnapshot,
  Grant,
  PumpResult,
  ReleaseOutcome,
  ReleaseResult,
  SchedulerStore,
  StoreListener,
  WaiterEntry,
  WaiterView,
} from '../machines/scheduler-store.js';
import {
  decodeClaimReply,
  decodeEnqueueReply,
  decodeGrantRecords,
  decodeLeaveReply,
  decodePositionReply,
  decodePumpReply,
  decodeReleaseReply,
  decodeRemoveReply,
  decodeRetryAfterReply,
  decodeSnapshotReply,
  decodeSyncReply,
  type Endings,
  type PumpReply,
  type ReplyHead,
} from './redis-protocol.js';


/** The group keys of lib.lua, in KEYS order; then 4 keys per deployment. */
export const GROUP_KEYS = ['queue', 'deadlines', 'enqueued', 'waiters', 'depth', 'grants', 'mail', 'leases', 'seq', 'gseq', 'rounds', 'rate', 'seen'] as const;
export const DEPLOYMENT_KEYS = ['dep', 'rpm', 'tpm', 'fail'] as const;

/** Deadlines further away than this are clamped (a Lua script needs finite numbers). */
const FAR_FUTURE_MS = 10 * 365 * 86_400_000;
const MAX_PUMP_CALLS = 8;
/** How far the caller/Redis clock offset may move before aging ranks follow it (a clock jump). */
const RANK_OFFSET_SLACK_MS = 10_000;
/** How long the least Date.now() − Redis reading stands before a later reply replaces it (clock steps). */
const REDIS_LAG_WINDOW_MS = 30_000;

export interface RedisStoreOptions {
  /** The command connection (shared by all stores of one instance): one node or a cluster. */
  redis: Redis;
  /** The connection's write batching (redis-write-batch.ts); without it each command is sent at once. */
  writes?: WriteBatch;
  /**
   * Wake-ups by sharded pub/sub (SPUBLISH on the group's own channel, see groupChannel), as a Redis
   * Cluster needs; false: PUBLISH on the instance's channel.
   */
  sharded?: boolean;
  /** Key prefix (router_settings.redis_prefix, default `triage`). */
  prefix: string;
  model: string;
  deployments: DeploymentConfig[];
  maxQueueSize: number;
  /** Per-priority bounds (config-queue-bounds.ts), sent with each enqueue. */
  maxQueueSizeByPriority?: QueueBound[];
  priorityAgingMs?: number;
  cooldown: CooldownPolicy;
  /** This process's id, unique among live instances. */
  instanceId: string;
  /** Lease length: an instance silent this long is presumed dead and its waiters and grants reclaimed. */
  leaseMs: number;
  /** Most grants one pump script makes (the store calls it again while more are grantable). */
  pumpBatch?: number;
  /**
   * Grant in the same script as each enqueue and return the result as `pumped` (default true). A
   * caller must then apply `pumped` (the scheduler does); false keeps enqueue a pure enqueue.
   */
  pumpOnEnqueue?: boolean;
  /**
   * An enqueue that Redis runs later than this after it was sent changes nothing (set it to the command
   * timeout: by then the caller has given up and answered its request). Without it, a stall longer than
   * the timeout left the enqueue to run afterwards, and a grant of it counted in the rpm/tpm window.
   */
  enqueueExpiresMs?: number;
  /** Called once when the store closes (its factory forgets it). */
  onClose?: (store: RedisStore) => void;
  /**
   * Tests only: the scripts take their time from this clock instead of Redis's TIME (lib.lua), so a
   * test moves time for this store and a MemoryStore alike: window roll-off, expiry, cooldown ends.
   */
  scriptClock?: Clock;
}

/** The key prefix of one model group; every key of the group carries the hash tag {model}. */
export function groupPrefix(prefix: string, model: string): string {
  return `${prefix}:{${model}}`;
}

export function groupKeyNames(prefix: string, model: string, deployments: readonly Pick<DeploymentConfig, 'id'>[]): string[] {
  const g = groupPrefix(prefix, model);
  const keys: string[] = GROUP_KEYS.map((k) => `${g}:${k}`);
  for (const d of deployments) for (const k of DEPLOYMENT_KEYS) keys.push(`${g}:${k}:${d.id}`);
  return keys;
}

/**
 * The pub/sub channel of an instance. Messages: 'm' + model = claim your mail; 'g' + model + NUL +
 * grants (NUL-separated records of 8 tab-separated fields, as pump replies) = grants for your waiters,
 * also in your mailbox, with a last record 'm' when there is other mail to claim too; 'c' + model =
 * capacity changed, pump.
 */
export function instanceChannel(prefix: string, instanceId: string): string {
  return `${prefix}:instance:${instanceId}`;
}

/**
 * The sharded channel of an instance for one group (Redis Cluster): it carries the group's hash tag, so
 * it lives in the group's slot and the group's scripts can SPUBLISH to it. Same messages as
 * instanceChannel.
 */
export function groupChannel(prefix: string, model: string, instanceId: string): string {
  return `${groupPrefix(prefix, model)}:instance:${instanceId}`;
}

/**
 * The scripts' channel argument (lib.lua ARGV[3]): the channel prefix the owner id is appended to;
 * NUL + 's' in front selects SPUBLISH.
 */
export function channelArgument(prefix: string, model: string, sharded: boolean): string {
  return sharded ? `\0s${groupChannel(prefix, model, '')}` : instanceChannel(prefix, '');
}

/** Ids travel inside tab-separated records and NUL-separated index members. */
export function checkIdentifier(kind: string, value: string): void {
  if (typeof value !== 'string' || value === '' || value.includes('\t') || value.includes('\0')) {
    throw new Error(`${kind} must be a non-empty string without tab or NUL characters, got ${JSON.stringify(value)}`);
  }
}

/** A decoded script reply; `sentAt`: when the call was sent (performance.now()), for the lease fence. */
type Sent<T> = T & { sentAt?: number };

/** The share of the lease the fence trusts (the rest covers clock-rate differences with Redis's TIME). */
const LEASE_TRUST = 0.9;

interface LocalWaiter {
  entry: WaiterEntry;
  /** Local operation number when it was (re)queued: a sync started before it ignores it. */
  op: number;
  /**
   * Redis's grant counter when this enqueue was applied (known once it answered): a grant of this
   * waiter carries a larger one, so a grant announced by message for an earlier life of the same
   * request (a retry re-queues its id) is never taken for this one.
   */
  counter?: number;
  /**
   * Grants announced by message before this enqueue answered (the message overtook the reply): judged
   * when the reply comes (takeEarly), instead of claiming the mail for them at once.
   */
  early?: Grant[];
}

/** The grant counter in a grant id (`request id/server ms.counter`); NaN when there is none. */
export function grantCounter(grantId: string): number {
  const dot = grantId.lastIndexOf('.');
  return dot < 0 || dot < grantId.lastIndexOf('/') ? NaN : Number(grantId.slice(dot + 1));
}

/** The fields of a pump reply after its head, parsed; `more` = the batch cap was reached. */
interface PumpFields extends PumpResult {
  more: boolean;
}

/** What a store hands to the scheduler for delivery. */
interface Delivery {
  grants: Grant[];
  expired: string[];
  displaced: Displaced[];
}

function withDisplaced(result: PumpResult, displaced: Displaced[]): PumpResult {
  if (displaced.length > 0) result.displaced = displaced;
  return result;
}

/** Whether `g` was made for the wait `w`: after its enqueue, whose answer gave the grant counter then. */
const madeForWait = (w: LocalWaiter, g: Grant): boolean => w.counter !== undefined && grantCounter(g.grantId) > w.counter;

/** The operations sent together when one turn issues several (includes/batch.lua). */
const BATCHED: ReadonlySet<ScriptName> = new Set<ScriptName>(['enqueue', 'release', 'pump']);
/** Most operations in one call (docs/multi-instance.md, sizing). */
const MAX_BATCH = 64;

const isReplyError = (e: unknown) => (e as { name?: string } | null)?.name === 'ReplyError';
const noop = () => {};

export class RedisStore implements SchedulerStore {
  readonly shared = true;
  readonly model: string;
  private readonly redis: Redis;
  /** Every call's leading arguments: the number of keys, the keys, the common ARGV. */
  private readonly head0: (string | number)[];
  private readonly batch: number;
  /** The batch cap sent with enqueues ('' = enqueue does not pump). */
  private readonly enqueueCap: string;
  private listener: StoreListener | null = null;
  /** Operations issued in this turn, sent together at its end (sendBatch). */
  private batched: BatchedOperation[] = [];
  /** Results of a pump run inside enqueue (to judge a full queue), handed out by the next pump. */
  private heldOver: Delivery & { cooldownsEnded: string[] } = { grants: [], expired: [], displaced: [], cooldownsEnded: [] };
  /** Deliveries that arrived before a listener was set. */
  private undelivered: Delivery = { grants: [], expired: [], displaced: [] };

  /** This instance's requests waiting in the shared queue (what a reconciliation re-queues); one comes and goes per request. */
  private readonly waiting = new ChurnMap<LocalWaiter>();
  /** Grants handed to the scheduler and not released yet (a duplicate delivery is dropped). */
  private readonly delivered = new Set<string>();
  private readonly releasing = new Set<string>();
  /** Releases that failed (Redis down); retried until Redis confirms them. */
  private readonly pendingReleases = new Map<string, { grant: Grant; outcome: ReleaseOutcome }>();

  private ops = 0;
  private leaseHeld = false;
  /**
   * The lease fence (performance.now() ms): until then this instance's lease is certainly held, since
   * a call that renewed it was sent at most leaseMs × LEASE_TRUST earlier, so no other instance can
   * have reaped its grants. A grant reaching this process later (the process was paused: SIGSTOP, a
   * stalled event loop, a swap storm) may have been reclaimed and granted again to someone else; it is
   * not dispatched until a reconciliation (sync) confirms it still exists.
   */
  private leaseSafeUntil = -Infinity;
  /**
   * A renewal found this instance's lease gone (LOST): until a reconciliation (sync) has run, no grant
   * is dispatched, whatever leaseSafeUntil says, since the renewal that moved it came after the lapse.
   * A grant announced before the pause may be read after that renewal's reply (another connection).
   */
  private leaseLost = false;
  /** Fires at the earliest other instance's lease end (from the heartbeat), to reap it right then. */
  private reapTimer: ReturnType<typeof setTimeout> | undefined;
  /** A fresh process first reconciles with whatever a previous holder of its id left behind. */
  private needsSync = true;
  private syncing = false;
  private claiming = false;
  private claimAgain = false;
  private changedQueued = false;
  private closed = false;
  /** Caller clock minus Redis clock, from the latest call (server times → caller times). */
  private offset = 0;
  /** Caller clock minus Date.now(), from the latest call (a caller time when no `now` is given). */
  private skew = 0;
  /**
   * Date.now() minus the Redis clock, for an enqueue's not-after time: the least reading of the replies
   * in the last REDIS_LAG_WINDOW_MS (a reply can only read late, by its transit; a stalled one by
   * seconds). NaN until the first reply: no not-after is sent before the clocks are compared.
   */
  private redisLag = NaN;
  private redisLagAt = 0;
  /**
   * Caller clock minus Redis clock for aging ranks: fixed at the first answer and moved only when the
   * clocks drift apart by more than RANK_OFFSET_SLACK_MS, so the ranks this instance computes keep the
   * exact differences of its enqueuedAt values (the same ties as MemoryStore), on the Redis time base
   * shared by all instances.
   */
  private stableOffset: number | null = null;

  constructor(private readonly options: RedisStoreOptions) {
    checkIdentifier('instance id', options.instanceId);
    for (const d of options.deployments) checkIdentifier('deployment id', d.id);
    this.model = options.model;
    this.redis = options.redis;
    this.batch = Math.min(1000, Math.max(1, options.pumpBatch ?? 256));
    this.enqueueCap = options.pumpOnEnqueue === false ? '' : String(this.batch);
    const keys = groupKeyNames(options.prefix, options.model, options.deployments);
    const opt = (n: number | undefined) => (n === undefined ? '' : String(n));
    const common = [
      options.instanceId,
      String(Math.max(1, Math.round(options.leaseMs))),
      channelArgument(options.prefix, options.model, options.sharded === true),
      options.model,
      opt(options.priorityAgingMs),
      String(options.maxQueueSize),
      String(options.cooldown.cooldownTimeMs),
      String(options.cooldown.allowedFails),
      String(options.deployments.length),
    ];
    for (const d of options.deployments) {
      common.push(d.id, opt(d.limits.rpm), opt(d.limits.tpm), opt(d.limits.maxParallelRequests));
    }
    // The per-priority bounds as enqueue.lua reads them (lib.lua ARGV[10 + 4n]): `minPriority:maxWaiting,…`.
    common.push((options.maxQueueSizeByPriority ?? []).map((b) => `${b.minPriority}:${b.maxWaiting}`).join(','));
    this.head0 = [String(keys.length), ...keys, ...common];
  }

  get instanceId(): string {
    return this.options.instanceId;
  }

  /** Requests of this instance waiting in the shared queue, as this process knows them. */
  get localWaiting(): number {
    return this.waiting.size;
  }

  /**
   * Runs a script and decodes its reply (a reply of the wrong layout rejects, as a failed call). The
   * hot operations (enqueue, release, pump) issued in one turn go to Redis as one call (includes/batch.lua);
   * any other operation sends them first, so Redis runs everything in the order it was issued.
   */
  private call<T>(name: ScriptName, extra: (string | number)[], decode: (reply: unknown) => T): Promise<Sent<T>> {
    if (this.closed) return Promise.reject(new Error(`the Redis store for ${this.model} is closed`));
    const sentAt = performance.now();
    const finish = (r: unknown) => {
      const decoded = decode(r) as Sent<T>;
      decoded.sentAt = sentAt;
      return decoded;
    };
    if (BATCHED.has(name)) {
      return new Promise<unknown>((resolve, reject) => {
        // A full batch goes at once: one call holds Redis (and every other instance) for its whole run.
        if (this.batched.length >= MAX_BATCH) this.sendBatch();
        if (this.batched.length === 0) process.nextTick(this.sendBatch);
        this.batched.push({ name, extra, resolve, reject });
      }).then(finish);
    }
    this.sendBatch();
    this.options.writes?.hold();
    return callScript(this.redis, name, this.withClock(this.head0.concat(extra))).then(finish);
  }

  private withClock(args: (string | number)[]): (string | number)[] {
    if (this.options.scriptClock !== undefined) args.push(`clock:${Math.round(this.options.scriptClock.now())}`);
    return args;
  }

  /** Sends the operations batched in this turn: one alone as its own script, several as one call. */
  private readonly sendBatch = (): void => {
    const ops = this.batched;
    if (ops.length === 0) return;
    this.batched = [];
    this.options.writes?.hold();
    if (ops.length === 1) {
      callScript(this.redis, ops[0].name, this.withClock(this.head0.concat(ops[0].extra))).then(ops[0].resolve, ops[0].reject);
      return;
    }
    callScript(this.redis, 'batch', this.withClock(batchArguments(this.head0, ops))).then(
      (reply) => {
        let replies: unknown[];
        try {
          replies = batchReplies(reply, ops.length);
        } catch (e) {
          for (const op of ops) op.reject(e);
          return;
        }
        ops.forEach((op, i) => {
          const r = replies[i];
          if (r instanceof Error) op.reject(r);
          else op.resolve(r);
        });
      },
      (e: unknown) => {
        // A whole batch failing after some of its operations ran is no refusal of one operation:
        // reconcile (see failed()).
        const error = isReplyError(e) ? new Error(`Redis batch call failed: ${(e as Error).message}`) : e;
        for (const op of ops) op.reject(error);
      },
    );
  };

  private clientNow(): number {
    if (this.options.scriptClock !== undefined) return this.options.scriptClock.now();
    return Date.now() + this.skew;
  }

  /**
   * Reads the common reply head {LOST, NOW, REAPED}; returns the server time. `leased`: the script
   * renewed the caller's lease (enqueue, pump, claim, sync), so LOST means something.
   */
  private head(r: Sent<{ head: ReplyHead }>, now?: number, leased = false): number {
    const serverNow = r.head.now;
    const wall = Date.now();
    const lag = wall - serverNow;
    if (!(lag >= this.redisLag) || wall - this.redisLagAt > REDIS_LAG_WINDOW_MS) {
      this.redisLag = lag;
      this.redisLagAt = wall;
    }
    const callerNow = now ?? this.clientNow();
    this.offset = callerNow - serverNow;
    if (now !== undefined) {
      this.skew = now - Date.now();
      if (this.stableOffset === null || Math.abs(this.offset - this.stableOffset) > RANK_OFFSET_SLACK_MS) this.stableOffset = this.offset;
    }
    if (leased) {
      if (r.sentAt !== undefined) this.leaseSafeUntil = Math.max(this.leaseSafeUntil, r.sentAt + this.options.leaseMs * LEASE_TRUST);
      if (r.head.lost && this.leaseHeld) {
        // Our lease was gone (reaped while we were silent, or Redis lost its data): reconcile.
        this.needsSync = true;
        this.leaseLost = true;
      }
      this.leaseHeld = true;
    }
    if (r.head.reaped > 0) this.queueChanged();
    if (this.needsSync && !this.syncing) setImmediate(() => void this.syncIfNeeded());
    return serverNow;
  }

  private failed(e: unknown): void {
    // A reply error is the script refusing (e.g. a duplicate id): nothing happened. Anything else may
    // have happened or not (timeout, connection lost): reconcile once Redis answers again.
    if (!isReplyError(e)) this.needsSync = true;
  }

  private queueChanged(): void {
    if (this.changedQueued) return;
    this.changedQueued = true;
    setImmediate(() => {
      this.changedQueued = false;
      if (!this.closed) this.listener?.changed();
    });
  }

  /** Grants as decoded (grantedAt on the Redis clock), moved to this process's clock. */
  private local(grants: Grant[]): Grant[] {
    for (const g of grants) g.grantedAt += this.offset;
    return grants;
  }

  /** A decoded pump, its grants and expiries already filtered by `accept`. */
  private pumpFields(p: PumpReply, now: number, serverNow: number): PumpFields {
    const kept = this.accept(this.local(p.grants), p.endings);
    return {
      grants: kept.grants,
      expired: kept.expired,
      displaced: kept.displaced,
      cooldownsEnded: p.cooldownsEnded,
      waiting: p.waiting,
      nextWakeAt: p.wakeAt === null ? null : now + (p.wakeAt - serverNow),
      more: p.more,
    };
  }

  /**
   * A pump made along with an enqueue or a release, as the scheduler's PumpResult: results held over
   * from an earlier refused enqueue go with it; when its batch cap was reached the scheduler is woken at
   * once to pump the rest.
   */
  private pumpedResult(p: PumpFields, now: number): PumpResult {
    const held = this.takeHeldOver();
    const displaced = held === null ? (p.displaced ?? []) : [...held.displaced, ...(p.displaced ?? [])];
    const result: PumpResult = {
      grants: held === null ? p.grants : [...held.grants, ...p.grants],
      expired: held === null ? p.expired : [...held.expired, ...p.expired],
      cooldownsEnded: held === null ? p.cooldownsEnded : [...held.cooldownsEnded, ...p.cooldownsEnded],
      waiting: p.waiting,
      nextWakeAt: p.more ? now : p.nextWakeAt,
    };
    if (displaced.length > 0) result.displaced = displaced;
    return result;
  }

  /** The held-over results, now the caller's to deliver; null when there are none. */
  private takeHeldOver(): (Delivery & { cooldownsEnded: string[] }) | null {
    const held = this.heldOver;
    if (held.grants.length === 0 && held.expired.length === 0 && held.displaced.length === 0 && held.cooldownsEnded.length === 0) return null;
    this.heldOver = { grants: [], expired: [], displaced: [], cooldownsEnded: [] };
    return held;
  }

  /**
   * Keeps the grants and expiries this process should deliver: each grant once, only to a request still
   * waiting here. A grant nobody here waits for any more is given back at once.
   */
  private accept(grants: Grant[], endings: Endings): Delivery {
    const { expired, displaced } = endings;
    if (grants.length > 0 && (this.leaseLost || performance.now() > this.leaseSafeUntil)) {
      // Fenced: the lease may have lapsed since these were made (see leaseSafeUntil). The waiters stay;
      // sync delivers the grants Redis still holds for them and re-queues those whose grant was reaped.
      this.needsSync = true;
      if (!this.syncing) setImmediate(() => void this.syncIfNeeded());
      grants = [];
    }
    const kept: Grant[] = [];
    for (const g of grants) {
      if (this.delivered.has(g.grantId) || this.releasing.has(g.grantId) || this.pendingReleases.has(g.grantId)) continue;
      if (this.waiting.delete(g.requestId)) {
        this.delivered.add(g.grantId);
        kept.push(g);
      } else {
        this.release(g, { kind: 'cancelled' }, this.clientNow()).catch(noop);
      }
    }
    return {
      grants: kept,
      expired: expired.filter((id) => this.waiting.delete(id)),
      displaced: displaced.length === 0 ? displaced : displaced.filter((d) => this.waiting.delete(d.id)),
    };
  }

  private deliverRemote(result: Delivery): void {
    if (result.grants.length === 0 && result.expired.length === 0 && result.displaced.length === 0) return;
    if (this.listener === null) {
      this.undelivered.grants.push(...result.grants);
      this.undelivered.expired.push(...result.expired);
      this.undelivered.displaced.push(...result.displaced);
      return;
    }
    this.listener.remote(result.displaced.length === 0 ? { grants: result.grants, expired: result.expired } : result);
  }

  // ---------------------------------------------------------------------------------------------------
  // SchedulerStore

  enqueue(entry: WaiterEntry, now: number): Promise<EnqueueResult> {
    // With pumpOnEnqueue the script already pumped before judging the queue full.
    if (this.enqueueCap !== '' || entry.seq !== undefined) return this.enqueueOnce(entry, now, true);
    return this.enqueueThenPump(entry, now);
  }

  private async enqueueThenPump(entry: WaiterEntry, now: number): Promise<EnqueueResult> {
    // A full queue is judged after a grant step: only then may the arrival displace a worse waiter.
    const result = await this.enqueueOnce(entry, now, false);
    if (result.accepted) return result;
    // As in MemoryStore: a burst can fill the queue before a pump runs. Grant what capacity allows
    // (delivered like any other pump's grants) and judge the queue full only after that.
    // Its grants and expiries are handed out by the next pump, which earlier enqueues have requested.
    const pumped = await this.pump(now);
    this.heldOver.grants.push(...pumped.grants);
    this.heldOver.expired.push(...pumped.expired);
    if (pumped.displaced !== undefined) this.heldOver.displaced.push(...pumped.displaced);
    this.heldOver.cooldownsEnded.push(...pumped.cooldownsEnded);
    return this.enqueueOnce(entry, now, true);
  }

  private async enqueueOnce(entry: WaiterEntry, now: number, displace: boolean): Promise<EnqueueResult> {
    checkIdentifier('request id', entry.id);
    if (this.waiting.has(entry.id)) throw new Error(`request ${entry.id} is already waiting`);
    // Known locally before Redis answers: a grant may come back before the reply does.
    const local: LocalWaiter = { entry: { ...entry }, op: ++this.ops };
    this.waiting.set(entry.id, local);
    let r: Sent<ReturnType<typeof decodeEnqueueReply>>;
    try {
      r = await this.call('enqueue', this.enqueueArgs(entry, now, this.enqueueCap, displace), decodeEnqueueReply);
    } catch (e) {
      if (this.waiting.get(entry.id) === local) this.waiting.delete(entry.id);
      this.failed(e);
      this.takeEarly(local);
      throw e;
    }
    // Run past its not-after time: nothing was queued, and the lease was not renewed.
    const late = r.outcome === 'late';
    const serverNow = this.head(r, now, !late);
    if (r.outcome === 'late') {
      if (this.waiting.get(entry.id) === local) this.waiting.delete(entry.id);
      this.takeEarly(local);
      throw new Error(`the enqueue of ${entry.id} reached Redis after its command timeout; nothing was queued`);
    }
    if (r.outcome === 'accepted') {
      local.entry.seq = r.seq;
      local.entry.round = r.round;
      local.counter = r.counter;
    } else if (this.waiting.get(entry.id) === local) {
      this.waiting.delete(entry.id);
    }
    // The pump runs after the waiter is known locally, so a grant of it in the same step is accepted.
    const pumped = r.pump === null ? undefined : this.pumpFields(r.pump, now, serverNow);
    // Handed out with this enqueue's own results (or by the pump the scheduler runs after an
    // acceptance), so the request hears of its acceptance first, as when the message comes later.
    this.heldOver.grants.push(...this.takeEarly(local));
    if (r.outcome === 'refused') {
      if (pumped !== undefined) {
        // Taken from Redis already: handed out by the next pump, which this asks for.
        this.heldOver.grants.push(...pumped.grants);
        this.heldOver.expired.push(...pumped.expired);
        this.heldOver.displaced.push(...(pumped.displaced ?? []));
        this.heldOver.cooldownsEnded.push(...pumped.cooldownsEnded);
        if (pumped.grants.length > 0 || pumped.expired.length > 0 || (pumped.displaced?.length ?? 0) > 0 || pumped.cooldownsEnded.length > 0) this.queueChanged();
      }
      const refused: EnqueueResult = { accepted: false, reason: r.reason, retryAfterMs: r.retryAfterSeconds * 1000 };
      if (r.reason === 'upstream_unavailable' && r.message !== '') refused.message = r.message;
      return refused;
    }
    // The estimated grant time, on the caller's clock.
    const eta = r.etaAt === null ? null : now + (r.etaAt - serverNow);
    const result: EnqueueResult = { accepted: true, seq: r.seq, position: r.position, priority: entry.priority, round: r.round, etaAt: eta };
    if (pumped !== undefined) result.pumped = this.pumpedResult(pumped, now);
    return result;
  }

  private enqueueArgs(entry: WaiterEntry, now: number, cap: string, displace = false): (string | number)[] {
    if (!Number.isFinite(entry.priority)) throw new Error(`priority must be a finite number, got ${entry.priority}`);
    // Its times relative to now (enqueue.lua: ms waited, ms left), as the script computed them before.
    const at = Math.round(now);
    return [
      entry.id,
      String(entry.priority),
      entry.tenant,
      at - Math.round(Math.min(entry.enqueuedAt, now)),
      Math.round(Math.min(entry.deadline, now + FAR_FUTURE_MS)) - at,
      Math.max(0, Math.ceil(entry.tokens)),
      entry.seq === undefined ? '' : entry.seq,
      entry.round === undefined ? '' : entry.round,
      this.rankOf(entry),
      cap,
      this.enqueueNotAfter(),
      displace ? '1' : '',
    ];
  }

  /** The Redis time after which this enqueue, sent now, must not run ('' when there is no limit yet). */
  private enqueueNotAfter(): string {
    const expires = this.options.enqueueExpiresMs;
    if (expires === undefined) return '';
    if (this.options.scriptClock !== undefined) return String(Math.round(this.options.scriptClock.now() + expires));
    if (Number.isNaN(this.redisLag)) return '';
    return String(Math.round(Date.now() - this.redisLag + expires));
  }

  /** The queue score: orderRank on the Redis time base; '' lets the script convert (offset unknown yet). */
  private rankOf(entry: WaiterEntry): string {
    const aging = this.options.priorityAgingMs;
    if (aging === undefined) return String(orderRank(entry.priority, entry.enqueuedAt, undefined));
    if (this.stableOffset === null) return '';
    return String(orderRank(entry.priority, Math.round(entry.enqueuedAt - this.stableOffset), aging));
  }

  async remove(id: string, now: number): Promise<boolean> {
    this.waiting.delete(id);
    this.ops += 1;
    let r: Sent<ReturnType<typeof decodeRemoveReply>>;
    try {
      r = await this.call('remove', [id], decodeRemoveReply);
    } catch (e) {
      this.failed(e);
      throw e;
    }
    this.head(r, now);
    return r.removed;
  }

  async pump(now: number): Promise<PumpResult> {
    const held = this.takeHeldOver();
    const grants: Grant[] = held?.grants ?? [];
    const expired: string[] = held?.expired ?? [];
    const displaced: Displaced[] = held?.displaced ?? [];
    const cooldownsEnded: string[] = held?.cooldownsEnded ?? [];
    let waiting = 0;
    let nextWakeAt: number | null = null;
    for (let call = 0; ; call++) {
      let r: Sent<ReturnType<typeof decodePumpReply>>;
      try {
        r = await this.call('pump', [this.batch], decodePumpReply);
      } catch (e) {
        this.failed(e);
        // Redis unreachable: its expiry cannot run, so this instance times out its own overdue waiters
        // (reconciliation later removes them from Redis).
        const overdue = this.expireLocally(now);
        // Grants of earlier calls are already taken from Redis: deliver them, and come back soon.
        if (call === 0) {
          // Results held over from an enqueue are already taken from Redis: they must still arrive.
          this.deliverRemote({ grants, expired: [...expired, ...overdue], displaced });
          throw e;
        }
        expired.push(...overdue);
        return withDisplaced({ grants, expired, cooldownsEnded, waiting, nextWakeAt: now }, displaced);
      }
      const serverNow = this.head(r, now, true);
      const p = this.pumpFields(r.pump, now, serverNow);
      waiting = p.waiting;
      grants.push(...p.grants);
      expired.push(...p.expired);
      if (p.displaced !== undefined) displaced.push(...p.displaced);
      cooldownsEnded.push(...p.cooldownsEnded);
      nextWakeAt = p.nextWakeAt;
      if (!p.more) break;
      if (call + 1 >= MAX_PUMP_CALLS) {
        nextWakeAt = now;
        break;
      }
    }
    return withDisplaced({ grants, expired, cooldownsEnded, waiting, nextWakeAt }, displaced);
  }

  private expireLocally(now: number): string[] {
    const overdue: string[] = [];
    for (const w of this.waiting.values()) if (w.entry.deadline <= now) overdue.push(w.entry.id);
    for (const id of overdue) this.waiting.delete(id);
    if (overdue.length > 0) this.needsSync = true;
    return overdue;
  }

  /**
   * Ends a grant exactly once. With `pump: true` the freed capacity is granted in the same script and
   * the result returned as `pumped`; without it nothing else is granted (a retrying request releases,
   * then re-enqueues: its slot must not go to a waiter behind it first).
   */
  async release(grant: Grant, outcome: ReleaseOutcome, now: number, options?: { pump?: boolean }): Promise<ReleaseResult> {
    const gid = grant.grantId;
    // Exactly once: a release already on its way makes a second one a no-op (Redis checks too).
    if (this.releasing.has(gid) || this.closed) return {};
    this.releasing.add(gid);
    this.pendingReleases.delete(gid);
    const pump = options?.pump === true;
    let r: Sent<ReturnType<typeof decodeReleaseReply>>;
    try {
      r = await this.call('release', this.releaseArgs(grant, outcome, pump ? String(this.batch) : ''), decodeReleaseReply);
    } catch (e) {
      // Keep it: the slot is given back once Redis answers again (the script is idempotent).
      this.pendingReleases.set(gid, { grant, outcome });
      this.failed(e);
      throw e;
    } finally {
      this.releasing.delete(gid);
    }
    const pumped = r.pump !== null;
    const serverNow = this.head(r, now, pumped);
    this.delivered.delete(gid);
    const result: ReleaseResult = {};
    if (r.cooldownUntil !== null) result.cooldown = { deploymentId: grant.deploymentId, until: now + (r.cooldownUntil - serverNow), reason: r.cooldownReason };
    if (r.upstreamBlockedUntil !== null) {
      result.upstreamLimited = { deploymentId: grant.deploymentId, until: now + (r.upstreamBlockedUntil - serverNow), reason: r.upstreamBlockReason };
    }
    if (r.pump !== null) result.pumped = this.pumpedResult(this.pumpFields(r.pump, now, serverNow), now);
    return result;
  }

  private releaseArgs(grant: Grant, outcome: ReleaseOutcome, pumpCap: string): string[] {
    const used = outcome.kind === 'ok' && outcome.tokensUsed !== undefined ? String(Math.max(0, Math.round(outcome.tokensUsed))) : '';
    const failure = outcome.kind === 'failed' ? outcome.failure : '';
    let retryAfter = '';
    if (outcome.kind === 'failed' && outcome.retryAfterMs !== undefined) {
      // As DeploymentState: an upstream's Retry-After never cools down longer than MAX_COOLDOWN_MS.
      const cap = Math.max(MAX_COOLDOWN_MS, this.options.cooldown.cooldownTimeMs);
      retryAfter = String(Math.round(Math.min(outcome.retryAfterMs, cap)));
    }
    const block = outcome.kind === 'cancelled' ? undefined : outcome.upstreamBlock;
    // Travels inside tab-separated mail records: no tab or NUL.
    const message = outcome.kind === 'failed' && outcome.message !== undefined ? outcome.message.replace(/[\t\0\r\n]/g, ' ').slice(0, 500) : '';
    // The grant's deployment and reserved tokens as its record holds them: release.lua reads no record.
    const blockMs = block === undefined ? '' : String(Math.round(block.forMs));
    return [grant.grantId, outcome.kind, used, failure, retryAfter, pumpCap, blockMs, block?.reason ?? '', message, grant.deploymentId, String(grant.tokens)];
  }

  async position(id: string): Promise<number | null> {
    const r = await this.call('position', [id], decodePositionReply);
    this.head(r);
    return r.position;
  }

  async snapshot(now: number, maxWaiters = 50): Promise<GroupSnapshot> {
    const r = await this.call('snapshot', [Math.max(0, Math.floor(maxWaiters))], (reply) => decodeSnapshotReply(reply, this.options.deployments.length));
    const serverNow = this.head(r, now);
    const aging = this.options.priorityAgingMs;
    const depthByPriority: Record<string, number> = {};
    for (const [p, n] of [...r.depth].sort((a, b) => a[0] - b[0])) depthByPriority[String(p)] = n;
    const deployments = this.options.deployments.map((d, i): DeploymentUsage => {
      const u = r.deployments[i];
      const state: DeploymentUsage = {
        id: d.id,
        inFlight: u.inFlight,
        maxParallelRequests: d.limits.maxParallelRequests ?? null,
        rpmUsed: u.rpmUsed,
        rpm: d.limits.rpm ?? null,
        tpmUsed: u.tpmUsed,
        tpm: d.limits.tpm ?? null,
        coolingDownUntil: u.coolingDownUntil === null ? null : now + (u.coolingDownUntil - serverNow),
        upstreamBlockedUntil: u.upstreamBlockedUntil === null ? null : now + (u.upstreamBlockedUntil - serverNow),
        headroom: null,
      };
      state.headroom = deploymentHeadroom(state);
      return state;
    });
    const waiters: WaiterView[] = r.waiters.map((w, position) => ({
      id: w.id,
      position,
      priority: w.priority,
      round: w.round,
      seq: w.seq,
      effectivePriority: effectivePriority(w.priority, w.enqueuedAt, serverNow, aging),
      tenant: w.tenant,
      waitedMs: Math.max(0, serverNow - w.enqueuedAt),
      etaMs: w.etaAt === null ? null : Math.max(0, w.etaAt - serverNow),
    }));
    return {
      model: this.model,
      waiting: r.waiting,
      depthByPriority,
      oldestWaitMs: r.oldestEnqueuedAt === null ? 0 : Math.max(0, serverNow - r.oldestEnqueuedAt),
      inFlight: deployments.reduce((n, d) => n + d.inFlight, 0),
      deployments,
      waiters,
    };
  }

  async retryAfterSeconds(now: number): Promise<number> {
    const r = await this.call('retry_after', [], decodeRetryAfterReply);
    this.head(r, now);
    return r.seconds;
  }

  setListener(listener: StoreListener): void {
    this.listener = listener;
    const pending = this.undelivered;
    if (pending.grants.length > 0 || pending.expired.length > 0 || pending.displaced.length > 0) {
      this.undelivered = { grants: [], expired: [], displaced: [] };
      listener.remote(pending);
    }
  }

  /** Leaves the group cleanly: this instance's waiters are removed and its grants released in Redis. */
  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.call('leave', [], decodeLeaveReply);
    } catch {
      // Redis is unreachable: the lease lapses and the other instances reclaim everything.
    }
    this.closed = true;
    if (this.reapTimer !== undefined) clearTimeout(this.reapTimer);
    this.options.onClose?.(this);
  }

  /** Stops without giving anything back, as a killed process would (crash tests): the lease lapses. */
  abandon(): void {
    this.closed = true;
    if (this.reapTimer !== undefined) clearTimeout(this.reapTimer);
    this.options.onClose?.(this);
  }

  // ---------------------------------------------------------------------------------------------------
  // Called by the connection (factory): heartbeat, notifications, reconnects.

  /** Renews the lease, reaps dead instances, claims mail; reconciles first when something failed. */
  async heartbeat(): Promise<void> {
    if (this.closed) return;
    if (this.needsSync || this.pendingReleases.size > 0) return this.sync();
    return this.claim().catch(noop);
  }

  /** Another instance put grants or expiries in this instance's mailbox. */
  async onMail(): Promise<void> {
    if (this.closed) return;
    return this.claim().catch(noop);
  }

  /**
   * Another instance granted waiters of this one; `payload` carries the grants (see instanceChannel).
   * Each is delivered from the message when it is for a request waiting here since before it was made;
   * one for a waiter whose enqueue has not answered yet is kept until that reply says (takeEarly); any
   * other (a request that left or re-queued, a malformed record), or a message that asks for it (the
   * script left expiries too), makes this instance claim its mail, which decides it atomically. The
   * grants stay in the mailbox until the next claim, which recognises them as delivered.
   */
  onGrants(payload: string): void {
    if (this.closed) return;
    const grants: Grant[] = [];
    const decoded = decodeGrantRecords(payload);
    let claim = decoded.unreadable > 0 || decoded.claim;
    for (const g of this.local(decoded.grants)) {
      const w = this.waiting.get(g.requestId);
      if (w !== undefined && w.counter === undefined) (w.early ??= []).push(g);
      else if (w !== undefined && madeForWait(w, g)) grants.push(g);
      else if (!this.delivered.has(g.grantId)) claim = true;
    }
    if (grants.length > 0) this.deliverRemote(this.accept(grants, { expired: [], displaced: [] }));
    if (claim) this.claim().catch(noop);
  }

  /**
   * Judges the grants a message announced for `w` before its enqueue answered: those made for this wait
   * (the waiter still here, the grant counter past the enqueue's) are accepted and returned for the
   * caller to hand out; for any other (the enqueue failed or was refused, the request left, a grant of
   * an earlier life) the mail decides, as in onGrants.
   */
  private takeEarly(w: LocalWaiter): Grant[] {
    const early = w.early;
    if (early === undefined) return [];
    w.early = undefined;
    const fresh: Grant[] = [];
    let claim = false;
    for (const g of early) {
      if (this.waiting.get(g.requestId) === w && madeForWait(w, g)) fresh.push(g);
      else if (!this.delivered.has(g.grantId)) claim = true;
    }
    if (claim) this.claim().catch(noop);
    return fresh.length === 0 ? fresh : this.accept(fresh, { expired: [], displaced: [] }).grants;
  }

  /** Another instance freed capacity (it left): pump. */
  onChanged(): void {
    this.queueChanged();
  }

  /** The connection is back: retry failed releases, reconcile, pump. */
  async recover(): Promise<void> {
    if (this.closed) return;
    this.needsSync = true;
    await this.sync();
  }

  private async claim(): Promise<void> {
    if (this.claiming) {
      this.claimAgain = true;
      return;
    }
    this.claiming = true;
    try {
      do {
        this.claimAgain = false;
        let r: Sent<ReturnType<typeof decodeClaimReply>>;
        try {
          r = await this.call('claim', [], decodeClaimReply);
        } catch (e) {
          this.failed(e);
          throw e;
        }
        const serverNow = this.head(r, undefined, true);
        this.deliverRemote(this.accept(this.local(r.grants), r.endings));
        this.scheduleReap(r.nextLeaseEnd, serverNow);
      } while (this.claimAgain && !this.closed);
    } finally {
      this.claiming = false;
    }
  }

  /**
   * Claims again just after the earliest other lease ends (`end`, server ms, '' = none): if that
   * instance is dead, its waiters and slots come back at its lease's end rather than up to a heartbeat
   * later. Live instances renew first, so each heartbeat moves the timer on; one timer per group.
   */
  private scheduleReap(end: number | null, serverNow: number): void {
    if (this.reapTimer !== undefined) clearTimeout(this.reapTimer);
    this.reapTimer = undefined;
    if (end === null || this.closed) return;
    // A few ms past the end: the script's clock must read past it (a lease ending at NOW is reaped).
    const delay = Math.max(0, end - serverNow) + 5;
    this.reapTimer = setTimeout(() => {
      this.reapTimer = undefined;
      if (!this.closed) this.claim().catch(noop);
    }, delay);
    this.reapTimer.unref();
  }

  private async syncIfNeeded(): Promise<void> {
    if (this.needsSync || this.pendingReleases.size > 0) await this.sync();
  }

  /**
   * Reconciles this process with what Redis holds for it: retries failed releases; delivers grants
   * and expiries it never received (a reply lost to a timeout or a dropped connection); gives back
   * grants for requests that no longer wait here; removes waiters Redis has that this process
   * forgot; re-queues, at their old place, waiters Redis lost (lease reclaimed, Redis restarted empty).
   */
  private async sync(): Promise<void> {
    if (this.syncing || this.closed) return;
    this.syncing = true;
    try {
      for (const [gid, p] of [...this.pendingReleases]) {
        if (this.pendingReleases.get(gid) !== p) continue;
        await this.release(p.grant, p.outcome, this.clientNow());
      }
      const mark = this.ops;
      let r: Sent<ReturnType<typeof decodeSyncReply>>;
      try {
        r = await this.call('sync', [], decodeSyncReply);
      } catch (e) {
        this.failed(e);
        throw e;
      }
      // This answer already reflects a lost lease: reconciling it here is the whole remedy.
      this.head(r, undefined, true);
      this.needsSync = false;
      this.leaseLost = false;
      const inRedis = new Set(r.waiterIds);
      const grants = this.local(r.grants);
      const { expired, displaced } = r.endings;
      const settled = new Set<string>([...grants.map((g) => g.requestId), ...expired, ...displaced.map((d) => d.id)]);
      const delivered = this.accept(grants, { expired: expired.filter((id) => !inRedis.has(id)), displaced: displaced.filter((d) => !inRedis.has(d.id)) });
      const lost: LocalWaiter[] = [];
      for (const w of this.waiting.values()) {
        if (w.op <= mark && !inRedis.has(w.entry.id) && !settled.has(w.entry.id)) lost.push(w);
      }
      for (const id of inRedis) if (!this.waiting.has(id)) this.call('remove', [id], decodeRemoveReply).catch(noop);
      this.deliverRemote(delivered);
      for (const w of lost) void this.requeue(w);
      this.queueChanged();
    } catch {
      this.needsSync = true;
    } finally {
      this.syncing = false;
    }
  }

  /** Puts a waiter Redis lost back at its old place (same seq and round), bypassing the size limit. */
  private async requeue(w: LocalWaiter): Promise<void> {
    if (this.waiting.get(w.entry.id) !== w) return;
    const now = this.clientNow();
    w.op = ++this.ops;
    let r: Sent<ReturnType<typeof decodeEnqueueReply>>;
    try {
      r = await this.call('enqueue', this.enqueueArgs(w.entry, now, ''), decodeEnqueueReply);
    } catch (e) {
      // Already waiting (a concurrent path re-queued it) is fine; anything else: reconcile again later.
      this.failed(e);
      return;
    }
    this.head(r, now, true);
    if (r.outcome !== 'accepted') {
      if (this.waiting.get(w.entry.id) !== w) return;
      // Refused (full queue, never admitted before): it cannot keep a place; answer it as timed out.
      this.waiting.delete(w.entry.id);
      this.deliverRemote({ grants: [], expired: [w.entry.id], displaced: [] });
      return;
    }
    w.entry.seq = r.seq;
    w.entry.round = r.round;
    w.counter = r.counter;
  }
}

