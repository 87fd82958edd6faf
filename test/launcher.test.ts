/**
 * The `triage` command (bin/triage.js, src/launcher.ts) starts node with the V8 flags of
 * src/runtime-flags.ts on its command line: executed as a command, in one process; run as
 * `node bin/triage.js`, by re-executing node with them. Checked from outside, in the command line the
 * kernel shows for the process that serves (/proc/PID/cmdline), so this file runs on Linux.
 */
import { readFileSync } from 'node:fs';
import OpenAI from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { V8_FLAGS } from '../src/runtime-flags.js';
import { BIN, runCli, type CliProcess } from './support/cli-process.js';
import { waitFor } from './support/gateway.js';

const started: CliProcess[] = [];
const strays: number[] = [];
afterEach(() => {
  for (const c of started.splice(0)) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
  for (const pid of strays.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
});

function start(command: string[]): CliProcess {
  const c = runCli(['--port', '0'], {}, command);
  started.push(c);
  return c;
}

const commandLine = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');
const childrenOf = (pid: number) =>
  readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
    .split(' ')
    .filter((p) => p !== '')
    .map(Number);

async function answers(url: string): Promise<string | null> {
  const client = new OpenAI({ apiKey: 'none', baseURL: url, maxRetries: 0 });
  const r = await client.chat.completions.create({ model: 'triage-mock', messages: [{ role: 'user', content: 'hi' }] });
  return r.choices[0]!.message.content;
}

describe('the triage command', () => {
  it('run as a command, serves from one process started with the flags', async () => {
    const c = start([BIN]);
    const url = await c.url;
    const pid = c.child.pid!;
    const argv = commandLine(pid);
    for (const flag of V8_FLAGS) expect(argv).toContain(flag);
    expect(argv).toContain(BIN);
    expect(childrenOf(pid)).toEqual([]);
    expect(await answers(url)).toBe('Hello from Triage!');
    c.child.kill('SIGTERM');
    expect(await c.exit).toBe(0);
  });

  it('run as `node bin/triage.js`, re-executes node with the flags and passes signals on', async () => {
    const c = start([process.execPath, BIN]);
    const url = await c.url;
    const launcher = c.child.pid!;
    expect(commandLine(launcher)).not.toContain(V8_FLAGS[0]);
    const [server] = await waitFor(() => {
      const pids = childrenOf(launcher);
      return pids.length > 0 ? pids : undefined;
    }, 'the re-executed node');
    strays.push(server!);
    const argv = commandLine(server!);
    for (const flag of V8_FLAGS) expect(argv).toContain(flag);
    expect(argv.some((a) => a.endsWith('dist/src/cli.js'))).toBe(true);
    expect(await answers(url)).toBe('Hello from Triage!');
    // One SIGINT, as a terminal's Ctrl-C sends: the gateway drains (a second would make it exit 130).
    c.child.kill('SIGINT');
    expect(await c.exit).toBe(0);
    expect(c.stderr()).toContain('SIGINT: draining');
    expect(c.stderr()).not.toContain('again');
  });
});
