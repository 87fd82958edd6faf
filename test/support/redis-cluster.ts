/**
 * A real Redis Cluster for tests: three masters (Debian's redis-server with --cluster-enabled yes) on
 * free loopback ports, joined by `redis-cli --cluster create ... --cluster-replicas 0`, each with its
 * own nodes.conf in a temporary directory so a stopped node restarts with its identity and slots (and
 * no data: there is no persistence). Everything is stopped by `stop()` or when the test process exits.
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
}

export interface RedisCluster {
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
  stop(): Promise<void>;
}

function spawnNode(port: number, dir: string): ChildProcess {
  const child = spawn(
    REDIS_BINARY,
    [
      '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no',
      '--loglevel', 'warning', '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`),
      '--cluster-node-timeout', '2000',
      // A stopped shard makes only its own slots unavailable; the other groups keep being served.
      '--cluster-require-full-coverage', 'no',
      '--dir', dir,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  child.stderr?.resume();
  return child;
}

const exited = (c: ChildProcess) =>
  c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise<void>((r) => c.once('exit', () => r()));

export async function startRedisCluster(masters = 3): Promise<RedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'triage-cluster-'));
  const ports: number[] = [];
  while (ports.length < masters) {
    const p = await freePort();
    if (!ports.includes(p)) ports.push(p);
  }
  const children: (ChildProcess | null)[] = ports.map((p) => spawnNode(p, dir));
  const onExit = () => {
    for (const c of children) c?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);
  const cli = async (port: number, ...args: string[]) => (await run(REDIS_CLI, ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 30_000 })).stdout;
  const nodes: ClusterNode[] = ports.map((port) => ({ port, id: '', slots: [] }));

  const refresh = async () => {
    const text = await cli(ports.find((_, i) => children[i] !== null)!, 'cluster', 'nodes');
    for (const line of text.trim().split('\n')) {
      const f = line.split(' ');
      const port = Number(f[1].split('@')[0].split(':')[1]);
      const node = nodes.find((n) => n.port === port);
      if (node === undefined) continue;
      node.id = f[0];
      node.slots = f
        .slice(8)
        .filter((s) => /^\d+(-\d+)?$/.test(s))
        .map((s) => {
          const [a, b] = s.split('-').map(Number);
          return [a, b ?? a] as [number, number];
        });
    }
  };

  const waitOk = async (timeoutMs = 20_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let ok = true;
      for (const [i, p] of ports.entries()) {
        if (children[i] === null) continue;
        const info = await cli(p, 'cluster', 'info').catch(() => '');
        if (!info.includes('cluster_state:ok')) ok = false;
      }
      if (ok) {
        const check = await run(REDIS_CLI, ['--cluster', 'check', `127.0.0.1:${ports[0]}`], { timeout: 30_000 }).then(
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

  try {
    await Promise.all(ports.map((p, i) => waitForPing(p, 10_000, children[i]!)));
    await run(REDIS_CLI, ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], { timeout: 60_000 });
    await waitOk();
  } catch (e) {
    onExit();
    process.off('exit', onExit);
    throw e;
  }

  return {
    nodes,
    startupNodes: ports.map((p) => `127.0.0.1:${p}`).join(','),
    cli,
    waitOk,
    async nodeOf(slot) {
      await refresh();
      const node = nodes.find((n) => n.slots.some(([a, b]) => slot >= a && slot <= b));
      if (node === undefined) throw new Error(`no node serves slot ${slot}`);
      return node;
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
      const c = spawnNode(ports[i], dir);
      children[i] = c;
      await waitForPing(ports[i], 10_000, c);
      await waitOk();
    },
    async reshard(from, to, count) {
      await refresh();
      await run(
        REDIS_CLI,
        [
          '--cluster', 'reshard', `127.0.0.1:${ports[from]}`,
          '--cluster-from', nodes[from].id, '--cluster-to', nodes[to].id,
          '--cluster-slots', String(count), '--cluster-yes', '--cluster-pipeline', '10',
        ],
        { timeout: 60_000 },
      );
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
