/**
 * One instance's link to the shared Redis: a command connection, a subscriber connection, one
 * heartbeat timer, and the StoreFactory the router uses to build a RedisStore per model group.
 *
 *   const redis = createRedisStoreFactory(config.router.redis!, { instanceId });
 *   await redis.whenReady();
 *   const router = createRouter(config, { storeFactory: redis.storeFactory });
 *   ...
 *   await router.close();
 *   await redis.close();
 *
 * Fail closed: commands are not queued while Redis is unreachable (no offline queue, no per-request
 * retries, a command timeout), so every store call rejects promptly and the gateway answers 503
 * store_unavailable; no grant is made without Redis, because the limits shared with the other
 * instances could not be guaranteed. The connections reconnect by themselves; on reconnect each store
 * reconciles with Redis (see RedisStore.recover) and pumps.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Cluster, Redis } from 'ioredis';
import type { RedisSettings } from '../core/config-types.js';
import type { Clock } from '../core/clock.js';
import type { StoreFactory } from '../machines/scheduler-store.js';
import type { KeyRateCheck } from '../core/key-rate.js';
import { redisKeyRate } from './redis-key-rate.js';
import { clientKind, connectClient, type RedisClient } from './redis-client.js';
import { checkIdentifier, groupChannel, instanceChannel, RedisStore } from './redis-store.js';
import { decodeChannelMessage, type ChannelMessage } from './redis-protocol.js';
import { WriteBatch } from './redis-write-batch.js';

export interface RedisStoreFactoryOptions {
  /** This process's id among the instances (default: host, pid and a random suffix). */
  instanceId?: string;
  /** Lease length, ms (default DEFAULT_LEASE_MS, 4000). A killed instance's waiters and grants are reclaimed after it. */
  leaseMs?: number;
  /** A command without an answer this long fails (default 2000 ms). */
  commandTimeoutMs?: number;
  /** Connect attempt timeout (default 2000 ms). */
  connectTimeoutMs?: number;
  /** Longest pause between reconnect attempts (default 1000 ms). */
  maxReconnectDelayMs?: number;
  /** Grants per pump script call (default 256). */
  pumpBatch?: number;
  /** Grant in the same script as each enqueue, returned as `pumped` (default true; see RedisStoreOptions). */
  pumpOnEnqueue?: boolean;
  /** Tests only: the scripts' time comes from this clock (see RedisStoreOptions.scriptClock). */
  scriptClock?: Clock;
}

export interface RedisStoreFactory {
  readonly instanceId: string;
  readonly storeFactory: StoreFactory;
  /** The command connection is up. */
  ready(): boolean;
  /** Resolves once the command connection is up; rejects after `timeoutMs`. */
  whenReady(timeoutMs?: number): Promise<void>;
  /** The last connection error, if any (for status pages and logs). */
  readonly lastError: Error | null;
  /** Stores built and not closed yet, by model group. */
  readonly stores: ReadonlyMap<string, RedisStore>;
  /** Virtual keys' rpm, counted once for all instances on the prefix. */
  readonly keyRate: KeyRateCheck;
  /** Leaves every group cleanly (waiters removed, grants released) and closes the connections. */
  close(): Promise<void>;
  /** Drops the connections without giving anything back, as `kill -9` would (crash tests). */
  abandon(): void;
}

/** The default lease: a killed instance's waiters and slots come back when it ends (3-4 s after a kill). */
export const DEFAULT_LEASE_MS = 4000;
/** Heartbeats per lease: a stalled event loop is not taken for a dead instance until it misses 3 of them. */
const HEARTBEATS_PER_LEASE = 4;

export function createRedisStoreFactory(settings: RedisSettings, options: RedisStoreFactoryOptions = {}): RedisStoreFactory {
  const instanceId = options.instanceId ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  checkIdentifier('instance id', instanceId);
  const leaseMs = Math.max(50, options.leaseMs ?? DEFAULT_LEASE_MS);
  const prefix = settings.prefix;
  const cluster = clientKind(settings) === 'cluster';
  // One node: one channel per instance (the message names the group). A cluster: one per group and
  // instance, in the group's slot (its hash tag), so the group's scripts SPUBLISH to it on its shard.
  const channel = instanceChannel(prefix, instanceId);
  const channelOf = (model: string) => (cluster ? groupChannel(prefix, model, instanceId) : channel);
  const maxReconnectDelayMs = options.maxReconnectDelayMs ?? 1000;
  const retryStrategy = (times: number) => Math.min(50 * times, maxReconnectDelayMs);
  const commandTimeoutMs = options.commandTimeoutMs ?? 2000;

  const redis = connectClient(settings, {
    maxReconnectDelayMs,
    node: {
      // Fail fast, never hang: no offline queue, no resend of unanswered commands, a command timeout.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout: commandTimeoutMs,
      connectTimeout: options.connectTimeoutMs ?? 2000,
      retryStrategy,
    },
  });
  // Commands of one turn, from every store, leave in one write.
  const writes = new WriteBatch(redis);
  const sub = connectClient(settings, {
    maxReconnectDelayMs,
    subscriber: true,
    node: {
      // The subscriber only carries wake-ups; it resubscribes itself on every (re)connect.
      autoResubscribe: cluster,
      maxRetriesPerRequest: null,
      connectTimeout: options.connectTimeoutMs ?? 2000,
      retryStrategy,
    },
  });

  const stores = new Map<string, RedisStore>();
  let lastError: Error | null = null;
  let closed = false;

  redis.on('error', (e: Error) => {
    lastError = e;
  });
  sub.on('error', (e: Error) => {
    lastError = e;
  });
  redis.on('ready', () => {
    lastError = null;
    // (Re)connected: reconcile each group (failed releases, lost replies, a Redis that restarted empty).
    for (const store of stores.values()) void store.recover();
  });
  const subscribe = (models: readonly string[]) => {
    if (cluster && models.length === 0) return;
    const done = cluster
      ? // Sharded channels of different slots go in separate SSUBSCRIBEs (each to its own shard).
        Promise.all(models.map((m) => (sub as Cluster).ssubscribe(channelOf(m))))
      : (sub as Redis).subscribe(channel);
    done.then(
      // Notifications sent while we were not subscribed are lost; the mail they announced is not.
      () => {
        for (const m of models) void stores.get(m)?.onMail();
      },
      () => {},
    );
  };
  sub.on('ready', () => subscribe([...stores.keys()]));
  const onMessage = (ch: string, message: string) => {
    let m: ChannelMessage;
    try {
      m = decodeChannelMessage(message);
    } catch {
      // Not a message of ours (redis-protocol.ts): nothing to do; the heartbeat claims mail anyway.
      return;
    }
    const store = stores.get(m.model);
    if (store === undefined || ch !== channelOf(store.model)) return;
    if (m.kind === 'grants') store.onGrants(m.records);
    else if (m.kind === 'mail') void store.onMail();
    else store.onChanged();
  };
  sub.on(cluster ? 'smessage' : 'message', onMessage);

  const timer = setInterval(() => {
    for (const store of stores.values()) void store.heartbeat();
  }, Math.max(10, Math.floor(leaseMs / HEARTBEATS_PER_LEASE)));
  timer.unref();

  const storeFactory: StoreFactory = (model, deployments, config) => {
    if (closed) throw new Error('the Redis connection is closed');
    if (stores.has(model)) throw new Error(`instance ${instanceId} already has an open store for model group ${model}`);
    const r = config.router;
    const store = new RedisStore({
      redis,
      writes,
      prefix,
      sharded: cluster,
      model,
      deployments,
      maxQueueSize: r.maxQueueSize,
      ...(r.maxQueueSizeByPriority !== undefined ? { maxQueueSizeByPriority: r.maxQueueSizeByPriority } : {}),
      ...(r.priorityAgingMs !== undefined ? { priorityAgingMs: r.priorityAgingMs } : {}),
      cooldown: { cooldownTimeMs: r.cooldownTimeMs, allowedFails: r.allowedFails },
      instanceId,
      leaseMs,
      ...(options.pumpBatch !== undefined ? { pumpBatch: options.pumpBatch } : {}),
      ...(options.pumpOnEnqueue !== undefined ? { pumpOnEnqueue: options.pumpOnEnqueue } : {}),
      ...(options.scriptClock !== undefined ? { scriptClock: options.scriptClock } : {}),
      // An enqueue run after its call timed out changes nothing (its request was answered 503 already).
      enqueueExpiresMs: commandTimeoutMs,
      onClose: (s) => {
        if (stores.get(model) === s) stores.delete(model);
      },
    });
    stores.set(model, store);
    if (cluster && sub.status === 'ready') subscribe([model]);
    // Take the lease (and reconcile with anything a previous holder of this id left) right away.
    if (redis.status === 'ready') void store.heartbeat();
    return store;
  };

  const disconnect = async (conn: RedisClient) => {
    try {
      if (conn.status === 'ready') await conn.quit();
    } catch {
      // Unreachable: just drop the socket.
    }
    conn.disconnect();
  };

  const keyRate = redisKeyRate(redis, prefix);

  return {
    instanceId,
    storeFactory,
    keyRate,
    get lastError() {
      return lastError;
    },
    get stores() {
      return stores;
    },
    ready: () => redis.status === 'ready',
    whenReady(timeoutMs = 5000) {
      if (redis.status === 'ready') return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const onReady = () => {
          clearTimeout(t);
          resolve();
        };
        const t = setTimeout(() => {
          redis.off('ready', onReady);
          reject(new Error(`Redis not reachable within ${timeoutMs} ms${lastError ? `: ${lastError.message}` : ''}`));
        }, timeoutMs);
        redis.once('ready', onReady);
      });
    },
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      await Promise.all([...stores.values()].map((s) => s.close()));
      await Promise.all([disconnect(redis), disconnect(sub)]);
    },
    abandon() {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      for (const s of [...stores.values()]) s.abandon();
      redis.disconnect();
      sub.disconnect();
    },
  };
}
