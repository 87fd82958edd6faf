/** The benchmark's measurement functions on workloads whose answers are known (no timing is asserted). */
import { describe, expect, it } from 'vitest';
import {
  allowedByWindow,
  countInversions,
  countParallelViolations,
  countWindowViolations,
  orderEventsFromTimed,
  percentile,
  ratio,
  summarize,
  targetStatus,
  utilisation,
  type Dispatch,
  type OrderEvent,
} from '../bench/measure.js';

const oneTo = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

describe('percentiles', () => {
  it('gives the nearest-rank percentiles of 1..100', () => {
    const values = oneTo(100);
    expect(percentile(values, 50)).toBe(50);
    expect(percentile(values, 90)).toBe(90);
    expect(percentile(values, 99)).toBe(99);
    expect(percentile(values, 100)).toBe(100);
    expect(percentile(values, 0.5)).toBe(1);
  });

  it('summarizes an unsorted sample without changing it', () => {
    const values = oneTo(100).reverse();
    const s = summarize(values);
    expect(s).toEqual({ n: 100, min: 1, mean: 50.5, p50: 50, p90: 90, p99: 99, max: 100 });
    expect(values[0]).toBe(100);
  });

  it('handles tiny and empty samples', () => {
    expect(percentile([7], 99)).toBe(7);
    expect(summarize([]).n).toBe(0);
    expect(Number.isNaN(summarize([]).p50)).toBe(true);
    expect(percentile(oneTo(10), 99)).toBe(10);
  });
});

describe('sliding-window violations', () => {
  it('finds exactly 2 rpm violations in a log', () => {
    const log: Dispatch[] = [
      // rpm 3 on deployment a: four in the first minute (1 violation) ...
      { at: 0, deployment: 'a' },
      { at: 10_000, deployment: 'a' },
      { at: 20_000, deployment: 'a' },
      { at: 59_999, deployment: 'a' },
      // ... at 60 000 the dispatch at 0 has left the window: 10k, 20k, 59 999, 60k = 4 → violation.
      { at: 60_000, deployment: 'a' },
      // 80 001: window (20 001, 80 001] holds 59 999, 60 000 and this one = 3, fine.
      { at: 80_001, deployment: 'a' },
      // Deployment b never exceeds 3 in any window.
      { at: 0, deployment: 'b' },
      { at: 0, deployment: 'b' },
      { at: 0, deployment: 'b' },
      { at: 60_000, deployment: 'b' },
      { at: 60_000, deployment: 'b' },
      { at: 60_000, deployment: 'b' },
    ];
    expect(countWindowViolations(log, 3)).toBe(2);
  });

  it('counts every dispatch beyond the limit at one instant, and weighs tpm by tokens', () => {
    const burst: Dispatch[] = Array.from({ length: 5 }, () => ({ at: 1000, deployment: 'a' }));
    expect(countWindowViolations(burst, 3)).toBe(2);
    const tokens: Dispatch[] = [
      { at: 0, deployment: 'a', amount: 400 },
      { at: 30_000, deployment: 'a', amount: 600 },
      { at: 45_000, deployment: 'a', amount: 1 }, // 1001 tokens in the window: violation
      { at: 60_000, deployment: 'a', amount: 399 }, // (0, 60 000]: 600 + 1 + 399 = 1000, fine
    ];
    expect(countWindowViolations(tokens, 1000)).toBe(1);
  });

  it('checks a shorter window when asked (a tolerance for clocks of several processes)', () => {
    const log: Dispatch[] = [
      { at: 0, deployment: 'a' },
      { at: 59_998, deployment: 'a' },
    ];
    expect(countWindowViolations(log, 1)).toBe(1);
    expect(countWindowViolations(log, 1, 59_995)).toBe(0);
  });
});

describe('parallel violations', () => {
  it('counts starts that exceed the limit, a release at the same instant freeing its slot first', () => {
    const intervals = [
      { deployment: 'a', start: 0, end: 10 },
      { deployment: 'a', start: 0, end: 5 },
      { deployment: 'a', start: 5, end: 12 }, // the call ending at 5 freed its slot
      { deployment: 'a', start: 6, end: 8 }, // third call in flight: violation
      { deployment: 'a', start: 7, end: 9 }, // fourth: violation
      { deployment: 'b', start: 0, end: 100 },
      { deployment: 'b', start: 1, end: 100 },
    ];
    expect(countParallelViolations(intervals, 2)).toBe(2);
  });
});

describe('priority inversions', () => {
  it('finds exactly 3 inversions in a sequence', () => {
    const arrive = (id: string, priority: number, seq: number): OrderEvent => ({ type: 'arrive', id, priority, seq });
    const grant = (id: string): OrderEvent => ({ type: 'grant', id });
    const events: OrderEvent[] = [
      arrive('a', 5, 1),
      arrive('b', 1, 2),
      grant('a'), // b (priority 1) waits: inversion 1
      grant('b'),
      arrive('c', 3, 3),
      arrive('d', 3, 4),
      grant('d'), // c has the same priority and arrived first: inversion 2
      arrive('e', 0, 5),
      { type: 'leave', id: 'e' }, // e timed out: no longer waiting
      grant('c'),
      arrive('f', 2, 6),
      arrive('g', 2, 7),
      arrive('h', 9, 8),
      grant('f'),
      grant('h'), // g waits with a better priority: inversion 3
      grant('g'),
    ];
    expect(countInversions(events)).toBe(3);
  });

  it('is 0 for grants strictly in (priority, arrival) order', () => {
    const events: OrderEvent[] = [];
    for (let i = 0; i < 50; i++) events.push({ type: 'arrive', id: `r${i}`, priority: i % 5, seq: i });
    const order = [...Array(50).keys()].sort((a, b) => (a % 5) - (b % 5) || a - b);
    for (const i of order) events.push({ type: 'grant', id: `r${i}` });
    expect(countInversions(events)).toBe(0);
  });

  it('builds a conservative decision order from timed records of several processes', () => {
    const arrivals = [
      { id: 'a', priority: 5, seq: 1, at: 0 },
      { id: 'b', priority: 1, seq: 2, at: 0.5 },
      { id: 'x', priority: 3, seq: 3, at: 5 },
      { id: 'c', priority: 0, seq: 4, at: 9.5 },
      { id: 'd', priority: 0, seq: 5, at: 20 },
      { id: 'y', priority: 3, seq: 6, at: 21 },
    ];
    const grants = [
      // Decision 1 granted a and b together (one seen locally, one delivered remotely): no inversion.
      { id: 'a', decision: 1, notBefore: 2 },
      { id: 'b', decision: 1, notBefore: NaN },
      // Decision 2 (sent at 10) granted x; c was confirmed 0.5 ms before: only counted without tolerance.
      { id: 'x', decision: 2, notBefore: 10 },
      // Decision 3 (sent at 30) granted y while c and d (priority 0) certainly waited: an inversion.
      { id: 'y', decision: 3, notBefore: 30 },
      // Decision 4 came from another instance (no bound of its own): placed no earlier than decision 3.
      { id: 'c', decision: 4, notBefore: NaN },
      { id: 'd', decision: 4, notBefore: NaN },
    ];
    expect(countInversions(orderEventsFromTimed(arrivals, grants, [], 1))).toBe(1);
    expect(countInversions(orderEventsFromTimed(arrivals, grants, [], 0))).toBe(2);
  });

  it('counts nothing it cannot prove: a remote decision with no bound, a grant seen before its arrival', () => {
    const arrivals = [
      { id: 'late', priority: 0, seq: 1, at: 50 }, // granted by another instance before its reply arrived
      { id: 'b', priority: 5, seq: 2, at: 0 },
      { id: 'w', priority: 0, seq: 3, at: 1 },
    ];
    const grants = [
      { id: 'late', decision: 1, notBefore: 10 },
      // Decision 2 granted b while w (better) waited, but nothing bounds when decision 2 began after 10:
      // w arrived at 1, before 10, so this one is proven.
      { id: 'b', decision: 2, notBefore: NaN },
      { id: 'w', decision: 3, notBefore: 60 },
    ];
    expect(countInversions(orderEventsFromTimed(arrivals, grants, [], 1))).toBe(1);
    const unbounded = grants.map((g) => ({ ...g, notBefore: NaN }));
    expect(countInversions(orderEventsFromTimed(arrivals, unbounded, [], 1))).toBe(0);
  });
});

describe('utilisation, ratios and status', () => {
  it('counts the windows a span touches', () => {
    expect(allowedByWindow(100, 60_000 * 2 - 1)).toBe(200);
    expect(allowedByWindow(100, 60_000 * 2 + 1)).toBe(300);
    expect(allowedByWindow(100, 1)).toBe(100);
    expect(utilisation(190, 200)).toBe(0.95);
    expect(utilisation(1, 0)).toBeNull();
  });

  it('compares against baselines and targets', () => {
    expect(ratio(25, 100)).toBe(0.25);
    expect(ratio(1, 0)).toBeNull();
    expect(ratio(null, 3)).toBeNull();
    expect(targetStatus(0.36, '>=', 0.35)).toBe('met');
    expect(targetStatus(0.34, '>=', 0.35)).toBe('MISSED');
    expect(targetStatus(1, '<', 1)).toBe('MISSED');
    expect(targetStatus(0, '==', 0)).toBe('met');
    expect(targetStatus(null, '<', 1)).toBe('n/a');
  });
});

describe('decision numbers of shared-store grants', () => {
  it('reads the pump counter from either grant id form, and falls back for local ids', async () => {
    const { decisionOf } = await import('../bench/store-log.js');
    expect(decisionOf({ grantId: 'req-1/42' }, NaN)).toBe(42);
    expect(decisionOf({ grantId: 'req-1/1795619645705.9' }, NaN)).toBe(9);
    expect(decisionOf({ grantId: 'req-1/1795619645705.10' }, NaN)).toBe(10);
    expect(decisionOf({ grantId: 'g17' }, 3)).toBe(3);
  });
});
