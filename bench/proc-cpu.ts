/**
 * CPU time of a process from /proc/<pid>/stat (user + system, fields 14 and 15, in clock ticks): what
 * the Redis scenarios divide by grants to give redis-server CPU per grant. Linux only; null elsewhere
 * or when the process is gone.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

let ticksPerSecond: number | undefined;

function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** The process's CPU time so far, µs (resolution: one clock tick, 10 ms at 100 Hz). */
export function cpuMicros(pid: number): number | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) is in parentheses and may contain spaces: count fields after its ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return null;
  return ((utime + stime) * 1e6) / clockTicks();
}

/** CPU µs of each pid, read now; `since` turns a later reading into the CPU used in between. */
export function cpuReading(pids: readonly number[]): { since(): number[] } {
  const start = pids.map((p) => cpuMicros(p) ?? 0);
  return { since: () => pids.map((p, i) => (cpuMicros(p) ?? start[i]) - start[i]) };
}
