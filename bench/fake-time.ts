/**
 * Runs a router on a FakeClock as an event-driven simulation: time jumps to the next timer or the next
 * scheduled arrival, and every promise job is drained before time moves again, so each decision
 * happens at its exact (fake) time.
 */
import type { FakeClock } from '../src/core/clock.js';

export const drain = () => new Promise<void>((resolve) => setImmediate(resolve));

export interface TimedAction {
  at: number;
  run: () => void;
}

/** Advances `clock` to `end`, running `actions` at their times; bounded by `maxSteps`. */
export async function simulate(clock: FakeClock, actions: TimedAction[], end: number, maxSteps = 2_000_000): Promise<number> {
  const pending = [...actions].sort((a, b) => a.at - b.at);
  let i = 0;
  let steps = 0;
  await drain();
  for (; steps < maxSteps; steps++) {
    const timer = clock.nextTimerAt();
    const action = i < pending.length ? pending[i].at : Infinity;
    const next = Math.min(timer ?? Infinity, action);
    if (next > end) break;
    clock.advanceTo(next);
    while (i < pending.length && pending[i].at <= clock.now()) pending[i++].run();
    await drain();
    await drain();
  }
  clock.advanceTo(end);
  await drain();
  return steps;
}
