/** The managed / clustered Redis keys of router_settings (src/adapters/config-redis.ts) through the loader. */
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../src/adapters/config-loader.js';
import { parseClusterNodes } from '../src/adapters/config-redis.js';
import { issuesOf } from './support/config-issues.js';

const model = `model_list:
  - model_name: m
    litellm_params:
      model: mock/m
      mock_response: hi
`;

describe('Redis Cluster and managed Redis settings', () => {
  it('redis_startup_nodes (a list of {host, port}) turns the Redis store on, on a cluster', () => {
    const { config } = parseConfig(`${model}router_settings:\n  redis_startup_nodes: [{ host: r1, port: 7000 }, { host: r2, port: "7001" }]\n  redis_prefix: p`, { env: {} });
    expect(config.router.redis).toEqual({ prefix: 'p', clusterNodes: [{ host: 'r1', port: 7000 }, { host: 'r2', port: 7001 }] });
  });

  it('with redis_startup_nodes, redis_url / redis_host are ignored with a warning', () => {
    const { config, warnings } = parseConfig(`${model}router_settings:\n  redis_url: redis://one:6379\n  redis_startup_nodes: "r1:7000"`, { env: {} });
    expect(config.router.redis?.clusterNodes).toEqual([{ host: 'r1', port: 7000 }]);
    expect(warnings).toEqual([{ path: 'router_settings.redis_url', message: 'ignored: the store runs on the Redis Cluster of redis_startup_nodes' }]);
  });

  it('REDIS_CLUSTER_NODES (host:port,host:port) does the same when redis_startup_nodes is absent', () => {
    const { config } = parseConfig(model, { env: { REDIS_CLUSTER_NODES: 'r1:7000, [::1]:7001' } });
    expect(config.router.redis).toEqual({ prefix: 'triage', clusterNodes: [{ host: 'r1', port: 7000 }, { host: '::1', port: 7001 }] });
    expect(issuesOf(() => parseConfig(model, { env: { REDIS_CLUSTER_NODES: 'r1:7000,r2' } }))).toEqual([
      { path: 'environment REDIS_CLUSTER_NODES', message: 'expected a non-empty list of {host, port} (or a "host:port,host:port" string), got "r1:7000,r2"' },
    ]);
  });

  it('reads redis_username, redis_db, redis_ssl and redis_ssl_ca_certs beside redis_url / redis_host', () => {
    const { config } = parseConfig(
      `${model}router_settings:\n  redis_host: cache\n  redis_username: app\n  redis_password: pw-0000001\n  redis_db: 2\n  redis_ssl: true\n  redis_ssl_ca_certs: ${process.execPath}`,
      { env: {} },
    );
    expect(config.router.redis).toEqual({ host: 'cache', port: 6379, password: 'pw-0000001', prefix: 'triage', username: 'app', db: 2, ssl: true, sslCaCerts: process.execPath });
  });

  it('names the path and value of each bad setting, and refuses to load', () => {
    const issues = issuesOf(() =>
      parseConfig(
        `${model}router_settings:\n  redis_startup_nodes: [{ host: r1, port: 70000 }, { port: 7001 }, 5]\n  redis_db: 1\n  redis_ssl: maybe\n  redis_ssl_ca_certs: /nonexistent/ca.pem`,
        { env: {} },
      ),
    );
    expect(issues).toEqual([
      { path: 'router_settings.redis_startup_nodes[0].port', message: 'expected an integer port from 1 to 65535, got 70000' },
      { path: 'router_settings.redis_startup_nodes[1].host', message: 'is required (a non-empty string)' },
      { path: 'router_settings.redis_startup_nodes[2]', message: 'expected {host, port}, got 5' },
      { path: 'router_settings.redis_ssl', message: 'expected a boolean (true or false), got "maybe"' },
      { path: 'router_settings.redis_ssl_ca_certs', message: 'no such file: "/nonexistent/ca.pem"' },
    ]);
    expect(issuesOf(() => parseConfig(`${model}router_settings:\n  redis_startup_nodes: "r1:7000"\n  redis_db: 1`, { env: {} }))).toEqual([
      { path: 'router_settings.redis_db', message: 'must be 0 (or absent) with redis_startup_nodes: a Redis Cluster has database 0 only, got 1' },
    ]);
  });

  it('parseClusterNodes accepts host:port lists only', () => {
    expect(parseClusterNodes('a:1,b:2')).toEqual([{ host: 'a', port: 1 }, { host: 'b', port: 2 }]);
    // (Empty entries between commas are skipped, as a trailing comma would be.)
    expect(parseClusterNodes('a:1,,b:2,')).toEqual([{ host: 'a', port: 1 }, { host: 'b', port: 2 }]);
    for (const bad of ['', ',', 'a', 'a:0', 'a:65536', ':1', 'a:1,b']) expect(parseClusterNodes(bad)).toBeUndefined();
  });
});
