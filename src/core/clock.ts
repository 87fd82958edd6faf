/**
 * All time in Triage comes from a Clock, so tests run the scheduler on fake time. The shape matches
 * XState's `clock` actor option, so machines' delayed events use the same clock.
 */

export type TimerHandle = unknown;

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

/** Node's longest timer (2^31-1 ms, ~24.8 days); a longer delay would fire after 1 ms instead. */
const MAX_TIMER_MS = 2_147_483_647;

/** A timer longer than Node allows, run as a chain of maximal timers. */
class LongTimer {
  timer: NodeJS.Timeout | undefined;
  constructor(fn: () => void, ms: number) {
    this.arm(fn, ms);
  }
  private arm(fn: () => void, remaining: number): void {
    this.timer = remaining > MAX_TIMER_MS ? setTimeout(() => this.arm(fn, remaining - MAX_TIMER_MS), MAX_TIMER_MS) : setTimeout(fn, remaining);
    this.timer.unref?.();
  }
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    // Deadlines far away (a body `timeout` of 1e7 s) must not overflow into a 1 ms busy loop.
    if (ms > MAX_TIMER_MS) return new LongTimer(fn, ms);
    const t = setTimeout(fn, Math.max(0, ms));
    // A pending wake-up must never keep a finished process alive.
    t.unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h instanceof LongTimer ? h.timer : (h as NodeJS.Timeout)),
};

interface FakeTimer {
  id: number;
  at: number;
  fn: () => void;
}

/** A manual clock for tests and simulations: time moves only through `advance`/`advanceTo`. */
export class FakeClock implements Clock {
  private time: number;
  private timers: FakeTimer[] = [];
  private nextId = 1;

  constructor(start = 1_000_000) {
    this.time = start;
  }

  now(): number {
    return this.time;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const timer = { id: this.nextId++, at: this.time + Math.max(0, ms), fn };
    this.timers.push(timer);
    return timer.id;
  }

  clearTimeout(handle: TimerHandle): void {
    this.timers = this.timers.filter((t) => t.id !== handle);
  }

  get pendingTimers(): number {
    return this.timers.length;
  }

  /** The time of the next pending timer, if any. */
  nextTimerAt(): number | undefined {
    let min: number | undefined;
    for (const t of this.timers) if (min === undefined || t.at < min) min = t.at;
    return min;
  }

  /** Moves time forward, firing due timers in time order (timers they set are honoured too). */
  advance(ms: number): void {
    this.advanceTo(this.time + ms);
  }

  advanceTo(target: number): void {
    for (;;) {
      let due: FakeTimer | undefined;
      for (const t of this.timers) {
        if (t.at <= target && (due === undefined || t.at < due.at || (t.at === due.at && t.id < due.id))) due = t;
      }
      if (due === undefined) break;
      this.timers = this.timers.filter((t) => t !== due);
      this.time = Math.max(this.time, due.at);
      due.fn();
    }
    this.time = Math.max(this.time, target);
  }
}
