/**
 * A real Redis Cluster for tests: three masters (Debian's redis-server with --cluster-enabled yes) on
 * free loopback ports, joined by `redis-cli --cluster create ... --cluster-replicas N`, each with its
 * own nodes.conf in a temporary directory so a stopped node restarts with its identity and slots (and
 * no data: there is no persistence). Optionally with replicas (failover tests: replication can be cut
 * to make a replica miss the last writes) and TLS on every port. Everything is stopped by `stop()` or
 * when the test process exits.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, REDIS_BINARY, waitForPing } from './redis.js';

const run = promisify(execFile);
export const REDIS_CLI = process.env.REDIS_CLI_BINARY ?? '/usr/bin/redis-cli';

/** CRC16-XMODEM, as Redis Cluster hashes keys (a key's slot is crc16(tag) mod 16384). */
function crc16(text: string): number {
  let crc = 0;
  for (const byte of Buffer.from(text, 'utf8')) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** The cluster slot of a key: its {hash tag} when it has a non-empty one, else the whole key. */
export function keySlot(key: string): number {
  const open = key.indexOf('{');
  if (open >= 0) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) return crc16(key.slice(open + 1, close)) % 16384;
  }
  return crc16(key) % 16384;
}

export interface ClusterNode {
  readonly port: number;
  /** The node's cluster id. */
  id: string;
  /** Slot ranges it serves, [from, to] inclusive. */
  slots: Array<[number, number]>;
  /** Its role in the cluster's view (a replica becomes a master when it is promoted). */
  role: 'master' | 'replica';
  /** A replica's master id ('' for a master). */
  masterId: string;
  /** The cluster marks it failed (or possibly failed). */
  failing: boolean;
}

/** Whether `node` serves `slot`. */
export function servesSlot(node: ClusterNode, slot: number): boolean {
  return node.slots.some(([from, to]) => slot >= from && slot <= to);
}

/**
 * The first model group name `<prefix>-<n>` (not in `not`) whose group slot (its hash tag) passes
 * `wanted`: how a test puts a group on the shard it needs.
 */
export function modelWithSlot(prefix: string, wanted: (slot: number) => boolean, not: readonly string[] = []): string {
  for (let i = 0; i < 1_000_000; i++) {
    const name = `${prefix}-${i}`;
    if (!not.includes(name) && wanted(keySlot(`{${name}}`))) return name;
  }
  throw new Error('no model name found');
}

/** TLS on every port: clients, the cluster bus and replication (--tls-cluster, --tls-replication). */
export interface ClusterTls {
  certFile: string;
  keyFile: string;
  caFile: string;
}

export interface RedisClusterOptions {
  /** Masters (default 3). */
  masters?: number;
  /** Replicas per master (default 0): `--cluster-replicas`. */
  replicas?: number;
  /** cluster-node-timeout, ms (default 2000): how long a silent master takes to be failed over. */
  nodeTimeoutMs?: number;
  tls?: ClusterTls;
}

export interface RedisCluster {
  /** Every node, masters first (as created: node i < masters is a master until a failover). */
  readonly nodes: readonly ClusterNode[];
  /** `127.0.0.1:port,...`: REDIS_CLUSTER_NODES form. */
  readonly startupNodes: string;
  /** The node serving `slot` (from the cluster's own view, refreshed). */
  nodeOf(slot: number): Promise<ClusterNode>;
  /** Runs redis-cli against a node; resolves with its stdout. */
  cli(port: number, ...args: string[]): Promise<string>;
  /** Stops node i (SIGKILL when hard); resolves once it has exited. */
  stopNode(i: number, hard?: boolean): Promise<void>;
  /** Starts node i again on its port with its nodes.conf; resolves once the cluster is ok again. */
  restartNode(i: number): Promise<void>;
  /** `redis-cli --cluster reshard`: moves `count` slots (the lowest of `from`) to node `to`. */
  reshard(from: number, to: number, count: number): Promise<void>;
  /** Resolves once every node reports cluster_state:ok and agrees on the slots. */
  waitOk(timeoutMs?: number): Promise<void>;
  /** The index of the (first) replica of the master at index `master`, in the cluster's view. */
  replicaOf(master: number): Promise<number>;
  /**
   * Resolves once every replica of the master at `master` has acknowledged all its writes so far: a
   * write of `probeKey` (a key in one of its slots) then WAIT on the same connection.
   */
  waitReplicated(master: number, probeKey: string): Promise<void>;
  /**
   * Stops replication from the master at `master`: its replication user is disabled and its replicas'
   * links are cut, so the replicas keep what they had and every later write stays on the master only
   * (what an asynchronous replica misses when its master dies).
   */
  cutReplication(master: number): Promise<void>;
  /**
   * Polls until `slot` is served by a running master other than `notIndex`, the cluster ok on every
   * running node; resolves with that node's index. For a failover: the replica promoted.
   */
  waitServedBy(slot: number, notIndex: number, timeoutMs?: number): Promise<number>;
  stop(): Promise<void>;
}

/** The ACL user replicas authenticate as: disabling it cuts replication and nothing else. */
const REPLICATION_USER = 'triage-replication';
const REPLICATION_PASSWORD = 'replication-password-0001';

interface NodePorts {
  port: number;
  /** The cluster bus port (set explicitly: port + 10000, Redis's default, may be past 65535). */
  bus: number;
}

function spawnNode(at: NodePorts, dir: string, o: Required<Omit<RedisClusterOptions, 'tls'>> & { tls?: ClusterTls }): ChildProcess {
  const ports = o.tls === undefined
    ? ['--port', String(at.port)]
    : [
        '--port', '0', '--tls-port', String(at.port), '--tls-cluster', 'yes', '--tls-replication', 'yes',
        '--tls-cert-file', o.tls.certFile, '--tls-key-file', o.tls.keyFile, '--tls-ca-cert-file', o.tls.caFile, '--tls-auth-clients', 'no',
      ];
  const replication = o.replicas === 0
    ? []
    : ['--user', REPLICATION_USER, 'on', `>${REPLICATION_PASSWORD}`, '+@all', '~*', '&*', '--masteruser', REPLICATION_USER, '--masterauth', REPLICATION_PASSWORD];
  const child = spawn(
    REDIS_BINARY,
    [
      ...ports, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no',
      '--loglevel', 'warning', '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${at.port}.conf`),
      '--cluster-port', String(at.bus),
      '--cluster-node-timeout', String(o.nodeTimeoutMs),
      // A stopped shard makes only its own slots unavailable; the other groups keep being served.
      '--cluster-require-full-coverage', 'no',
      ...replication,
      '--dir', dir,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  child.stderr?.resume();
  return child;
}

const exited = (c: ChildProcess) =>
  c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise<void>((r) => c.once('exit', () => r()));

/** `count` distinct free loopback ports. */
async function freePorts(count: number): Promise<number[]> {
  const ports: number[] = [];
  while (ports.length < count) {
    const p = await freePort();
    if (!ports.includes(p)) ports.push(p);
  }
  return ports;
}

export async function startRedisCluster(options: number | RedisClusterOptions = 3): Promise<RedisCluster> {
  const o = typeof options === 'number' ? { masters: options } : options;
  const settings = { masters: o.masters ?? 3, replicas: o.replicas ?? 0, nodeTimeoutMs: o.nodeTimeoutMs ?? 2000, ...(o.tls !== undefined ? { tls: o.tls } : {}) };
  const total = settings.masters * (1 + settings.replicas);
  const dir = mkdtempSync(join(tmpdir(), 'triage-cluster-'));
  const free = await freePorts(2 * total);
  const at: NodePorts[] = Array.from({ length: total }, (_, i) => ({ port: free[i], bus: free[total + i] }));
  const ports = at.map((a) => a.port);
  const children: (ChildProcess | null)[] = at.map((a) => spawnNode(a, dir, settings));
  const onExit = () => {
    for (const c of children) c?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);
  const tlsArgs = settings.tls === undefined ? [] : ['--tls', '--cacert', settings.tls.caFile];
  const redisCli = (args: string[]) => run(REDIS_CLI, [...tlsArgs, ...args], { timeout: 30_000 });
  const cli = async (port: number, ...args: string[]) => (await redisCli(['-h', '127.0.0.1', '-p', String(port), ...args])).stdout;
  const nodes: ClusterNode[] = ports.map((port) => ({ port, id: '', slots: [], role: 'master', masterId: '', failing: false }));
  const running = () => ports.filter((_, i) => children[i] !== null);

  const refresh = async () => {
    const text = await cli(running()[0], 'cluster', 'nodes');
    for (const line of text.trim().split('\n')) {
      const f = line.split(' ');
      const port = Number(f[1].split('@')[0].split(':')[1]);
      const node = nodes.find((n) => n.port === port);
      if (node === undefined) continue;
      const flags = f[2].split(',');
      node.id = f[0];
      node.role = flags.includes('master') ? 'master' : 'replica';
      node.masterId = f[3] === '-' ? '' : f[3];
      node.failing = flags.includes('fail') || flags.includes('fail?');
      node.slots = f
        .slice(8)
        .filter((s) => /^\d+(-\d+)?$/.test(s))
        .map((s) => {
          const [a, b] = s.split('-').map(Number);
          return [a, b ?? a] as [number, number];
        });
    }
  };

  const clusterStateOk = async () => {
    for (const p of running()) {
      const info = await cli(p, 'cluster', 'info').catch(() => '');
      if (!info.includes('cluster_state:ok')) return false;
    }
    return true;
  };

  const waitOk = async (timeoutMs = 20_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await clusterStateOk()) {
        const check = await redisCli(['--cluster', 'check', `127.0.0.1:${running()[0]}`]).then(
          (r) => r.stdout,
          (e: { stdout?: string }) => e.stdout ?? '',
        );
        if (check.includes('[OK] All 16384 slots covered') && !check.includes('[WARNING]') && !check.includes('[ERR]')) break;
      }
      if (Date.now() > deadline) throw new Error(`the Redis Cluster on ports ${ports.join(', ')} is not ok after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await refresh();
  };

  const waitPing = (port: number, child: ChildProcess) =>
    settings.tls === undefined
      ? waitForPing(port, 10_000, child)
      : (async () => {
          const deadline = Date.now() + 10_000;
          for (;;) {
            if (child.exitCode !== null) throw new Error(`redis-server exited with code ${child.exitCode}`);
            if ((await cli(port, 'ping').catch(() => '')).trim() === 'PONG') return;
            if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not answer PING within 10000 ms`);
            await new Promise((r) => setTimeout(r, 50));
          }
        })();

  try {
    await Promise.all(ports.map((p, i) => waitPing(p, children[i]!)));
    await redisCli(['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', String(settings.replicas), '--cluster-yes']);
    await waitOk();
    if (settings.replicas > 0) {
      // Replicas attach after the slots are agreed: wait until each master has its replicas in sync.
      const deadline = Date.now() + 20_000;
      for (;;) {
        await refresh();
        const masters = nodes.filter((n) => n.role === 'master');
        let synced = masters.length === settings.masters;
        for (const m of masters) {
          const info = await cli(m.port, 'info', 'replication');
          if (Number(/connected_slaves:(\d+)/.exec(info)?.[1] ?? 0) < settings.replicas || !/slave0:[^\n]*state=online/.test(info)) synced = false;
        }
        if (synced) break;
        if (Date.now() > deadline) throw new Error(`the replicas of the Redis Cluster on ports ${ports.join(', ')} are not in sync after 20000 ms`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } catch (e) {
    onExit();
    process.off('exit', onExit);
    throw e;
  }

  const replicaOf = async (master: number) => {
    await refresh();
    const id = nodes[master].id;
    const i = nodes.findIndex((n) => n.role === 'replica' && n.masterId === id);
    if (i < 0) throw new Error(`node ${master} (port ${ports[master]}) has no replica`);
    return i;
  };

  return {
    nodes,
    startupNodes: ports.map((p) => `127.0.0.1:${p}`).join(','),
    cli,
    waitOk,
    replicaOf,
    async nodeOf(slot) {
      await refresh();
      const node = nodes.find((n) => n.role === 'master' && !n.failing && servesSlot(n, slot));
      if (node === undefined) throw new Error(`no node serves slot ${slot}`);
      return node;
    },
    async waitReplicated(master, probeKey) {
      // One connection (commands on stdin): WAIT counts the replicas that acknowledged this client's
      // last write, and the replication stream is in order, so every earlier write is there too.
      const out = await new Promise<string>((resolve, reject) => {
        const child = execFile(REDIS_CLI, [...tlsArgs, '-h', '127.0.0.1', '-p', String(ports[master])], { timeout: 30_000 }, (e, stdout) =>
          e ? reject(e) : resolve(stdout),
        );
        child.stdin?.end(`SET ${probeKey} 1 PX 60000\nWAIT ${settings.replicas} 10000\n`);
      });
      const acked = Number(out.trim().split('\n').at(-1));
      if (acked < settings.replicas) throw new Error(`only ${acked} of ${settings.replicas} replicas of node ${master} acknowledged its writes: ${out}`);
    },
    async cutReplication(master) {
      const port = ports[master];
      await cli(port, 'acl', 'setuser', REPLICATION_USER, 'off');
      await cli(port, 'client', 'kill', 'type', 'replica');
      // The replica reconnects every second and is refused; until then nothing more reaches it.
      const info = await cli(port, 'info', 'replication');
      if (!/connected_slaves:0/.test(info)) throw new Error(`node ${master} still has a replica connected: ${info}`);
    },
    async waitServedBy(slot, notIndex, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const served = await refresh().then(
          () => nodes.findIndex((n, i) => i !== notIndex && children[i] !== null && n.role === 'master' && servesSlot(n, slot)),
          () => -1,
        );
        if (served >= 0 && (await clusterStateOk())) return served;
        if (Date.now() > deadline) throw new Error(`slot ${slot} is not served by another running master after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async stopNode(i, hard = false) {
      const c = children[i];
      if (c === null) return;
      children[i] = null;
      const gone = exited(c);
      c.kill(hard ? 'SIGKILL' : 'SIGTERM');
      await gone;
    },
    async restartNode(i) {
      if (children[i] !== null) return;
      const c = spawnNode(at[i], dir, settings);
      children[i] = c;
      await waitPing(ports[i], c);
      await waitOk();
    },
    async reshard(from, to, count) {
      await refresh();
      await redisCli([
        '--cluster', 'reshard', `127.0.0.1:${ports[from]}`,
        '--cluster-from', nodes[from].id, '--cluster-to', nodes[to].id,
        '--cluster-slots', String(count), '--cluster-yes', '--cluster-pipeline', '10',
      ]);
      await waitOk();
    },
    async stop() {
      process.off('exit', onExit);
      await Promise.all(
        children.map(async (c, i) => {
          if (c === null) return;
          children[i] = null;
          const gone = exited(c);
          c.kill('SIGKILL');
          await gone;
        }),
      );
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
