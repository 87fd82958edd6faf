import { describe, expect, it } from 'vitest';
import { FakeClock } from '../src/core/clock.js';
import { SchedulerPump } from '../src/machines/scheduler-pump.js';

function pumpWithClock(): { pump: SchedulerPump; clock: FakeClock } {
  const clock = new FakeClock(1_000);
  return { pump: new SchedulerPump(clock), clock };
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

describe("SchedulerPump: the wake-up's moment", () => {
  it('asks for a re-arm only when the wanted moment differs from the armed one', () => {
    const { pump, clock } = pumpWithClock();
    expect(pump.wakeMoved).toBe(false);
    pump.wakeFor(1_500);
    expect(pump.wakeMoved).toBe(true);
    expect(pump.armed()).toBe(1_500);
    expect([pump.wakeAt, pump.armedAt, pump.wakeMoved]).toEqual([1_500, 1_500, false]);
    pump.wakeFor(1_500);
    expect(pump.wakeMoved).toBe(false);
    pump.wakeFor(1_200);
    expect(pump.wakeMoved).toBe(true);
    expect(pump.armed()).toBe(1_200);
    pump.wakeFor(null);
    expect(pump.wakeMoved).toBe(true);
    expect(pump.armed()).toBeNull();
    expect(pump.wakeMoved).toBe(false);
    // It owns no timer: the actor's delayed event is the wake-up.
    expect(clock.pendingTimers).toBe(0);
  });

  it('a cancelled wake-up is re-armed for a moment still wanted', () => {
    const { pump } = pumpWithClock();
    pump.wakeFor(2_000);
    pump.armed();
    pump.disarmed();
    expect([pump.armedAt, pump.wakeMoved]).toEqual([null, true]);
  });

  it('wakeBy only brings the moment forward', () => {
    const { pump } = pumpWithClock();
    pump.wakeBy(3_000);
    pump.wakeBy(4_000);
    expect(pump.wakeAt).toBe(3_000);
    pump.wakeBy(2_000);
    expect(pump.wakeAt).toBe(2_000);
  });

  it('after a wake-up nothing is wanted or armed, so the next pump re-arms even the same moment', () => {
    const { pump } = pumpWithClock();
    pump.wakeFor(1_100);
    pump.armed();
    pump.woke();
    expect([pump.wakeAt, pump.armedAt, pump.wakeMoved]).toEqual([null, null, false]);
    pump.wakeFor(1_100);
    expect(pump.wakeMoved).toBe(true);
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
