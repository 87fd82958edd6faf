/**
 * The scheduler's pump loop bookkeeping, apart from the statechart: whether a pump is running (and
 * whether it must run again when it ends), the waiting and in-flight counts the states read, the
 * arrival whose enqueue is being pumped, and the moment the group should next wake at.
 *
 * It is a plain object held by reference in the actor's context, so no transition copies it; the
 * scheduler machine's actions call it. The hot path stays in one call: an in-memory store's pump runs
 * and is applied inside the action that asked for it, with no event of its own (docs/performance.md).
 *
 * It owns no timer. The wake-up is the actor's own delayed event (`raise` with a delay, on the actor
 * system's clock): this object only says which moment is wanted (`wakeAt`) and which one the actor's
 * event is set for (`armedAt`), so the machine re-arms only when the two differ and an unchanged
 * moment costs nothing.
 */
import type { Clock } from '../core/clock.js';

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
  private wanted: number | null = null;
  private armedFor: number | null = null;

  constructor(private readonly clock: Clock) {}

  /** The moment to wake at (clock ms), null when none is wanted. */
  get wakeAt(): number | null {
    return this.wanted;
  }

  /** The moment the actor's delayed `wake` event is set for, null when none is pending. */
  get armedAt(): number | null {
    return this.armedFor;
  }

  /** The wanted moment differs from the one the actor's wake-up is set for: re-arm it. */
  get wakeMoved(): boolean {
    return this.wanted !== this.armedFor;
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

  /** Wakes no later than `at` (a cooldown's end): moves the moment only if that is sooner. */
  wakeBy(at: number): void {
    if (this.wanted === null || at < this.wanted) this.wanted = at;
  }

  /** Wants the wake-up at `at` (clock ms), or none with null. */
  wakeFor(at: number | null): void {
    this.wanted = at;
  }

  /** The actor (re-)armed its wake-up: it is now set for the wanted moment, which this returns. */
  armed(): number | null {
    this.armedFor = this.wanted;
    return this.wanted;
  }

  /** The actor cancelled its wake-up. */
  disarmed(): void {
    this.armedFor = null;
  }

  /** The wake-up arrived: nothing is pending and no moment is wanted until the pump it starts sets one. */
  woke(): void {
    this.wanted = null;
    this.armedFor = null;
  }
}
