/** Helpers for tests on fake time: store operations and actor replies run as promise callbacks. */
import type { FakeClock } from '../../src/core/clock.js';

/** Lets every pending promise callback run (a few event-loop turns). */
export async function settle(rounds = 3): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((r) => setImmediate(r));
}

/** Advances the fake clock to its next pending timer and flushes; false when no timer is pending. */
export async function step(clock: FakeClock): Promise<boolean> {
  const at = clock.nextTimerAt();
  if (at === undefined) return false;
  clock.advanceTo(at);
  await settle();
  return true;
}
