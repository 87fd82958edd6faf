/**
 * Redis for tests: the shared server started by global-setup.ts, a fresh key prefix per test, and
 * private redis-server processes for tests that stop and restart Redis.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, connect } from 'node:net';
import { inject } from 'vitest';

export const REDIS_BINARY = process.env.REDIS_SERVER_BINARY ?? '/usr/bin/redis-server';

/** The shared test server's URL (set by global-setup.ts). */
export function sharedRedisUrl(): string {
  const url = inject('redisUrl') ?? process.env.TRIAGE_TEST_REDIS_URL;
  if (!url) throw new Error('TRIAGE_TEST_REDIS_URL is not set: is test/support/global-setup.ts the globalSetup?');
  return url;
}

/** A key prefix no other test uses: tests share one server but never each other's keys. */
export function freshPrefix(label = 't'): string {
  return `${label}-${randomBytes(6).toString('hex')}`;
}

/** A TCP port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Sends PING on a raw socket; true when the server answers +PONG. */
function ping(port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    let reply = '';
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d) => {
      reply += d.toString('latin1');
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
    socket.on('error', () => done(false));
  });
}

/** Polls until the server answers PING, or throws at the deadline. */
export async function waitForPing(port: number, timeoutMs = 10_000, child?: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child && child.exitCode !== null) throw new Error(`redis-server exited with code ${child.exitCode}`);
    if (await ping(port)) return;
    if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not answer PING within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** Stops the server (SIGKILL when `hard`), resolving once the process has exited. */
  stop(hard?: boolean): Promise<void>;
  /** Starts it again on the same port (a fresh, empty server). */
  restart(): Promise<void>;
}

function spawnRedis(port: number, extraArgs: readonly string[] = []): ChildProcess {
  const child = spawn(
    REDIS_BINARY,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--loglevel', 'warning', ...extraArgs],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  child.stderr?.resume();
  return child;
}

/** Starts a private redis-server on a free port (or the given one) and waits until it answers PING. */
/** `extraArgs`: more redis-server options (e.g. `--rename-command FCALL ""` to act as a server without Functions). */
export async function startRedisServer(options: { port?: number; timeoutMs?: number; extraArgs?: readonly string[] } = {}): Promise<RedisServer> {
  let port = options.port ?? (await freePort());
  let child: ChildProcess | null = null;
  // Another process may grab a "free" port between the check and the bind: try a few ports.
  for (let attempt = 0; ; attempt++) {
    child = spawnRedis(port, options.extraArgs);
    try {
      await waitForPing(port, options.timeoutMs ?? 10_000, child);
      break;
    } catch (e) {
      child.kill('SIGKILL');
      if (options.port !== undefined || attempt >= 3) throw e;
      port = await freePort();
    }
  }
  // A test process that exits without its teardown must not leave a redis-server behind.
  const onExit = () => child?.kill('SIGKILL');
  process.once('exit', onExit);
  const exited = (c: ChildProcess) =>
    c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise<void>((r) => c.once('exit', () => r()));
  const server: RedisServer = {
    port,
    url: `redis://127.0.0.1:${port}`,
    async stop(hard = false) {
      const c = child;
      if (c === null) return;
      child = null;
      process.off('exit', onExit);
      const gone = exited(c);
      c.kill(hard ? 'SIGKILL' : 'SIGTERM');
      await gone;
    },
    async restart() {
      await server.stop();
      const c = spawnRedis(port, options.extraArgs);
      child = c;
      process.once('exit', onExit);
      await waitForPing(port, options.timeoutMs ?? 10_000, c);
    },
  };
  return server;
}
