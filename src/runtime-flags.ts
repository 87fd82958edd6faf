/**
 * The V8 flags Triage runs with, in one list: the `triage` command starts node with them on its
 * command line (bin/triage.js's first line carries a copy, checked by test/launcher.test.ts, and
 * src/launcher.ts re-executes node with them when they are missing), the benchmark starts every child
 * with them, and a Router sets them at run time only when its caller asks (`v8Flags: true`): a library
 * does not change its host process's V8 settings behind its back (Node's docs warn that changing them
 * after start-up "may result in unpredictable behavior").
 *
 * `--no-allocation-site-pretenuring`: on Node 20, V8 decides early (while the young generation is
 * still small and everything in flight survives) that the small objects XState builds for every
 * action are long-lived, and allocates them straight into the old generation. Each one points at its
 * request's context, event and actor, so every finished request survived the next minor collections
 * until a full one, and the objects allocated after it in turn: the decision feeds itself. Throughput,
 * pauses and promotion with and without it: docs/performance.md, "Where the time goes".
 */
import { setFlagsFromString } from 'node:v8';

export const V8_FLAGS: readonly string[] = ['--no-allocation-site-pretenuring'];

/** The flags of V8_FLAGS that a node started with `execArgv` (its command-line options) lacks. */
export function missingV8Flags(execArgv: readonly string[]): string[] {
  return V8_FLAGS.filter((flag) => !execArgv.includes(flag));
}

/** Sets V8_FLAGS in this running process: only for a program that opts in (RouterOptions.v8Flags). */
export function applyV8Flags(): void {
  for (const flag of V8_FLAGS) setFlagsFromString(flag);
}
