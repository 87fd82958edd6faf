/** The certain lower bound on a grant (grant-estimate.ts), as a pure function, against hand-worked cases. */
import { describe, expect, it } from 'vitest';
import { boundIsEstimate, earliestGrantAt, grantsBy, retryAfterSecondsUntil, type CapacityView } from '../src/machines/grant-estimate.js';
import { DeploymentState } from '../src/machines/deployment-state.js';

const T = 1_000_000;
const W = 60_000;

/** An rpm deployment whose window holds grants at `grants` (times), limit `limit`, ready at `readyAt`. */
function rpm(limit: number, grants: number[], readyAt = T): CapacityView {
  const sorted = [...grants].sort((a, b) => a - b);
  return {
    readyAt,
    rpm: { limit, free: Math.max(0, limit - sorted.length), reopenedBy: (t) => sorted.filter((g) => g + W <= t).length },
  };
}

const nobodyLeaves = () => 0;

describe('grantsBy: an rpm limit as lanes', () => {
  it('free lanes now, the rest as the window ages, then limit per minute', () => {
    const d = rpm(3, [T - 50_000, T - 10_000]);
    expect(grantsBy(d, T, T)).toBe(1);
    expect(grantsBy(d, T + 9_999, T)).toBe(1);
    expect(grantsBy(d, T + 10_000, T)).toBe(2);
    expect(grantsBy(d, T + 50_000, T)).toBe(3);
    // A lane used at T is busy until T + 60 s.
    expect(grantsBy(d, T + W, T)).toBe(4);
    expect(grantsBy(d, T + W + 10_000, T)).toBe(5);
    expect(grantsBy(d, T + 3 * W, T)).toBe(3 * 3 + 1);
  });

  it('nothing before a cooldown ends; then every lane reopened by then is free', () => {
    const d = rpm(2, [T - 1_000, T], T + 300_000);
    expect(grantsBy(d, T + 299_999, T)).toBe(0);
    expect(grantsBy(d, T + 300_000, T)).toBe(2);
    expect(grantsBy(d, T + 360_000, T)).toBe(4);
  });

  it('no rpm limit: unlimited once ready', () => {
    expect(grantsBy({ readyAt: T, rpm: null }, T, T)).toBe(Infinity);
    expect(grantsBy({ readyAt: T + 5_000, rpm: null }, T + 4_999, T)).toBe(0);
  });
});

describe('earliestGrantAt', () => {
  it('an rpm-bound queue: each waiter exactly when its lane reopens', () => {
    // rpm 2, both grants made at T: the lanes reopen at T + 60 s, then every 60 s.
    const ds = [rpm(2, [T, T])];
    const at = (ahead: number) => earliestGrantAt({ now: T, deployments: ds, ahead, leavingBy: nobodyLeaves, horizon: T + 3_600_000 });
    expect(at(0)).toBe(T + W);
    expect(at(1)).toBe(T + W);
    expect(at(2)).toBe(T + 2 * W);
    expect(at(5)).toBe(T + 3 * W);
  });

  it('waiters ahead that will have left by their deadline do not count', () => {
    const ds = [rpm(1, [T])];
    // 5 ahead, all leaving at T + 10 s: the newcomer could go when the lane reopens at T + 60 s.
    const leavingBy = (t: number) => (t >= T + 10_000 ? 5 : 0);
    expect(earliestGrantAt({ now: T, deployments: ds, ahead: 5, leavingBy, horizon: T + 3_600_000 })).toBe(T + W);
    // ... but if they stay until T + 200 s, it is after them: at T + 200 s, they are gone and a lane is open.
    const late = (t: number) => (t >= T + 200_000 ? 5 : 0);
    expect(earliestGrantAt({ now: T, deployments: ds, ahead: 5, leavingBy: late, horizon: T + 3_600_000 })).toBe(T + 200_000);
  });

  it('several deployments add their lanes; a cooling one only after its cooldown', () => {
    const ds = [rpm(1, [T]), rpm(1, [], T + 30_000)];
    const at = (ahead: number) => earliestGrantAt({ now: T, deployments: ds, ahead, leavingBy: nobodyLeaves, horizon: T + 3_600_000 });
    expect(at(0)).toBe(T + 30_000);
    expect(at(1)).toBe(T + W);
    expect(at(2)).toBe(T + W + 30_000);
  });

  it('max_parallel_requests alone bounds nothing: a ready deployment without rpm means now', () => {
    const ds = [rpm(1, [T]), { readyAt: T, rpm: null }];
    expect(earliestGrantAt({ now: T, deployments: ds, ahead: 1_000, leavingBy: nobodyLeaves, horizon: T + 3_600_000 })).toBe(T);
  });

  it('Infinity past the horizon; now when it fits now', () => {
    const ds = [rpm(1, [T])];
    expect(earliestGrantAt({ now: T, deployments: ds, ahead: 0, leavingBy: nobodyLeaves, horizon: T + 59_999 })).toBe(Infinity);
    expect(earliestGrantAt({ now: T, deployments: [rpm(1, [])], ahead: 0, leavingBy: nobodyLeaves, horizon: T })).toBe(T);
    expect(earliestGrantAt({ now: T, deployments: [], ahead: 0, leavingBy: nobodyLeaves, horizon: T + W })).toBe(Infinity);
  });

  it('reads a live DeploymentState: its window and its cooldown', () => {
    const d = new DeploymentState('d', { rpm: 2, maxParallelRequests: 1 });
    const r1 = d.reserve(1, T - 20_000);
    d.release(r1, { kind: 'ok' }, T - 19_000, { cooldownTimeMs: 5_000, allowedFails: 0 });
    d.reserve(1, T - 10_000);
    // At the parallel limit now, which the bound ignores (the call may end any moment).
    const view = d.capacityView(T);
    expect(view.readyAt).toBe(T + 40_000);
    expect(earliestGrantAt({ now: T, deployments: [view], ahead: 1, leavingBy: nobodyLeaves, horizon: T + 3_600_000 })).toBe(T + 50_000);
  });
});

describe('helpers', () => {
  it('an estimate only where no deployment is bounded by max_parallel_requests alone', () => {
    expect(boundIsEstimate([{ rpm: 10 }, { rpm: 5, maxParallelRequests: 2 }, {}])).toBe(true);
    expect(boundIsEstimate([{ rpm: 10 }, { maxParallelRequests: 2 }])).toBe(false);
  });

  it('Retry-After in whole seconds, at least 1', () => {
    expect(retryAfterSecondsUntil(T, T)).toBe(1);
    expect(retryAfterSecondsUntil(T + 1, T)).toBe(1);
    expect(retryAfterSecondsUntil(T + 60_000, T)).toBe(60);
    expect(retryAfterSecondsUntil(T + 60_001, T)).toBe(61);
  });
});
