/**
 * The scheduler's pump loop bookkeeping, apart from the statechart: whether a pump is running (and
 * whether it must run again when it ends), the waiting and in-flight counts the states read, the
 * arrival whose enqueue is being pumped, and the group's ONE wake-up timer.
 *
 * It is a plain object held by reference in the actor's context, so no transition copies it; the
 * scheduler machine's actions call it. The hot path stays in one call: an in-memory store's pump runs
 * and is applied inside the action that asked for it, with no event of its own (docs/performance.md).
 *
 * The wake-up is a timer this object owns rather than an XState `after`: its moment changes with
 * nearly every pump (a window reopening, a cooldown ending, a deadline), and re-arming it must cost
 * nothing when the moment is unchanged. Its only effect is `onWake`, which sends the actor `wake`.
 */
import type { Clock, TimerHandle } from '../core/clock.js';

/** Where an accepted request stands in the queue. */
export interface Acceptance {
  seq: number;
  round: number;
  position: number;
  /** Estimated grant time (clock ms), null when unknown; absent when the store does not estimate. */
  etaAt?: number | null;
}

/** The request whose enqueue is being pumped: its grant carries its acceptance. */
export interface Arrival {
  id: string;
  accepted: Acceptance;
}

export class SchedulerPump {
  /** Requests waiting in the queue, as of the last pump. */
  waiting = 0;
  /** Grants handed out and not yet released. */
  inFlight = 0;
  arrival: Arrival | undefined = undefined;
  private running = false;
  private again = false;
  private wakeAtMs: number | null = null;
  private timer: TimerHandle | undefined = undefined;

  constructor(
    private readonly clock: Clock,
    private readonly onWake: () => void,
  ) {}

  /** The moment the wake-up timer is set for (clock ms), null when none is. */
  get wakeAt(): number | null {
    return this.wakeAtMs;
  }

  /** True: start a pump now. False: one is running; it runs again once it ends. */
  begin(): boolean {
    if (this.running) {
      this.again = true;
      return false;
    }
    this.running = true;
    this.again = false;
    return true;
  }

  /** Ends the running pump; true when something changed meanwhile and the caller must pump again. */
  end(): boolean {
    this.running = false;
    return this.again;
  }

  /** The running pump failed: the loop stops; the next change starts a new one. */
  abort(): void {
    this.running = false;
  }

  /** Counts a pump's result: the queue's new length and the grants it handed out. */
  counted(waiting: number, granted: number): void {
    this.waiting = waiting;
    this.inFlight += granted;
  }

  /** Grants made elsewhere (another instance) for this group's waiters. */
  grantedRemotely(granted: number): void {
    this.inFlight += granted;
  }

  released(): void {
    this.inFlight = Math.max(0, this.inFlight - 1);
  }

  /** Takes the arrival if `id` is it (its grant or expiry then carries its acceptance). */
  takeArrival(id: string): Arrival | undefined {
    const arrival = this.arrival;
    if (arrival === undefined || arrival.id !== id) return undefined;
    this.arrival = undefined;
    return arrival;
  }

  /**
   * When to wake after a pump: the store's next moment; with a shared store and waiters, also the
   * polling re-check, since another process may free capacity without telling this one.
   */
  nextWake(storeWakeAt: number | null, shared: boolean, pollingIntervalMs: number): number | null {
    if (!shared || this.waiting === 0) return storeWakeAt;
    const recheck = this.clock.now() + pollingIntervalMs;
    return storeWakeAt === null ? recheck : Math.min(storeWakeAt, recheck);
  }

  /** Wakes no later than `at` (a cooldown's end): moves the timer only if that is sooner. */
  wakeBy(at: number): void {
    if (this.wakeAtMs === null || at < this.wakeAtMs) this.arm(at);
  }

  /** Sets the one timer for `wakeAt` (clock ms), or clears it with null. An unchanged moment costs nothing. */
  arm(wakeAt: number | null): void {
    if (wakeAt === this.wakeAtMs) return;
    this.wakeAtMs = wakeAt;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    if (wakeAt === null) return;
    this.timer = this.clock.setTimeout(
      () => {
        this.timer = undefined;
        this.onWake();
      },
      Math.max(0, wakeAt - this.clock.now()),
    );
  }

  /** The wake-up arrived: no moment is set until the pump it starts sets one. */
  woke(): void {
    this.wakeAtMs = null;
    this.timer = undefined;
  }
}
