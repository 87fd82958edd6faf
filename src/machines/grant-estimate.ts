/**
 * The earliest moment a waiter could be granted, as a CERTAIN lower bound: it cannot be granted before,
 * whatever happens (short of waiters ahead being cancelled). It answers three questions with one
 * computation: may a request's deadline still be met (else 429 queue_timeout_certain at once), when
 * should a refused caller come back (Retry-After), and when will a waiter be served (etaMs).
 *
 * What is certain:
 * - a deployment grants nothing before its `readyAt`: its cooldown's end, or when its rate windows
 *   next have room (DeploymentState.nextCapacityAt, ignoring calls in flight);
 * - an rpm limit R is R "lanes": a lane is free now, or reopens when one of the window's grants turns
 *   60 s old, and once used it is busy for 60 s. The j-th use of a lane that opens at o is at o + j·60 s
 *   at the earliest. So by time t the deployment grants at most R·q + (lanes open by t − q·60 s), with
 *   q = ⌊(t − base) / 60 s⌋;
 * - waiters ahead are served first (strict order), except those whose deadline passes before they are:
 *   by time t at most `leavingBy(t)` of them have left.
 * What is not: in-flight calls end at unknown times, so `max_parallel_requests` alone bounds nothing
 * (such a deployment counts as unlimited once ready), and nothing here guesses durations; nor how many
 * tokens they use: their tpm reservations are reconciled with the real usage at the end, so `readyAt`
 * counts them as possibly unused (DeploymentState.nextCapacityAt with ignoreInFlight).
 *
 * The bound is the least t at which the deployments' grants by t exceed the waiters ahead still there
 * at t; both sides are monotone in t, so it is found by bisection: O(log(horizon) · deployments ·
 * log(window)), never a walk over the queue.
 */
import { WINDOW_MS } from './rate-window.js';

/** One deployment as the estimator sees it. */
export interface CapacityView {
  /** Nothing is granted here before this (clock ms). */
  readyAt: number;
  /** The rpm window, or null when no rpm limit bounds the rate. */
  rpm: RpmLanes | null;
}

export interface RpmLanes {
  limit: number;
  /** Lanes free now (limit − grants in the window; never below 0). */
  free: number;
  /** How many of the window's current grants reopen their lane at or before `t` (grant time + 60 s ≤ t). */
  reopenedBy(t: number): number;
}

export interface GrantEstimateInput {
  now: number;
  deployments: readonly CapacityView[];
  /** Waiters that will be served before this one while they wait. */
  ahead: number;
  /** How many waiters (of those ahead, or more) will have left by their deadline at time t. */
  leavingBy(t: number): number;
  /** Past this the answer is only "later than horizon" (Infinity is returned). */
  horizon: number;
}

/** Grants `d` can make in [now, t] at most. */
export function grantsBy(d: CapacityView, t: number, now: number): number {
  if (t < d.readyAt) return 0;
  const rpm = d.rpm;
  if (rpm === null) return Infinity;
  // Every lane opens within one window of `base`: the free ones at base, the others as grants age out.
  const base = Math.max(now, d.readyAt);
  const q = Math.floor((t - base) / WINDOW_MS);
  const x = t - q * WINDOW_MS;
  const open = x < base ? 0 : Math.min(rpm.limit, rpm.free + rpm.reopenedBy(x));
  return rpm.limit * q + open;
}

function totalGrantsBy(ds: readonly CapacityView[], t: number, now: number): number {
  let n = 0;
  for (const d of ds) {
    n += grantsBy(d, t, now);
    if (n === Infinity) break;
  }
  return n;
}

/** Whether the waiter could be granted by `t` at all: one step of the bisection (the cheap check of a deadline). */
export function reachable(input: GrantEstimateInput, t: number): boolean {
  const stillAhead = Math.max(0, input.ahead - input.leavingBy(t));
  return totalGrantsBy(input.deployments, t, input.now) >= stillAhead + 1;
}

/** The earliest time (clock ms) this waiter could be granted; Infinity when not by `horizon`. */
export function earliestGrantAt(input: GrantEstimateInput): number {
  const { now, horizon } = input;
  if (input.deployments.length === 0) return Infinity;
  if (reachable(input, now)) return now;
  if (!(horizon > now) || !reachable(input, horizon)) return Infinity;
  let lo = now;
  let hi = Math.ceil(horizon);
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (reachable(input, mid)) hi = mid;
    else lo = mid;
  }
  return hi;
}

/**
 * Whether the bound is also a fair estimate of when the waiter is served: false when a deployment
 * that counts as unlimited has a `max_parallel_requests` limit (its grants wait for calls to end, whose
 * durations nothing here knows).
 */
export function boundIsEstimate(deployments: readonly { rpm?: number | undefined; maxParallelRequests?: number | undefined }[]): boolean {
  return deployments.every((d) => d.rpm !== undefined || d.maxParallelRequests === undefined);
}

/** Seconds for a Retry-After header from a bound: whole seconds, at least 1. */
export function retryAfterSecondsUntil(at: number, now: number): number {
  return Math.max(1, Math.ceil((at - now) / 1000));
}
