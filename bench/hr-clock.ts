/**
 * One high-resolution time base for several processes: milliseconds since the Unix epoch with
 * sub-millisecond precision (performance.timeOrigin + performance.now()). Each process's origin is
 * fixed at its start, so the parent measures each child's offset (as NTP does, from the round trip
 * with the smallest delay) and corrects the child's timestamps with it.
 */

export function hrNow(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * The offset to add to a child's timestamps, from probes of (sent, childTime, received) in the
 * parent's time base: the probe with the shortest round trip, assuming the reply took half of it.
 */
export function offsetFromProbes(probes: ReadonlyArray<{ sent: number; child: number; received: number }>): { offsetMs: number; rttMs: number } {
  let best: { sent: number; child: number; received: number } | undefined;
  for (const p of probes) if (best === undefined || p.received - p.sent < best.received - best.sent) best = p;
  if (best === undefined) return { offsetMs: 0, rttMs: NaN };
  return { offsetMs: (best.sent + best.received) / 2 - best.child, rttMs: best.received - best.sent };
}
