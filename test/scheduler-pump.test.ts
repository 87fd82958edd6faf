import { describe, expect, it } from 'vitest';
import { FakeClock } from '../src/core/clock.js';
import { SchedulerPump } from '../src/machines/scheduler-pump.js';

function pumpWithClock(): { pump: SchedulerPump; clock: FakeClock; wakes: number[] } {
  const clock = new FakeClock(1_000);
  const wakes: number[] = [];
  const pump = new SchedulerPump(clock, () => wakes.push(clock.now()));
  return { pump, clock, wakes };
}

describe('SchedulerPump: the pump loop', () => {
  it('runs one pump at a time; a change during a run asks for exactly one more', () => {
    const { pump } = pumpWithClock();
    expect(pump.begin()).toBe(true);
    expect(pump.begin()).toBe(false);
    expect(pump.begin()).toBe(false);
    expect(pump.end()).toBe(true);
    expect(pump.begin()).toBe(true);
    expect(pump.end()).toBe(false);
  });

  it('a failed pump ends the loop, so the next change starts a new one', () => {
    const { pump } = pumpWithClock();
    expect(pump.begin()).toBe(true);
    pump.abort();
    expect(pump.begin()).toBe(true);
  });

  it('counts waiters and grants in flight; a release never takes the count below zero', () => {
    const { pump } = pumpWithClock();
    pump.counted(3, 2);
    pump.grantedRemotely(1);
    expect([pump.waiting, pump.inFlight]).toEqual([3, 3]);
    pump.released();
    pump.released();
    pump.released();
    pump.released();
    expect(pump.inFlight).toBe(0);
  });

  it('hands the arrival over once, and only to its own request', () => {
    const { pump } = pumpWithClock();
    const arrival = { id: 'a', accepted: { seq: 1, round: 0, position: 0 } };
    pump.arrival = arrival;
    expect(pump.takeArrival('b')).toBeUndefined();
    expect(pump.takeArrival('a')).toBe(arrival);
    expect(pump.takeArrival('a')).toBeUndefined();
  });
});

describe('SchedulerPump: the one wake-up timer', () => {
  it('keeps one timer, moved to each new moment and left alone when the moment is unchanged', () => {
    const { pump, clock, wakes } = pumpWithClock();
    pump.arm(1_500);
    pump.arm(1_500);
    pump.arm(1_200);
    expect(clock.pendingTimers).toBe(1);
    expect(pump.wakeAt).toBe(1_200);
    clock.advance(1_000);
    expect(wakes).toEqual([1_200]);
    expect(clock.pendingTimers).toBe(0);
  });

  it('arm(null) clears the timer', () => {
    const { pump, clock, wakes } = pumpWithClock();
    pump.arm(2_000);
    pump.arm(null);
    expect(clock.pendingTimers).toBe(0);
    clock.advance(5_000);
    expect(wakes).toEqual([]);
  });

  it('wakeBy only brings the moment forward', () => {
    const { pump } = pumpWithClock();
    pump.wakeBy(3_000);
    pump.wakeBy(4_000);
    expect(pump.wakeAt).toBe(3_000);
    pump.wakeBy(2_000);
    expect(pump.wakeAt).toBe(2_000);
  });

  it('after a wake-up no moment is set, so the next pump re-arms even the same moment', () => {
    const { pump, clock, wakes } = pumpWithClock();
    pump.arm(1_100);
    clock.advance(100);
    pump.woke();
    expect(pump.wakeAt).toBeNull();
    pump.arm(1_150);
    clock.advance(50);
    expect(wakes).toEqual([1_100, 1_150]);
  });

  it("wakes at the store's moment, or sooner for the polling re-check when a shared store has waiters", () => {
    const { pump } = pumpWithClock();
    expect(pump.nextWake(5_000, true, 500)).toBe(5_000); // nobody waits: no re-check
    pump.counted(2, 0);
    expect(pump.nextWake(5_000, false, 500)).toBe(5_000);
    expect(pump.nextWake(null, false, 500)).toBeNull();
    expect(pump.nextWake(5_000, true, 500)).toBe(1_500);
    expect(pump.nextWake(1_200, true, 500)).toBe(1_200);
    expect(pump.nextWake(null, true, 500)).toBe(1_500);
  });
});
