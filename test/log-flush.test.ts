/**
 * The access log goes through an asynchronous destination (src/log-destination.ts), and no line is
 * lost on the way out: the last lines before a SIGTERM reach the pipe, and those before a crash reach
 * the file, followed by the crash itself at fatal.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, openSync, closeSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogDestination } from '../src/log-destination.js';
import { V8_FLAGS } from '../src/runtime-flags.js';
import { assertBuilt, CLI, runCli, type CliProcess } from './support/cli-process.js';
import { waitFor } from './support/gateway.js';

const killed: Array<{ kill(signal: NodeJS.Signals): boolean; exitCode: number | null; signalCode: NodeJS.Signals | null }> = [];
afterEach(() => {
  for (const c of killed.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

const tempFile = (name: string) => join(mkdtempSync(join(tmpdir(), 'triage-log-')), name);

/** Sends `n` chat completions at once; resolves with the request ids the gateway answered with. */
async function burst(url: string, n: number): Promise<string[]> {
  const answers = await Promise.all(
    Array.from({ length: n }, () =>
      fetch(`${url}/queue/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'triage-mock', messages: [{ role: 'user', content: 'hi' }] }) }),
    ),
  );
  for (const a of answers) expect(a.status).toBe(200);
  return answers.map((a) => a.headers.get('x-triage-request-id')!);
}

const logLines = (text: string) =>
  text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { level: number; msg: string; queue?: { requestId: string }; err?: { message: string } });

describe('the log destination', () => {
  it('flush() resolves once every line written so far is in the file', async () => {
    const path = tempFile('lines.log');
    const destination = createLogDestination(path);
    const log = pino({ level: 'info' }, destination.stream);
    for (let i = 0; i < 5_000; i++) log.info({ i }, 'line');
    // Far longer than the test may take: resolving means the lines were written, not the fallback.
    await destination.flush(120_000);
    const lines = readFileSync(path, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(5_000);
    expect(JSON.parse(lines[4_999]!).i).toBe(4_999);
    // Nothing queued: it resolves too.
    await destination.flush(120_000);
  });

  it('writes the lines of the turn in which the process exits', async () => {
    assertBuilt();
    const path = tempFile('exit.log');
    const destinationModule = pathToFileURL(fileURLToPath(new URL('../dist/src/log-destination.js', import.meta.url))).href;
    // A file descriptor, as the CLI's stdout: ready at once (a path is opened asynchronously).
    const script = `import { openSync } from 'node:fs'; import pino from 'pino'; import { createLogDestination } from ${JSON.stringify(destinationModule)};
      const destination = createLogDestination(openSync(${JSON.stringify(path)}, 'w'));
      const log = pino({ level: 'info' }, destination.stream);
      setTimeout(() => { for (let i = 0; i < 2000; i++) log.info({ i }, 'line'); process.exit(0); }, 0);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: fileURLToPath(new URL('..', import.meta.url)), stdio: ['ignore', 'ignore', 'pipe'] });
    killed.push(child);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const lines = readFileSync(path, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(2_000);
    expect(JSON.parse(lines[1_999]!).i).toBe(1_999);
  });
});

describe('the CLI', () => {
  it('writes the last access-log lines before a SIGTERM to its stdout pipe', async () => {
    const c: CliProcess = runCli(['--port', '0'], { TRIAGE_LOG_LEVEL: 'info' });
    killed.push(c.child);
    const url = await c.url;
    const ended = new Promise<void>((resolve) => c.child.stdout!.on('end', resolve));
    const ids = await burst(url, 40);
    c.child.kill('SIGTERM');
    expect(await c.exit).toBe(0);
    await ended;
    const completed = new Set(logLines(c.stdout()).filter((l) => l.msg === 'request completed').map((l) => l.queue?.requestId));
    for (const id of ids) expect(completed).toContain(id);
  });

  it('writes the last access-log lines and the error to its stdout file when it crashes', async () => {
    assertBuilt();
    const path = tempFile('stdout.log');
    const out = openSync(path, 'w');
    // A crash on demand, from outside the gateway's code: SIGUSR2 makes the next turn throw.
    const crashOnSignal = `data:text/javascript,process.on('SIGUSR2', () => setImmediate(() => { throw new Error('crash on demand'); }));`;
    const child = spawn(process.execPath, [...V8_FLAGS, '--import', crashOnSignal, CLI, '--port', '0'], { env: { ...process.env, TRIAGE_LOG_LEVEL: 'info' }, stdio: ['ignore', out, 'pipe'] });
    closeSync(out);
    killed.push(child);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const url = await waitFor(() => /Triage listening on (http:\/\/\S+)/.exec(readFileSync(path, 'utf8'))?.[1], 'the gateway to listen', 20_000);
    const ids = await burst(url, 40);
    child.kill('SIGUSR2');
    expect(await exited).toBe(1);
    const lines = logLines(readFileSync(path, 'utf8'));
    const completed = new Set(lines.filter((l) => l.msg === 'request completed').map((l) => l.queue?.requestId));
    for (const id of ids) expect(completed).toContain(id);
    const fatal = lines.at(-1)!;
    expect(fatal.level).toBe(60);
    expect(fatal.err?.message).toBe('crash on demand');
    expect(stderr).toContain('crash on demand');
  });
});
