/**
 * Managed-Redis basics against a real redis-server started here with TLS on (Debian's build has
 * --tls-port) and a certificate authority made by the test with openssl: rediss:// URLs and
 * redis_ssl: true with redis_ssl_ca_certs, an ACL user limited to the key prefix (redis_username +
 * redis_password), and redis_db on a single node. The gateway runs in process with the OpenAI SDK as
 * the caller.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/adapters/config-loader.js';
import { createRedisStoreFactory, type RedisStoreFactory } from '../src/adapters/redis-connection.js';
import { chat, startGateway, type RunningGateway } from './support/gateway.js';
import { freePort, REDIS_BINARY } from './support/redis.js';
import { REDIS_CLI } from './support/redis-cluster.js';
import { expectStoreNeverReady } from './support/store-never-ready.js';
import { makeCertificates } from './support/test-certificates.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'triage-tls-'));
let ca = '';
let otherCa = '';
let server: ChildProcess | undefined;
let port = 0;
const PREFIX = 'tenant-a';
const USER = 'triage-app';
const PASSWORD = 'app-password-0001';

const cli = (...args: string[]) =>
  run(REDIS_CLI, ['--tls', '--cacert', ca, '-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 10_000 }).then((r) => r.stdout.trim());

beforeAll(async () => {
  const certs = await makeCertificates(dir);
  ca = certs.ca;
  otherCa = certs.otherCa;
  port = await freePort();
  server = spawn(
    REDIS_BINARY,
    [
      '--port', '0', '--tls-port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--tls-cert-file', certs.serverCert, '--tls-key-file', certs.serverKey, '--tls-ca-cert-file', ca,
      '--tls-auth-clients', 'no', '--loglevel', 'warning',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  server.stderr?.resume();
  process.once('exit', () => server?.kill('SIGKILL'));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if ((await cli('ping').catch(() => '')) === 'PONG') break;
    if (Date.now() > deadline) throw new Error('the TLS redis-server did not answer');
    await new Promise((r) => setTimeout(r, 50));
  }
  // An application user limited to its prefix: its keys, its channels, and the commands the store
  // runs (scripts and what they call, pub/sub, the client's connection set-up). No admin commands.
  await cli('acl', 'setuser', USER, 'on', `>${PASSWORD}`, 'resetkeys', `~${PREFIX}:*`, 'resetchannels', `&${PREFIX}:*`,
    '-@all', '+@read', '+@write', '+@scripting', '+@pubsub', '+@connection', '+@fast', '-@dangerous', '+info');
  // The default user is not usable for the app (a managed Redis's usual set-up).
  await cli('acl', 'setuser', 'default', 'resetkeys', '~admin:*', 'resetchannels');
}, 60_000);

afterAll(async () => {
  server?.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

async function gatewayOn(routerYaml: string): Promise<{ gw: RunningGateway; redis: RedisStoreFactory }> {
  const { config } = parseConfig(
    `model_list:
  - model_name: tls-model
    litellm_params:
      model: mock/tls-model
      mock_response: "over TLS"
      max_parallel_requests: 1
      rpm: 100
general_settings:
  master_key: sk-tls-master-0001
  keys:
    - key: sk-tls-team-0001
      name: team
      rpm: 50
router_settings:
${routerYaml}`,
    { env: {} },
  );
  const redis = createRedisStoreFactory(config.router.redis!, { instanceId: `tls-${Math.random().toString(36).slice(2, 8)}` });
  await redis.whenReady(5_000);
  const gw = await startGateway(config, { store: redis });
  return { gw, redis };
}

describe('managed Redis: TLS, ACL user, database', () => {
  it('rediss:// with redis_ssl_ca_certs and an ACL user limited to the prefix: requests are served, and every key is under the prefix', async () => {
    const { gw, redis } = await gatewayOn(`  redis_url: rediss://127.0.0.1:${port}
  redis_ssl_ca_certs: ${ca}
  redis_username: ${USER}
  redis_password: ${PASSWORD}
  redis_prefix: ${PREFIX}`);
    try {
      const client = gw.client('sk-tls-team-0001');
      const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => client.chat.completions.create(chat('tls-model', `hi ${i}`, i % 2))));
      for (const a of answers) expect(a.choices[0].message.content).toBe('over TLS');
      const keys = (await cli('--user', USER, '--pass', PASSWORD, '--no-auth-warning', '--scan')).split('\n').filter((k) => k !== '');
      expect(keys.length).toBeGreaterThan(0);
      expect(keys.every((k) => k.startsWith(`${PREFIX}:`))).toBe(true);
      // The key's rpm window is there too, under the prefix with its own hash tag.
      expect(keys).toContain(`${PREFIX}:keyrpm:{team}`);
      // The user really is limited: outside the prefix it is refused.
      const refused = await cli('--user', USER, '--pass', PASSWORD, '--no-auth-warning', 'set', 'elsewhere', '1');
      expect(refused).toMatch(/NOPERM/);
    } finally {
      await gw.stop();
      await redis.close();
    }
  });

  it('redis_ssl: true with redis_host / redis_port and redis_db: the keys go to that database', async () => {
    const { gw, redis } = await gatewayOn(`  redis_host: 127.0.0.1
  redis_port: ${port}
  redis_ssl: true
  redis_ssl_ca_certs: ${ca}
  redis_username: ${USER}
  redis_password: ${PASSWORD}
  redis_db: 3
  redis_prefix: ${PREFIX}`);
    try {
      const a = await gw.client('sk-tls-master-0001').chat.completions.create(chat('tls-model', 'hi', 0));
      expect(a.choices[0].message.content).toBe('over TLS');
      const inDb3 = (await cli('--user', USER, '--pass', PASSWORD, '--no-auth-warning', '-n', '3', '--scan')).split('\n').filter((k) => k !== '');
      expect(inDb3.some((k) => k.startsWith(`${PREFIX}:{tls-model}:`))).toBe(true);
    } finally {
      await gw.stop();
      await redis.close();
    }
  });

  it('a server certificate from another CA, or a wrong password, is refused: the store never becomes ready and requests get 503 store_unavailable', async () => {
    for (const yaml of [
      `  redis_url: rediss://127.0.0.1:${port}\n  redis_ssl_ca_certs: ${otherCa}\n  redis_prefix: ${PREFIX}`,
      `  redis_url: rediss://127.0.0.1:${port}\n  redis_ssl_ca_certs: ${ca}\n  redis_username: ${USER}\n  redis_password: wrong-password\n  redis_prefix: ${PREFIX}`,
    ]) {
      const { config } = parseConfig(
        `model_list:\n  - model_name: tls-model\n    litellm_params:\n      model: mock/tls-model\n      mock_response: x\nrouter_settings:\n${yaml}`,
        { env: {} },
      );
      await expectStoreNeverReady(config, 'tls-model');
    }
  });
});
