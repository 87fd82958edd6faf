/**
 * Builds the ioredis client for the store's settings: one node (redis_url, or redis_host/redis_port,
 * with redis_db) or a Redis Cluster (redis_startup_nodes / REDIS_CLUSTER_NODES), with what managed Redis
 * needs: TLS (a rediss:// URL or redis_ssl: true; redis_ssl_ca_certs or the system CAs) and an ACL user
 * (redis_username + redis_password).
 */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { RedisSettings } from '../core/config-types.js';

export type RedisClient = Redis | Cluster;

export function isCluster(client: RedisClient): client is Cluster {
  return (client as Cluster).isCluster === true;
}

export function clientKind(settings: RedisSettings): 'cluster' | 'node' {
  return settings.clusterNodes !== undefined && settings.clusterNodes.length > 0 ? 'cluster' : 'node';
}

/** TLS options, or undefined when TLS is off. A rediss:// URL turns it on as redis_ssl: true does. */
export function tlsOptions(settings: RedisSettings): ConnectionOptions | undefined {
  const on = settings.ssl ?? (settings.url !== undefined && settings.url.startsWith('rediss://'));
  if (!on) return undefined;
  // Without a CA file Node's default trust store (the system CAs bundled with Node) applies.
  return settings.sslCaCerts === undefined ? {} : { ca: readFileSync(settings.sslCaCerts) };
}

/** Credentials and TLS shared by every connection (each cluster node too). */
function commonOptions(settings: RedisSettings): RedisOptions {
  const options: RedisOptions = {};
  const tls = tlsOptions(settings);
  if (tls !== undefined) options.tls = tls;
  if (settings.username !== undefined) options.username = settings.username;
  if (settings.password !== undefined) options.password = settings.password;
  return options;
}

/** One node: the URL's own credentials and db win over the separate settings, as redis-py does. */
function connectNode(settings: RedisSettings, extra: RedisOptions): Redis {
  const options: RedisOptions = { ...commonOptions(settings), ...extra };
  if (settings.db !== undefined) options.db = settings.db;
  if (settings.url !== undefined) {
    const url = new URL(settings.url);
    if (url.password !== '') delete options.password;
    if (url.username !== '') delete options.username;
    if (url.pathname.length > 1) delete options.db;
    return new Redis(settings.url, options);
  }
  options.host = settings.host ?? '127.0.0.1';
  options.port = settings.port ?? 6379;
  return new Redis(options);
}

export interface ClientOptions {
  /** Options of each node connection (timeouts, retries, offline queue). */
  node: RedisOptions;
  /** The subscriber of a cluster: sharded subscribers, one connection per master. */
  subscriber?: boolean;
  maxReconnectDelayMs: number;
}

function connectCluster(settings: RedisSettings, o: ClientOptions): Cluster {
  const { enableOfflineQueue, ...node } = o.node;
  const retry = (times: number) => Math.min(50 * times, o.maxReconnectDelayMs);
  const options: ClusterOptions = {
    redisOptions: { ...commonOptions(settings), ...node },
    enableOfflineQueue: enableOfflineQueue ?? true,
    clusterRetryStrategy: retry,
    // A node that restarts keeps its slots: reconnect to it rather than wait for a topology change.
    clusterNodeRetryStrategy: retry,
    // Slots move (resharding) and nodes come back: notice within a second without an error first.
    slotsRefreshInterval: 1000,
    slotsRefreshTimeout: 1000,
    retryDelayOnTryAgain: 20,
    retryDelayOnMoved: 0,
    retryDelayOnClusterDown: 100,
    retryDelayOnFailover: 100,
    shardedSubscribers: o.subscriber === true,
  };
  // Certificates name the host the client was given, not the address a node reports for itself.
  if (options.redisOptions?.tls !== undefined) options.dnsLookup = (address, callback) => callback(null, address);
  return new Cluster(
    settings.clusterNodes!.map((n) => ({ host: n.host, port: n.port })),
    options,
  );
}

export function connectClient(settings: RedisSettings, o: ClientOptions): RedisClient {
  return clientKind(settings) === 'cluster' ? connectCluster(settings, o) : connectNode(settings, o.node);
}
