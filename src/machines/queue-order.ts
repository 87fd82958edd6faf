/**
 * The order in which waiters are served, as plain functions shared by every store.
 *
 * A waiter's place is fixed when it is enqueued, so the queue never has to be re-sorted:
 * - `rank`: its priority (lower first). With aging on, the rank is `priority + enqueuedAt / agingMs`
 *   (computed as `priority * agingMs + enqueuedAt`, the same order without rounding error):
 *   a request that has waited one interval ties with one of a priority one better arriving now. The
 *   effective priority keeps improving by one per interval as it waits, and because every waiter ages
 *   at the same rate, the order between two waiters never changes: no re-heap on a clock tick.
 * - `round`: fair share between tenants (API keys) at the same priority. Each tenant's n-th waiting
 *   request at a priority gets a later round than its (n-1)-th, and a tenant that arrives late starts at
 *   the round being served, so equal-priority requests from different keys alternate (round-robin)
 *   instead of one noisy key starving the rest.
 * - `seq`: arrival order, the final tie-break (first come, first served).
 */

export interface OrderKey {
  rank: number;
  round: number;
  seq: number;
}

export function compareOrder(a: OrderKey, b: OrderKey): number {
  return a.rank - b.rank || a.round - b.round || a.seq - b.seq;
}

/** The same order as numbers compared in turn, for RankedQueue (ranked-queue.ts). */
export function writeOrderKey(key: OrderKey, out: Float64Array): void {
  out[0] = key.rank;
  out[1] = key.round;
  out[2] = key.seq;
}

export function orderRank(priority: number, enqueuedAt: number, agingMs: number | undefined): number {
  // Later arrivals must rank worse (higher), so enqueuedAt is added. Scaled by agingMs so the rank is
  // exact integer arithmetic: `p + t / I` would make the documented tie depend on float rounding.
  return agingMs === undefined ? priority : priority * agingMs + enqueuedAt;
}

/** The effective priority a waiter has reached at `now` (reported in snapshots). */
export function effectivePriority(
  priority: number,
  enqueuedAt: number,
  now: number,
  agingMs: number | undefined,
): number {
  return agingMs === undefined ? priority : priority - Math.floor(Math.max(0, now - enqueuedAt) / agingMs);
}

/**
 * Assigns rounds for round-robin between tenants at one priority. Memory is one number per
 * (priority, tenant) pair seen, bounded by the configured keys.
 */
export class FairRounds {
  private readonly served = new Map<number, number>();
  private readonly last = new Map<string, number>();

  next(priority: number, tenant: string): number {
    const tenantKey = `${priority}\u0000${tenant}`;
    const served = this.served.get(priority) ?? 0;
    const last = this.last.get(tenantKey);
    const round = last === undefined ? served : Math.max(last + 1, served);
    this.last.set(tenantKey, round);
    return round;
  }

  /** Called when a waiter of this priority is granted: later arrivals start no earlier than its round. */
  markServed(priority: number, round: number): void {
    if (round > (this.served.get(priority) ?? 0)) this.served.set(priority, round);
  }
}
