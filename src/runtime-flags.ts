/**
 * V8 settings the gateway process runs with: the CLI applies them as it starts, and the benchmarks
 * start every child with them, so the figures in docs/performance.md are those of `npm start`.
 *
 * `--no-allocation-site-pretenuring`: on Node 20, V8 decides early that the small argument objects
 * XState builds for every action are long-lived and allocates them straight into the old generation.
 * Each one points at its request's context, event and actor, so every finished request survived the
 * next minor collections until a full one. Without the decision, minor GCs promote ~5× less and pause
 * about half as long, and the Router API serves ~20% more requests per second (measured; see
 * docs/performance.md, "Where the time goes"). Programs that embed the Router can pass the same flag.
 */
import { setFlagsFromString } from 'node:v8';

export const V8_FLAGS: readonly string[] = ['--no-allocation-site-pretenuring'];

/** Applies V8_FLAGS to this process; call it before the first request is served. */
export function applyV8Flags(): void {
  for (const flag of V8_FLAGS) setFlagsFromString(flag);
}
