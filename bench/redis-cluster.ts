/**
 * A private 3-master Redis Cluster for the benchmark (redis-server --cluster-enabled yes, joined with
 * redis-cli --cluster create), on free loopback ports with no persistence; stopped by its pids.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, REDIS_BINARY, waitForPing } from './redis-server.js';

const run = promisify(execFile);
const REDIS_CLI = process.env.REDIS_CLI_BINARY ?? '/usr/bin/redis-cli';

export interface BenchCluster {
  /** `host:port,host:port,host:port` (REDIS_CLUSTER_NODES form, also accepted by redis_startup_nodes). */
  startupNodes: string;
  nodes: Array<{ port: number; pid: number; slots: Array<[number, number]> }>;
  stop(): Promise<void>;
}

/** CRC16-XMODEM mod 16384 of a hash tag: the slot of every key tagged {tag}. */
export function tagSlot(tag: string): number {
  let crc = 0;
  for (const byte of Buffer.from(tag, 'utf8')) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}

/** Null when redis-server or redis-cli is missing. */
export async function startCluster(masters = 3): Promise<BenchCluster | null> {
  if (!existsSync(REDIS_BINARY) || !existsSync(REDIS_CLI)) return null;
  const dir = mkdtempSync(join(tmpdir(), 'triage-bench-cluster-'));
  const ports: number[] = [];
  while (ports.length < masters) {
    const p = await freePort();
    if (!ports.includes(p)) ports.push(p);
  }
  const children: ChildProcess[] = ports.map((port) =>
    spawn(
      REDIS_BINARY,
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--loglevel', 'warning',
        '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--dir', dir],
      { stdio: ['ignore', 'ignore', 'ignore'] },
    ),
  );
  const kill = () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  };
  process.once('exit', kill);
  const stop = async () => {
    process.off('exit', kill);
    await Promise.all(
      children.map((c) => (c.exitCode !== null || c.signalCode !== null ? undefined : new Promise<void>((r) => { c.once('exit', () => r()); c.kill('SIGKILL'); }))),
    );
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (const p of ports) if (!(await waitForPing(p, 10_000))) throw new Error(`node ${p} did not start`);
    await run(REDIS_CLI, ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], { timeout: 60_000 });
    const deadline = Date.now() + 20_000;
    for (;;) {
      const states = await Promise.all(ports.map((p) => run(REDIS_CLI, ['-p', String(p), 'cluster', 'info']).then((r) => r.stdout, () => '')));
      if (states.every((s) => s.includes('cluster_state:ok'))) break;
      if (Date.now() > deadline) throw new Error('the cluster did not reach cluster_state:ok');
      await new Promise((r) => setTimeout(r, 100));
    }
    const text = (await run(REDIS_CLI, ['-p', String(ports[0]), 'cluster', 'nodes'])).stdout;
    const nodes = ports.map((port, i) => {
      const line = text.split('\n').find((l) => l.split(' ')[1]?.startsWith(`127.0.0.1:${port}@`)) ?? '';
      const slots = line
        .split(' ')
        .slice(8)
        .filter((s) => /^\d+(-\d+)?$/.test(s))
        .map((s) => {
          const [a, b] = s.split('-').map(Number);
          return [a, b ?? a] as [number, number];
        });
      return { port, pid: children[i].pid ?? -1, slots };
    });
    return { startupNodes: ports.map((p) => `127.0.0.1:${p}`).join(','), nodes, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
