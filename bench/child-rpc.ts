/**
 * Benchmark child processes and the small request/reply protocol between them and the runner, over
 * Node's IPC channel. Every call has a timeout; every child the runner starts is remembered and
 * killed (by its own pid) when the runner ends; a child exits by itself when the runner goes away.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { V8_FLAGS } from '../src/runtime-flags.js';
import { hrNow, offsetFromProbes } from './hr-clock.js';

type Message = { id?: number; cmd?: string; ok?: boolean; result?: unknown; error?: string; event?: string; [k: string]: unknown };

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function killAll(): void {
  for (const child of live) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  live.clear();
}

export interface Child {
  readonly pid: number;
  /** Sends a command and resolves with the child's reply, or rejects after timeoutMs. */
  call<T = unknown>(cmd: string, args?: Record<string, unknown>, timeoutMs?: number): Promise<T>;
  /** Messages the child pushes on its own (`{ event }`). */
  onEvent(listener: (event: Message) => void): void;
  /** Asks the child to close (the `close` command), then kills it if it has not exited within timeoutMs. */
  stop(timeoutMs?: number): Promise<void>;
}

/**
 * Starts a compiled bench module (a path relative to dist/bench) as a child with an IPC channel.
 * `wrapper`: a command that runs node (e.g. valgrind and its options); node and its flags follow it.
 */
export function startChild(module: string, options: { execArgv?: string[]; args?: string[]; startTimeoutMs?: number; wrapper?: string[] } = {}): Promise<Child> {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', killAll);
  }
  const here = dirname(fileURLToPath(import.meta.url));
  // Every child runs with the V8 flags on its command line (src/runtime-flags.ts), as `npm start` starts node.
  const nodeArgv = [...V8_FLAGS, ...(options.execArgv ?? [])];
  const [wrapperCommand, ...wrapperArgs] = options.wrapper ?? [];
  const child = fork(join(here, module), options.args ?? [], {
    ...(wrapperCommand === undefined ? { execArgv: nodeArgv } : { execPath: wrapperCommand, execArgv: [...wrapperArgs, process.execPath, ...nodeArgv] }),
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  live.add(child);
  let nextId = 1;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  const listeners: Array<(e: Message) => void> = [];
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.on('message', (m: Message) => {
    if (m.event !== undefined) {
      for (const l of listeners) l(m);
      return;
    }
    const p = m.id === undefined ? undefined : pending.get(m.id);
    if (p === undefined) return;
    pending.delete(m.id!);
    clearTimeout(p.timer);
    if (m.ok) p.resolve(m.result);
    else p.reject(new Error(m.error ?? 'child command failed'));
  });
  child.once('exit', (code, signal) => {
    live.delete(child);
    for (const [, p] of pending) {
      clearTimeout(p.timer);
      p.reject(new Error(`${module} exited (${signal ?? code}) before answering`));
    }
    pending.clear();
  });
  const handle: Child = {
    pid: child.pid ?? -1,
    call<T>(cmd: string, args: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        if (child.exitCode !== null || !child.connected) return reject(new Error(`${module} is not running`));
        const id = nextId++;
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`${module}: ${cmd} did not answer within ${timeoutMs} ms`));
        }, timeoutMs);
        pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
        child.send({ id, cmd, ...args });
      });
    },
    onEvent(listener) {
      listeners.push(listener);
    },
    async stop(timeoutMs = 5_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      await handle.call('close', {}, timeoutMs).catch(() => undefined);
      const killer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      await exited;
      clearTimeout(killer);
    },
  };
  return new Promise<Child>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${module} did not start within ${options.startTimeoutMs ?? 15_000} ms`));
    }, options.startTimeoutMs ?? 15_000);
    handle
      .call('hello', {}, options.startTimeoutMs ?? 15_000)
      .then(() => {
        clearTimeout(timer);
        resolve(handle);
      })
      .catch((e: Error) => {
        clearTimeout(timer);
        child.kill('SIGKILL');
        reject(e);
      });
  });
}

export type Handler = (args: Record<string, unknown>) => unknown;

/**
 * In a child: answers the runner's commands with the given handlers (`hello` and `ping` are built in;
 * `close` replies, runs the handler, then exits). The process exits when the runner disconnects.
 */
export function serveCommands(handlers: Record<string, Handler>): void {
  if (process.send === undefined) throw new Error('this module runs as a benchmark child (with an IPC channel)');
  const send = (m: Message, then?: () => void) => process.send!(m, undefined, {}, () => then?.());
  process.on('disconnect', () => process.exit(0));
  process.on('message', async (m: Message) => {
    if (m.cmd === undefined || m.id === undefined) return;
    try {
      if (m.cmd === 'hello') return send({ id: m.id, ok: true, result: { pid: process.pid } });
      if (m.cmd === 'ping') return send({ id: m.id, ok: true, result: hrNow() });
      const handler = handlers[m.cmd];
      if (m.cmd === 'close') {
        await handler?.(m);
        return send({ id: m.id, ok: true, result: null }, () => process.exit(0));
      }
      if (handler === undefined) throw new Error(`unknown command ${m.cmd}`);
      const result = await handler(m);
      send({ id: m.id, ok: true, result: result ?? null });
    } catch (e) {
      send({ id: m.id, ok: false, error: String((e as Error)?.stack ?? e) });
    }
  });
}

/** In a child: pushes an event to the runner. */
export function pushEvent(event: string, data: Record<string, unknown> = {}): void {
  process.send?.({ event, ...data });
}

/** The child's clock offset to the runner's (see hr-clock.ts), from `ping` probes. */
export async function probeOffset(child: Child, probes = 15): Promise<{ offsetMs: number; rttMs: number }> {
  const samples: Array<{ sent: number; child: number; received: number }> = [];
  for (let i = 0; i < probes; i++) {
    const sent = hrNow();
    const c = await child.call<number>('ping', {}, 5_000);
    samples.push({ sent, child: c, received: hrNow() });
  }
  return offsetFromProbes(samples);
}
