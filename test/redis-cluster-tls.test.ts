/**
 * TLS on a Redis Cluster: three masters started here with TLS on every port (clients, the cluster
 * bus and replication: --tls-port, --tls-cluster yes, --tls-replication yes, no plaintext port at all)
 * and a certificate authority the test makes with openssl. Gateways in process, with the OpenAI SDK
 * as the caller, reach it with redis_startup_nodes (or REDIS_CLUSTER_NODES) + redis_ssl: true +
 * redis_ssl_ca_certs; a client that trusts another CA, or speaks plaintext, never gets a ready store.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/adapters/config-loader.js';
import { createRedisStoreFactory, type RedisStoreFactory } from '../src/adapters/redis-connection.js';
import { chat, startGateway, type RunningGateway } from './support/gateway.js';
import { statusUntil } from './support/queue-status.js';
import { freshPrefix } from './support/redis.js';
import { keySlot, modelWithSlot, servesSlot, startRedisCluster, type RedisCluster } from './support/redis-cluster.js';
import { expectStoreNeverReady } from './support/store-never-ready.js';
import { makeCertificates, type TestCertificates } from './support/test-certificates.js';

const dir = mkdtempSync(join(tmpdir(), 'triage-cluster-tls-'));
let certs: TestCertificates;
let cluster: RedisCluster;

beforeAll(async () => {
  certs = await makeCertificates(dir);
  cluster = await startRedisCluster({ masters: 3, tls: { certFile: certs.serverCert, keyFile: certs.serverKey, caFile: certs.ca } });
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A model name whose group slot lies on the master at `nodeIndex`. */
function modelOn(nodeIndex: number): string {
  return modelWithSlot('tls', (slot) => servesSlot(cluster.nodes[nodeIndex], slot));
}

/** Mock groups with one slot each; `slow` ones take 2 s per call (so a second call visibly waits). */
function configOf(models: string[], redisYaml: string, env: NodeJS.ProcessEnv = {}, slow: string[] = []) {
  const list = models
    .map((m) => `  - model_name: ${m}\n    litellm_params:\n      model: mock/${m}\n      mock_response: "${m} over TLS"\n      max_parallel_requests: 1${slow.includes(m) ? '\n      mock_delay: 2' : ''}`)
    .join('\n');
  return parseConfig(`model_list:\n${list}\nrouter_settings:\n${redisYaml}`, { env }).config;
}

const startupNodes = () => cluster.nodes.map((n) => `    - { host: 127.0.0.1, port: ${n.port} }`).join('\n');

describe('TLS on a Redis Cluster', () => {
  it('redis_startup_nodes (or REDIS_CLUSTER_NODES) with redis_ssl and redis_ssl_ca_certs: two instances serve three groups on the three shards, one queue per group across the instances', async () => {
    const a = modelOn(0);
    const b = modelOn(2);
    const slow = modelOn(1);
    const prefix = freshPrefix('tls-cl');
    const configs = [
      configOf([a, b, slow], `  redis_startup_nodes:\n${startupNodes()}\n  redis_ssl: true\n  redis_ssl_ca_certs: ${certs.ca}\n  redis_prefix: ${prefix}`, {}, [slow]),
      configOf([a, b, slow], `  redis_ssl: true\n  redis_ssl_ca_certs: ${certs.ca}\n  redis_prefix: ${prefix}`, { REDIS_CLUSTER_NODES: cluster.startupNodes }, [slow]),
    ];
    const running: Array<{ gw: RunningGateway; redis: RedisStoreFactory }> = [];
    try {
      for (const [i, config] of configs.entries()) {
        expect(config.router.redis?.clusterNodes).toHaveLength(3);
        const redis = createRedisStoreFactory(config.router.redis!, { instanceId: `tls-cluster-${i}` });
        await redis.whenReady(10_000);
        running.push({ redis, gw: await startGateway(config, { store: redis }) });
      }
      // Both instances, both groups, one slot each: every request served through the TLS cluster.
      const calls = Array.from({ length: 12 }, (_, k) =>
        running[k % 2].gw.client().chat.completions.create(chat(k % 4 < 2 ? a : b, `hi ${k}`, k % 3)),
      );
      const answers = await Promise.all(calls);
      for (const [k, answer] of answers.entries()) expect(answer.choices[0].message.content).toBe(`${k % 4 < 2 ? a : b} over TLS`);
      // One queue across the instances: a call on one holds the slow group's only slot, a call on the
      // other waits for it (seen from the first), and is granted when it ends.
      const held = running[0].gw.client().chat.completions.create(chat(slow, 'first', 0));
      await statusUntil(running[1].gw.url, slow, (s) => s.inFlight === 1, 'the first slow call in flight');
      const second = running[1].gw.client().chat.completions.create(chat(slow, 'second', 0));
      await statusUntil(running[0].gw.url, slow, (s) => s.waiting === 1 && s.inFlight === 1, 'the second slow call waiting');
      for (const r of await Promise.all([held, second])) expect(r.choices[0].message.content).toBe(`${slow} over TLS`);
      // Each group's keys are on its own shard, read over TLS.
      for (const m of [a, b, slow]) {
        const node = await cluster.nodeOf(keySlot(`{${m}}`));
        const keys = (await cluster.cli(node.port, '--scan', '--pattern', `${prefix}:*`)).split('\n').filter((k) => k !== '');
        expect(keys.some((k) => k.startsWith(`${prefix}:{${m}}:`))).toBe(true);
        expect(keys.every((k) => k.startsWith(`${prefix}:{${m}}:`))).toBe(true);
        // Each instance listens on the group's sharded channel on that shard (over TLS too).
        const channels = (await cluster.cli(node.port, 'pubsub', 'shardchannels', `${prefix}:*`)).split('\n').filter((c) => c !== '');
        expect(channels).toHaveLength(2);
      }
      for (const { gw } of running) {
        const status = (await (await fetch(`${gw.url}/queue/status`)).json()) as { models: Array<{ model: string; waiting: number; inFlight: number }> };
        for (const m of status.models) expect(m).toMatchObject({ waiting: 0, inFlight: 0 });
      }
    } finally {
      for (const { gw, redis } of running) {
        await gw.stop();
        await redis.close();
      }
    }
  });

  it('a certificate from another CA, or no TLS, never makes the store ready: requests get 503 store_unavailable', async () => {
    const model = modelOn(1);
    for (const tls of [`  redis_ssl: true\n  redis_ssl_ca_certs: ${certs.otherCa}`, '  redis_ssl: false']) {
      const config = configOf([model], `  redis_startup_nodes:\n${startupNodes()}\n${tls}\n  redis_prefix: ${freshPrefix('tls-cl-bad')}`);
      await expectStoreNeverReady(config, model, { connectTimeoutMs: 500 });
    }
  });
});
