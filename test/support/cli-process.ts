/** Runs the built CLI (`dist/src/cli.js`, produced by the typecheck step of `npm test`) as a child process. */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { V8_FLAGS } from '../../src/runtime-flags.js';

export const CLI = fileURLToPath(new URL('../../dist/src/cli.js', import.meta.url));
/** The `triage` command (bin/triage.js), which starts the built CLI through dist/src/launcher.js. */
export const BIN = fileURLToPath(new URL('../../bin/triage.js', import.meta.url));

export function assertBuilt(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` (npm test does) before these tests`);
}

export interface CliProcess {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the URL the gateway printed once it listens. */
  url: Promise<string>;
  exit: Promise<number | null>;
}

/** `command`: what runs the CLI (default: node with the V8 flags on its command line, as bin/triage.js starts it). */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}, command: string[] = [process.execPath, ...V8_FLAGS, CLI]): CliProcess {
  assertBuilt();
  const [program, ...programArgs] = command;
  const child = spawn(program!, [...programArgs, ...args], { env: { ...process.env, TRIAGE_LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const url = new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /Triage listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    child.on('exit', (code) => reject(new Error(`cli exited (${code}) before listening: ${err}`)));
  });
  url.catch(() => undefined);
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, stdout: () => out, stderr: () => err, url, exit };
}

/** Whether the CLI process is still running (neither exited nor killed). */
export function isRunning(p: CliProcess): boolean {
  return p.child.exitCode === null && p.child.signalCode === null;
}

/** Kills (SIGKILL) each process still running and waits until every one has exited. */
export async function killAll(processes: CliProcess[]): Promise<void> {
  for (const p of processes) if (isRunning(p)) p.child.kill('SIGKILL');
  await Promise.all(processes.map((p) => p.exit));
}
