/**
 * What bin/triage.js runs: the CLI in this process when node was started with every flag of V8_FLAGS
 * (the bin's first line gives them), otherwise the CLI in a child node started with them, this process
 * passing signals on and exiting as the child does. V8's flags are given on the command line rather
 * than set at run time (src/runtime-flags.ts says why), so the fallback costs a second process.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { missingV8Flags } from './runtime-flags.js';

const FORWARDED_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

function runWithFlags(missing: string[]): void {
  const cli = fileURLToPath(new URL('./cli.js', import.meta.url));
  // Its own process group: a terminal's Ctrl-C reaches this process alone, which passes it on once
  // (the CLI takes a second signal as "exit now"). The price: a SIGKILL of this process leaves the
  // gateway running, which the usual case (flags from the bin's first line, one process) does not have.
  const child = spawn(process.execPath, [...process.execArgv, ...missing, cli, ...process.argv.slice(2)], { stdio: ['ignore', 'inherit', 'inherit'], detached: true });
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  for (const signal of FORWARDED_SIGNALS) process.on(signal, forward);
  child.on('error', (e) => {
    process.stderr.write(`triage: could not start node: ${e.message}\n`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => {
    if (signal === null) process.exit(code ?? 1);
    // Die of the same signal, so whoever started us sees what happened to the gateway.
    for (const s of FORWARDED_SIGNALS) process.off(s, forward);
    process.kill(process.pid, signal);
  });
}

const missing = missingV8Flags(process.execArgv);
if (missing.length === 0) await import('./cli.js');
else runWithFlags(missing);
