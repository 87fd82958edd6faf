/** A private redis-server for the benchmark: a free loopback port, no persistence, stopped by its pid. */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect, createServer } from 'node:net';

export const REDIS_BINARY = process.env.REDIS_SERVER_BINARY ?? '/usr/bin/redis-server';

export interface BenchRedis {
  url: string;
  port: number;
  /** redis-server's pid (its CPU time per grant is read from /proc). */
  pid: number;
  stop(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 500);
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d) => done(d.toString('latin1').startsWith('+PONG')));
    socket.on('error', () => done(false));
  });
}

/** Polls PING until the server on `port` answers (true) or `timeoutMs` passes (false). */
export async function waitForPing(port: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await answersPing(port)) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return false;
}

/** Null when there is no redis-server binary (the Redis scenarios then report "not available"). */
export async function startRedis(timeoutMs = 10_000): Promise<BenchRedis | null> {
  if (!existsSync(REDIS_BINARY)) return null;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const child: ChildProcess = spawn(
      REDIS_BINARY,
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--loglevel', 'warning'],
      { stdio: ['ignore', 'ignore', 'ignore'] },
    );
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const kill = () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    };
    process.once('exit', kill);
    const deadline = Date.now() + timeoutMs;
    let up = false;
    while (Date.now() < deadline && child.exitCode === null) {
      if (await answersPing(port)) {
        up = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    if (!up) {
      kill();
      await exited;
      continue;
    }
    return {
      url: `redis://127.0.0.1:${port}`,
      port,
      pid: child.pid ?? -1,
      async stop() {
        process.off('exit', kill);
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
        const t = setTimeout(kill, 3_000);
        await exited;
        clearTimeout(t);
      },
    };
  }
  return null;
}
