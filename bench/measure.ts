/**
 * The benchmark's arithmetic, as small pure functions with no clock and no I/O, so each can be checked
 * against a workload whose answer is known (test/bench-measure.test.ts): percentiles, medians, sliding-window
 * limit violations, parallel-limit violations, priority inversions, utilisation, ratios and target status.
 */

export interface Summary {
  n: number;
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/**
 * The p-th percentile (0 < p ≤ 100) of ascending-sorted values, by the nearest-rank method: the
 * smallest value with at least p% of the values at or below it. NaN for no values.
 */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  if (!(p > 0)) return sorted[0];
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** The middle value (mean of the two middle ones for an even count); NaN for none. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Count, min, mean, p50, p90, p99 and max of a sample (any order; the input is not modified). */
export function summarize(values: readonly number[]): Summary {
  const sorted = Float64Array.from(values).sort();
  const arr = Array.from(sorted);
  let sum = 0;
  for (const v of arr) sum += v;
  return {
    n: arr.length,
    min: arr.length ? arr[0] : NaN,
    mean: arr.length ? sum / arr.length : NaN,
    p50: percentile(arr, 50),
    p90: percentile(arr, 90),
    p99: percentile(arr, 99),
    max: arr.length ? arr[arr.length - 1] : NaN,
  };
}

/** value / baseline; null when either is missing or the baseline is 0. */
export function ratio(value: number | null | undefined, baseline: number | null | undefined): number | null {
  if (value === null || value === undefined || baseline === null || baseline === undefined) return null;
  if (!Number.isFinite(value) || !Number.isFinite(baseline) || baseline === 0) return null;
  return value / baseline;
}

/** One grant in a dispatch log: when, on which deployment, and how much of the limit it uses (1 for rpm, tokens for tpm). */
export interface Dispatch {
  at: number;
  deployment: string;
  amount?: number;
}

/** Items grouped by their deployment, each group in the items' order. */
function byDeployment<T extends { deployment: string }>(items: readonly T[]): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    let list = groups.get(item.deployment);
    if (list === undefined) groups.set(item.deployment, (list = []));
    list.push(item);
  }
  return groups;
}

/**
 * Sliding-window violations, per deployment: taken in time order, a dispatch is a violation when it
 * and the dispatches before it in the window (at - windowMs, at] add up to more than `limit`.
 * This is the rpm/tpm rule of the limiter (a record leaves the window when it is windowMs old), so
 * every window of the log is checked: each window that holds too much ends at a violating dispatch.
 */
export function countWindowViolations(log: readonly Dispatch[], limit: number, windowMs = 60_000): number {
  let violations = 0;
  for (const list of byDeployment(log).values()) {
    const sorted = [...list].sort((a, b) => a.at - b.at);
    let start = 0;
    let sum = 0;
    for (let i = 0; i < sorted.length; i++) {
      sum += sorted[i].amount ?? 1;
      while (sorted[start].at <= sorted[i].at - windowMs) {
        sum -= sorted[start].amount ?? 1;
        start += 1;
      }
      // Taken in time order, so each dispatch beyond the limit counts once (several at one instant too).
      if (sum > limit) violations += 1;
    }
  }
  return violations;
}

/** One call holding a slot of a deployment from `start` to `end`. */
export interface SlotInterval {
  deployment: string;
  start: number;
  end: number;
}

/**
 * Parallel-limit violations, per deployment: a call is a violation when, at its start, more than
 * `limit` calls (counting it) hold a slot. A call that ends at the same instant another starts has
 * freed its slot first (release, then grant).
 */
export function countParallelViolations(intervals: readonly SlotInterval[], limit: number): number {
  let violations = 0;
  for (const list of byDeployment(intervals).values()) {
    // Ends sort before starts at the same instant.
    const points: Array<[number, number]> = [];
    for (const s of list) {
      points.push([s.start, 1]);
      points.push([s.end, -1]);
    }
    points.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let open = 0;
    for (const [, delta] of points) {
      open += delta;
      if (delta === 1 && open > limit) violations += 1;
    }
  }
  return violations;
}

/** A queue's life in decision order: a waiter arrives, is granted, or leaves (timeout, cancel). */
export type OrderEvent =
  | { type: 'arrive'; id: string; priority: number; seq: number }
  | { type: 'grant'; id: string }
  | { type: 'leave'; id: string };

/**
 * Priority inversions: a grant made while a strictly better waiter was already waiting, better
 * meaning a lower priority, or the same priority and an earlier arrival (lower seq). Events are
 * processed in array order, which must be the order the queue decided things in.
 */
export function countInversions(
  events: readonly OrderEvent[],
  onInversion?: (granted: { id: string; priority: number; seq: number }, better: { id: string; priority: number; seq: number }) => void,
): number {
  const waiting = new Map<string, { priority: number; seq: number }>();
  // Waiting keys, kept sorted by (priority, seq): the best waiter is always at index 0.
  const order: Array<{ id: string; priority: number; seq: number }> = [];
  const better = (a: { priority: number; seq: number }, b: { priority: number; seq: number }) =>
    a.priority < b.priority || (a.priority === b.priority && a.seq < b.seq);
  const indexOf = (key: { priority: number; seq: number }) => {
    let lo = 0;
    let hi = order.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (better(order[mid], key)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  const take = (id: string) => {
    const key = waiting.get(id);
    if (key === undefined) return undefined;
    waiting.delete(id);
    const i = indexOf(key);
    order.splice(i, 1);
    return key;
  };
  let inversions = 0;
  for (const e of events) {
    if (e.type === 'arrive') {
      const key = { priority: e.priority, seq: e.seq };
      if (waiting.has(e.id)) take(e.id);
      waiting.set(e.id, key);
      order.splice(indexOf(key), 0, { id: e.id, ...key });
    } else if (e.type === 'grant') {
      const key = take(e.id);
      if (key !== undefined && order.length > 0 && better(order[0], key)) {
        inversions += 1;
        onInversion?.({ id: e.id, ...key }, order[0]);
      }
    } else {
      take(e.id);
    }
  }
  return inversions;
}

/** Timed records of a queue shared by several processes, each time already on one common time base. */
export interface TimedArrival {
  id: string;
  priority: number;
  seq: number;
  /** When the enqueue was confirmed (the waiter was certainly in the queue by then). */
  at: number;
}

export interface TimedGrant {
  id: string;
  /** The shared store's decision counter (pump call number): equal for grants of one atomic decision. */
  decision: number;
  /** A lower bound of when the decision was made (when the call that made it was sent); NaN if unknown. */
  notBefore: number;
}

export interface TimedLeave {
  id: string;
  at: number;
}

/**
 * Builds the decision-order event list of a shared queue from timed records, conservatively (no
 * inversion is counted that the records do not prove): a decision is placed at the latest lower
 * bound known for it or for any earlier decision (decision numbers are ordered), and an arrival only
 * `toleranceMs` after its confirmation; so a waiter counts as waiting at a decision only when it was
 * certainly queued before the decision began. Grants of one decision come together, best first, so a
 * batch is never counted as inverting itself; a waiter granted before its arrival was confirmed never
 * counts as waiting.
 */
export function orderEventsFromTimed(
  arrivals: readonly TimedArrival[],
  grants: readonly TimedGrant[],
  leaves: readonly TimedLeave[] = [],
  toleranceMs = 0,
): OrderEvent[] {
  const keyOf = new Map(arrivals.map((a) => [a.id, a]));
  const decisions = new Map<number, TimedGrant[]>();
  for (const g of grants) {
    let list = decisions.get(g.decision);
    if (list === undefined) decisions.set(g.decision, (list = []));
    list.push(g);
  }
  const numbers = [...decisions.keys()].sort((a, b) => a - b);
  const timeOf = new Map<number, number>();
  let latestBound = -Infinity;
  for (const n of numbers) {
    for (const g of decisions.get(n)!) if (Number.isFinite(g.notBefore)) latestBound = Math.max(latestBound, g.notBefore);
    timeOf.set(n, latestBound);
  }
  type Timed = { at: number; rank: number; order: number; event: OrderEvent };
  const timed: Timed[] = [];
  for (const a of arrivals) timed.push({ at: a.at + toleranceMs, rank: 1, order: 0, event: { type: 'arrive', id: a.id, priority: a.priority, seq: a.seq } });
  for (const l of leaves) timed.push({ at: l.at, rank: 0, order: 0, event: { type: 'leave', id: l.id } });
  numbers.forEach((n, i) => {
    const batch = [...decisions.get(n)!].sort((x, y) => {
      const a = keyOf.get(x.id);
      const b = keyOf.get(y.id);
      if (a === undefined || b === undefined) return 0;
      return a.priority - b.priority || a.seq - b.seq;
    });
    // Best first: each grant of the batch is then checked only against waiters the batch left behind.
    batch.forEach((g, j) => timed.push({ at: timeOf.get(n)!, rank: 2, order: i * 1e6 + j, event: { type: 'grant', id: g.id } }));
  });
  timed.sort((a, b) => a.at - b.at || a.rank - b.rank || a.order - b.order);
  // A waiter granted (or gone) before its confirmation was seen never counts as waiting.
  const settled = new Set<string>();
  const events: OrderEvent[] = [];
  for (const { event } of timed) {
    if (event.type === 'arrive' && settled.has(event.id)) continue;
    if (event.type !== 'arrive') settled.add(event.id);
    events.push(event);
  }
  return events;
}

/**
 * Grants a sliding-window limit allows from the first grant over a span: `perWindow` for every
 * window the span touches (a span of k windows minus a moment allows k bursts).
 */
export function allowedByWindow(perWindow: number, spanMs: number, windowMs = 60_000): number {
  if (!(spanMs > 0)) return perWindow;
  return perWindow * Math.ceil(spanMs / windowMs);
}

/** achieved / allowed (null when nothing was allowed). */
export function utilisation(achieved: number, allowed: number): number | null {
  return allowed > 0 ? achieved / allowed : null;
}

export type Status = 'met' | 'MISSED' | 'n/a';

/** 'met' when value compares to target as asked, 'MISSED' otherwise, 'n/a' when there is no value. */
export function targetStatus(value: number | null | undefined, comparison: '<' | '<=' | '>=' | '==', target: number): Status {
  if (value === null || value === undefined || Number.isNaN(value)) return 'n/a';
  const ok =
    comparison === '<' ? value < target : comparison === '<=' ? value <= target : comparison === '>=' ? value >= target : value === target;
  return ok ? 'met' : 'MISSED';
}
