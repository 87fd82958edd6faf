/**
 * V8 settings the gateway process runs with: the CLI applies them as it starts, a Router applies them
 * when it is created (unless its options say `v8Flags: false`), and the benchmarks start every child
 * with them, so the figures in docs/performance.md are those of `npm start`.
 *
 * `--no-allocation-site-pretenuring`: on Node 20, V8 decides early (while the young generation is
 * still small and everything in flight survives) that the small objects XState builds for every
 * action are long-lived, and allocates them straight into the old generation. Each one points at its
 * request's context, event and actor, so every finished request survived the next minor collections
 * until a full one, and the objects allocated after it in turn: the decision feeds itself. Measured on
 * the Router API with 32 requests in flight: without the flag ~1.9 MB promoted per minor collection,
 * ~9.7 ms pauses, a full collection every ~6k requests and ~18–21k requests/s; with it ~10 KB, ~0.8 ms,
 * no full collection in 60k requests and ~41–61k requests/s (docs/performance.md, "Where the time goes").
 */
import { setFlagsFromString } from 'node:v8';

export const V8_FLAGS: readonly string[] = ['--no-allocation-site-pretenuring'];

/** Applies V8_FLAGS to this process; call it before the first request is served. */
export function applyV8Flags(): void {
  for (const flag of V8_FLAGS) setFlagsFromString(flag);
}
