/**
 * The router_settings keys of a managed or clustered Redis, read apart from the loader's core keys:
 * `redis_startup_nodes` (LiteLLM's name for cluster start-up nodes; a list of {host, port}, or the
 * `REDIS_CLUSTER_NODES` environment form `host:port,host:port`), `redis_username` (an ACL user),
 * `redis_db` (single node only), `redis_ssl` and `redis_ssl_ca_certs` (TLS, with a CA bundle file or
 * the system CAs).
 */
import { existsSync } from 'node:fs';
import type { ConfigIssue, RedisExtras, RedisNode } from '../core/config-types.js';
import {
  checkBoolean,
  checkNonEmptyString,
  checkNonNegativeInteger,
  childPath,
  describeValue,
  isAbsent,
  isMap,
  optionalField,
  reportUnresolved,
  Unresolved,
  type RawMap,
} from './config-checks.js';

export const REDIS_EXTRA_KEYS = ['redis_startup_nodes', 'redis_username', 'redis_db', 'redis_ssl', 'redis_ssl_ca_certs'] as const;

/** The environment variable LiteLLM reads for cluster start-up nodes. */
export const CLUSTER_NODES_ENV = 'REDIS_CLUSTER_NODES';

const PORT_TEXT = /^\d{1,5}$/;

function nodeFromText(text: string): RedisNode | undefined {
  const cut = text.lastIndexOf(':');
  if (cut <= 0) return undefined;
  const host = text.slice(0, cut).trim().replace(/^\[(.*)\]$/, '$1');
  const portText = text.slice(cut + 1).trim();
  const port = Number(portText);
  if (host === '' || !PORT_TEXT.test(portText) || port < 1 || port > 65535) return undefined;
  return { host, port };
}

/** `host:port,host:port` (REDIS_CLUSTER_NODES); undefined when any entry is not host:port. */
export function parseClusterNodes(text: string): RedisNode[] | undefined {
  const parts = text.split(',').map((p) => p.trim()).filter((p) => p !== '');
  if (parts.length === 0) return undefined;
  const nodes: RedisNode[] = [];
  for (const p of parts) {
    const n = nodeFromText(p);
    if (n === undefined) return undefined;
    nodes.push(n);
  }
  return nodes;
}

const NODES_EXPECTED = 'a non-empty list of {host, port} (or a "host:port,host:port" string)';

function readNodes(value: unknown, path: string, issues: ConfigIssue[]): RedisNode[] | undefined {
  if (value instanceof Unresolved) return void reportUnresolved(value, path, issues);
  if (typeof value === 'string') {
    const nodes = parseClusterNodes(value);
    if (nodes === undefined) issues.push({ path, message: `expected ${NODES_EXPECTED}, got ${describeValue(value)}` });
    return nodes;
  }
  if (!Array.isArray(value) || value.length === 0) {
    issues.push({ path, message: `expected ${NODES_EXPECTED}, got ${describeValue(value)}` });
    return undefined;
  }
  const nodes: RedisNode[] = [];
  let ok = true;
  value.forEach((item, i) => {
    const at = childPath(path, i);
    if (typeof item === 'string') {
      const n = nodeFromText(item);
      if (n === undefined) {
        issues.push({ path: at, message: `expected {host, port} or "host:port", got ${describeValue(item)}` });
        ok = false;
      } else nodes.push(n);
      return;
    }
    if (!isMap(item)) {
      issues.push({ path: at, message: `expected {host, port}, got ${describeValue(item)}` });
      ok = false;
      return;
    }
    const host = item.host;
    const port = typeof item.port === 'string' && PORT_TEXT.test(item.port) ? Number(item.port) : item.port;
    if (isAbsent(host)) {
      issues.push({ path: childPath(at, 'host'), message: 'is required (a non-empty string)' });
      ok = false;
    } else if (typeof host !== 'string' || host === '') {
      issues.push({ path: childPath(at, 'host'), message: `expected a non-empty string, got ${describeValue(host)}` });
      ok = false;
    }
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
      issues.push({ path: childPath(at, 'port'), message: `expected an integer port from 1 to 65535, got ${describeValue(item.port)}` });
      ok = false;
    }
    if (ok) nodes.push({ host: host as string, port: port as number });
  });
  return ok ? nodes : undefined;
}

/**
 * Reads the extra Redis keys of router_settings (`path`). `env` supplies REDIS_CLUSTER_NODES when
 * redis_startup_nodes is absent. `enabled`: whether these settings turn the Redis store on by
 * themselves (start-up nodes do; the others only refine a redis_url / redis_host).
 */
export function readRedisExtras(
  map: RawMap,
  path: string,
  env: NodeJS.ProcessEnv,
  issues: ConfigIssue[],
  warnings: ConfigIssue[],
): { extras: RedisExtras; enabled: boolean } {
  let clusterNodes: RedisNode[] | undefined;
  if (!isAbsent(map.redis_startup_nodes)) {
    clusterNodes = readNodes(map.redis_startup_nodes, childPath(path, 'redis_startup_nodes'), issues);
  } else if (env[CLUSTER_NODES_ENV] !== undefined && env[CLUSTER_NODES_ENV] !== '') {
    clusterNodes = readNodes(env[CLUSTER_NODES_ENV], `environment ${CLUSTER_NODES_ENV}`, issues);
  }
  const username = optionalField(map, 'redis_username', path, checkNonEmptyString, issues);
  const db = optionalField(map, 'redis_db', path, checkNonNegativeInteger, issues);
  const ssl = optionalField(map, 'redis_ssl', path, checkBoolean, issues);
  const sslCaCerts = optionalField(map, 'redis_ssl_ca_certs', path, checkNonEmptyString, issues);
  if (sslCaCerts !== undefined && !existsSync(sslCaCerts)) {
    issues.push({ path: childPath(path, 'redis_ssl_ca_certs'), message: `no such file: ${JSON.stringify(sslCaCerts)}` });
  }
  if (clusterNodes !== undefined && db !== undefined && db !== 0) {
    // A cluster has database 0 only (SELECT is refused).
    issues.push({ path: childPath(path, 'redis_db'), message: `must be 0 (or absent) with redis_startup_nodes: a Redis Cluster has database 0 only, got ${db}` });
  }
  if (clusterNodes !== undefined) {
    for (const key of ['redis_url', 'redis_host', 'redis_port']) {
      if (!isAbsent(map[key])) warnings.push({ path: childPath(path, key), message: 'ignored: the store runs on the Redis Cluster of redis_startup_nodes' });
    }
  }
  const extras: RedisExtras = {};
  if (clusterNodes !== undefined) extras.clusterNodes = clusterNodes;
  if (username !== undefined) extras.username = username;
  if (db !== undefined) extras.db = db;
  if (ssl !== undefined) extras.ssl = ssl;
  if (sslCaCerts !== undefined) extras.sslCaCerts = sslCaCerts;
  const enabled = !isAbsent(map.redis_startup_nodes) || (env[CLUSTER_NODES_ENV] !== undefined && env[CLUSTER_NODES_ENV] !== '');
  return { extras, enabled };
}
