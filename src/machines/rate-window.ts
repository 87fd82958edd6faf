/**
 * A sliding 60-second window of (time, amount) records: requests for rpm (amount 1), tokens for tpm.
 *
 * "rpm: 60" means no more than 60 dispatches in ANY 60 s span, not per calendar minute, so the window
 * keeps each record until it is 60 s old. Records are appended in time order, so expiry pops from the
 * front (amortised O(1)); `nextCapacityAt` tells the scheduler when to wake, so nobody polls.
 */

export const WINDOW_MS = 60_000;

export interface WindowRecord {
  at: number;
  amount: number;
}

export class RateWindow {
  private records: WindowRecord[] = [];
  private head = 0;
  private total = 0;

  constructor(
    readonly limit: number,
    private readonly windowMs: number = WINDOW_MS,
  ) {}

  private expire(now: number): void {
    const cutoff = now - this.windowMs;
    while (this.head < this.records.length && this.records[this.head].at <= cutoff) {
      this.total -= this.records[this.head].amount;
      this.head += 1;
    }
    // Compact once the dead prefix dominates, so memory follows the live window.
    if (this.head > 1024 && this.head * 2 > this.records.length) {
      this.records = this.records.slice(this.head);
      this.head = 0;
    }
  }

  used(now: number): number {
    this.expire(now);
    return this.total;
  }

  /** Whether `amount` more fits now. A single amount above the limit fits only into an empty window. */
  fits(amount: number, now: number): boolean {
    const used = this.used(now);
    return used + amount <= this.limit || used === 0;
  }

  /** Records `amount` at `now`; returns the record so its amount can be reconciled later. */
  add(amount: number, now: number): WindowRecord {
    this.expire(now);
    const record = { at: now, amount };
    this.records.push(record);
    this.total += amount;
    return record;
  }

  /** Replaces a record's amount (a tpm reservation reconciled with real usage). */
  adjust(record: WindowRecord, amount: number, now: number): void {
    this.expire(now);
    if (record.at > now - this.windowMs) this.total += amount - record.amount;
    record.amount = amount;
  }

  /** How many of the window's records at `now` leave it at or before `t` (binary search: records are in time order). */
  leavingBy(t: number, now: number): number {
    this.expire(now);
    const cutoff = t - this.windowMs;
    let lo = this.head;
    let hi = this.records.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.records[mid].at <= cutoff) lo = mid + 1;
      else hi = mid;
    }
    return lo - this.head;
  }

  /** The earliest time at which `amount` more would fit, or `now` if it fits already. */
  nextCapacityAt(amount: number, now: number): number {
    let used = this.used(now);
    if (used + amount <= this.limit || used === 0) return now;
    for (let i = this.head; i < this.records.length; i++) {
      used -= this.records[i].amount;
      if (used + amount <= this.limit || used === 0) return this.records[i].at + this.windowMs;
    }
    return now;
  }
}

/**
 * Events over the last 60 s counted in one-second buckets: constant memory at any rate, for estimates
 * (Retry-After from the observed grant rate) where a per-event log would hold a minute of records.
 */
export class EventRate {
  private readonly counts = new Array<number>(60).fill(0);
  private readonly seconds = new Array<number>(60).fill(-Infinity);

  add(now: number): void {
    const second = Math.floor(now / 1000);
    const i = ((second % 60) + 60) % 60;
    if (this.seconds[i] !== second) {
      this.seconds[i] = second;
      this.counts[i] = 0;
    }
    this.counts[i] += 1;
  }

  /** Events in the 60 whole seconds up to and including now's second. */
  count(now: number): number {
    const second = Math.floor(now / 1000);
    let n = 0;
    for (let i = 0; i < 60; i++) if (this.seconds[i] > second - 60 && this.seconds[i] <= second) n += this.counts[i];
    return n;
  }
}
