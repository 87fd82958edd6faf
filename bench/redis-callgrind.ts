/**
 * redis-server's instructions per grant, counted under valgrind's callgrind (deterministic, unlike the
 * CPU time scenario 6 reads on this shared machine). Starts one redis-server under callgrind (a plain
 * node, or a one-node Redis Cluster holding every slot), warms up bench instances (instance-main.ts)
 * looping on it as scenario 6 does, zeroes the counters, runs a measured loop, dumps, and divides.
 *
 *   node dist/bench/redis-callgrind.js [--cluster] [--instances N] [--groups G] [--concurrency C] [--ms D]
 *
 * Prints one JSON line: instructions per grant, FCALLs per grant and operations per FCALL, and the
 * dump's path (read it with callgrind_annotate). Not part of `npm run bench`: a tool for the Lua's cost.
 */
import { spawn } from 'node:child_process';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { benchYaml } from './bench-config.js';
import { startInstances, stopInstances } from './instances.js';
import { freePort, REDIS_BINARY, waitForPing } from './redis-server.js';

const run = promisify(execFile);

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i < 0 ? fallback : Number(process.argv[i + 1]);
}

const cluster = process.argv.includes('--cluster');
const n = flag('--instances', 1);
const groups = flag('--groups', 1);
const concurrency = flag('--concurrency', 32);
const ms = flag('--ms', 8_000);

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'triage-callgrind-'));
  const port = await freePort();
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--loglevel', 'warning', '--dir', dir];
  // A lone node knows no address of its own until announced (CLUSTER SLOTS would name host '').
  if (cluster) args.push('--cluster-enabled', 'yes', '--cluster-config-file', join(dir, 'nodes.conf'), '--cluster-announce-ip', '127.0.0.1');
  const child = spawn('valgrind', ['--tool=callgrind', `--callgrind-out-file=${join(dir, 'callgrind.out.%p')}`, REDIS_BINARY, ...args], { stdio: 'ignore' });
  const stop = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.once('exit', stop);
  try {
    if (!(await waitForPing(port, 60_000))) throw new Error('redis-server under valgrind did not start');
    const admin = new Redis(port, '127.0.0.1');
    if (cluster) {
      await admin.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383');
      for (;;) {
        const info = String(await admin.call('CLUSTER', 'INFO'));
        if (info.includes('cluster_state:ok')) break;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const models = Array.from({ length: groups }, (_, i) => `cg-${i}`);
    const groupsConfig = Object.fromEntries(models.map((m) => [m, [{ mockResponse: 'ok', mockDelayMs: 0 }]]));
    let yaml = benchYaml({ groups: groupsConfig, maxQueueSize: 100_000, redisUrl: `redis://127.0.0.1:${port}`, redisPrefix: 'cg' });
    if (cluster) yaml = yaml.replace(/redis_url: .*/, `redis_startup_nodes: "127.0.0.1:${port}"`);
    const instances = await startInstances(n, { yaml, store: 'redis' });
    try {
      const loop = async (durationMs: number) => {
        const results = await Promise.all(
          instances.flatMap((i) =>
            models.map((model) =>
              i.child.call<{ total: number; errors: number }>('loop', { model, concurrency, warmupMs: 0, durationMs }, durationMs + 60_000),
            ),
          ),
        );
        return { total: results.reduce((s, r) => s + r.total, 0), errors: results.reduce((s, r) => s + r.errors, 0) };
      };
      await loop(3_000);
      await run('callgrind_control', ['-z', String(child.pid)]);
      await admin.config('RESETSTAT');
      const measured = await loop(ms);
      await run('callgrind_control', ['-d', 'measured', String(child.pid)]);
      const stats = await admin.info('commandstats');
      const fcall = /cmdstat_fcall:calls=(\d+)/.exec(stats);
      const fcalls = fcall ? Number(fcall[1]) : 0;
      // The dump named "measured" (callgrind_control -d) holds the totals since the zeroing.
      const dumps = readdirSync(dir).filter((f) => f.startsWith('callgrind.out.'));
      let path = '';
      let ir = 0;
      for (const f of dumps) {
        const text = readFileSync(join(dir, f), 'utf8');
        if (!text.includes('measured')) continue;
        const m = /^(?:summary|totals): (\d+)/m.exec(text);
        if (m) {
          path = join(dir, f);
          ir = Number(m[1]);
        }
      }
      console.log(
        JSON.stringify({
          cluster, instances: n, groups, concurrency, grants: measured.total, errors: measured.errors, fcalls,
          irPerGrant: Math.round(ir / measured.total), fcallsPerGrant: +(fcalls / measured.total).toFixed(3),
          opsPerFcall: +((2 * measured.total) / fcalls).toFixed(1), dump: path,
        }),
      );
    } finally {
      await stopInstances(instances);
      admin.disconnect();
    }
  } finally {
    stop();
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
