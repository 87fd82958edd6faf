/**
 * The soak's arithmetic (bench/soak.ts), as pure functions with no clock and no I/O so each is checked
 * on inputs with known answers (test/bench-measure.test.ts): a least-squares line, the parts of a run
 * (first minute, second half, first and last third), and the verdict: does memory keep growing once the
 * gateway is warm, and does the event loop get slower as the run goes on.
 */
import { median } from './measure.js';

/** One sample taken by the gateway's process every few seconds. */
export interface SoakSample {
  /** Milliseconds since the load started. */
  atMs: number;
  /** V8 heap in use after a full GC, MiB. */
  heapUsedMiB: number;
  rssMiB: number;
  /** Event-loop delay over the interval since the previous sample (timer resolution taken off), ms. */
  lagP50Ms: number;
  lagP99Ms: number;
  lagMaxMs: number;
  /** Requests waiting in the queues and calls in flight at the sample (all groups). */
  waiting: number;
  inFlight: number;
  /** How long the forced GC before the memory reading took, ms (it lands in the next interval's lag). */
  gcMs?: number;
  /** V8 heap used per space after the GC, MiB (old_space, code_space, ...). */
  spacesMiB?: Record<string, number>;
  /** Requests the load generator saw end in the interval (filled in by the runner). */
  ended?: number;
}

export interface Line {
  /** Change of y per unit of x. */
  slope: number;
  intercept: number;
  n: number;
}

/** Ordinary least squares y = intercept + slope·x; NaN slope for fewer than 2 points or one x only. */
export function linearFit(points: ReadonlyArray<{ x: number; y: number }>): Line {
  const n = points.length;
  if (n < 2) return { slope: NaN, intercept: n === 1 ? points[0].y : NaN, n };
  let sx = 0;
  let sy = 0;
  for (const p of points) {
    sx += p.x;
    sy += p.y;
  }
  const mx = sx / n;
  const my = sy / n;
  let sxx = 0;
  let sxy = 0;
  for (const p of points) {
    sxx += (p.x - mx) * (p.x - mx);
    sxy += (p.x - mx) * (p.y - my);
  }
  if (sxx === 0) return { slope: NaN, intercept: my, n };
  const slope = sxy / sxx;
  return { slope, intercept: my - slope * mx, n };
}

/** Slope of a field in MiB per minute over the samples taken in (fromMs, toMs]. */
export function slopePerMinute(samples: readonly SoakSample[], field: 'heapUsedMiB' | 'rssMiB', fromMs: number, toMs: number): Line {
  const points = samples.filter((s) => s.atMs > fromMs && s.atMs <= toMs).map((s) => ({ x: s.atMs / 60_000, y: s[field] }));
  return linearFit(points);
}

export interface SoakVerdictOptions {
  /** Length of the run, ms (the samples' atMs run up to it). */
  durationMs: number;
  /** The same-run baseline period at the start: the first minute, or the first half of a shorter run. */
  baselineMs?: number;
  /** Heap growth over the second half above this (MiB per minute) counts as a leak ... */
  maxHeapSlopeMiBPerMin?: number;
  /**
   * ... when it also adds up to more than this over the second half (MiB): the heap after a full GC
   * still moves by a few hundred KiB from sample to sample, so a short run cannot tell a slow leak
   * from that noise and says so rather than guess.
   */
  heapNoiseMiB?: number;
  /** Lag counts as grown when the last third's p99 is above this many times the first third's ... */
  maxLagRatio?: number;
  /** ... and also more than this many ms above it (so noise on sub-millisecond figures is not growth). */
  lagSlackMs?: number;
}

export interface SoakVerdict {
  baselineMs: number;
  /** Heap (after GC) slope over the second half, MiB/min, and over the baseline period. */
  heapSlope: number;
  heapSlopeBaseline: number;
  /** The slope times the length of the second half: what it adds up to, MiB. */
  heapGrowthSecondHalf: number;
  /** The smallest slope this run can call a leak: max(maxHeapSlopeMiBPerMin, heapNoiseMiB / second half in minutes). */
  smallestLeakJudged: number;
  rssSlope: number;
  rssSlopeBaseline: number;
  /** Heap at the last sample of the baseline period and at the last sample, MiB. */
  heapAtBaseline: number;
  heapAtEnd: number;
  /** Median over the samples of each third of their interval's p99 (and max) event-loop delay, ms. */
  lagP99First: number;
  lagP99Last: number;
  lagMaxFirst: number;
  lagMaxLast: number;
  memoryStable: boolean;
  lagStable: boolean;
  stable: boolean;
  /** What failed, in words (empty when stable). */
  reasons: string[];
}

const r2 = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : String(n));

/**
 * The verdict on a soak. Memory: the least-squares slope of the heap after GC over the second half of
 * the run (the warm-up, JIT and caches are in the first half) is a leak when it is above
 * `maxHeapSlopeMiBPerMin` and adds up to more than `heapNoiseMiB` over that half; with fewer than 3
 * samples in the second half nothing can be said and memory counts as not stable. Lag:
 * the median of the per-sample p99s of the last third against the first third's.
 */
export function soakVerdict(samples: readonly SoakSample[], options: SoakVerdictOptions): SoakVerdict {
  const T = options.durationMs;
  const baselineMs = options.baselineMs ?? Math.min(60_000, T / 2);
  const maxSlope = options.maxHeapSlopeMiBPerMin ?? 1;
  const noise = options.heapNoiseMiB ?? 1;
  const halfMinutes = T / 2 / 60_000;
  const maxRatio = options.maxLagRatio ?? 2;
  const slack = options.lagSlackMs ?? 5;
  const sorted = [...samples].sort((a, b) => a.atMs - b.atMs);

  const heap = slopePerMinute(sorted, 'heapUsedMiB', T / 2, T);
  const heapBase = slopePerMinute(sorted, 'heapUsedMiB', -Infinity, baselineMs);
  const rss = slopePerMinute(sorted, 'rssMiB', T / 2, T);
  const rssBase = slopePerMinute(sorted, 'rssMiB', -Infinity, baselineMs);
  const inBaseline = sorted.filter((s) => s.atMs <= baselineMs);
  const heapAtBaseline = inBaseline.length > 0 ? inBaseline[inBaseline.length - 1].heapUsedMiB : NaN;
  const heapAtEnd = sorted.length > 0 ? sorted[sorted.length - 1].heapUsedMiB : NaN;

  const first = sorted.filter((s) => s.atMs <= T / 3);
  const last = sorted.filter((s) => s.atMs > (2 * T) / 3);
  const lagP99First = median(first.map((s) => s.lagP99Ms));
  const lagP99Last = median(last.map((s) => s.lagP99Ms));
  const lagMaxFirst = median(first.map((s) => s.lagMaxMs));
  const lagMaxLast = median(last.map((s) => s.lagMaxMs));

  const reasons: string[] = [];
  const growth = heap.slope * halfMinutes;
  const memoryStable = heap.n >= 3 && Number.isFinite(heap.slope) && (heap.slope < maxSlope || growth < noise);
  if (!memoryStable) {
    reasons.push(
      heap.n < 3
        ? `too few samples in the second half (${heap.n}) to fit a slope`
        : `heap grew ${r2(heap.slope)} MiB/min over the second half (${r2(growth)} MiB; limit ${maxSlope} MiB/min and ${noise} MiB)`,
    );
  }
  let lagStable = Number.isFinite(lagP99First) && Number.isFinite(lagP99Last);
  if (!lagStable) reasons.push('no lag samples in the first or the last third');
  else if (lagP99Last > lagP99First * maxRatio && lagP99Last - lagP99First > slack) {
    lagStable = false;
    reasons.push(`event-loop lag p99 grew from ${r2(lagP99First)} ms to ${r2(lagP99Last)} ms (more than ×${maxRatio} and +${slack} ms)`);
  }
  return {
    baselineMs,
    heapSlope: heap.slope,
    heapSlopeBaseline: heapBase.slope,
    heapGrowthSecondHalf: growth,
    smallestLeakJudged: halfMinutes > 0 ? Math.max(maxSlope, noise / halfMinutes) : Infinity,
    rssSlope: rss.slope,
    rssSlopeBaseline: rssBase.slope,
    heapAtBaseline,
    heapAtEnd,
    lagP99First,
    lagP99Last,
    lagMaxFirst,
    lagMaxLast,
    memoryStable,
    lagStable,
    stable: memoryStable && lagStable,
    reasons,
  };
}

/** The samples as a Markdown table (printed by the soak, pasted into docs/reliability.md). */
export function sampleTable(samples: readonly SoakSample[]): string {
  const f = (n: number | undefined, digits: number) => (n === undefined || !Number.isFinite(n) ? '—' : n.toFixed(digits));
  const head = '| t (s) | heap used after GC (MiB) | RSS (MiB) | lag p50 (ms) | lag p99 (ms) | lag max (ms) | GC (ms) | waiting | in flight | ended in interval |';
  const rule = '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|';
  const body = samples.map(
    (s) =>
      `| ${f(s.atMs / 1000, 0)} | ${f(s.heapUsedMiB, 2)} | ${f(s.rssMiB, 1)} | ${f(s.lagP50Ms, 2)} | ${f(s.lagP99Ms, 2)} | ${f(s.lagMaxMs, 2)} | ${f(s.gcMs, 1)} | ${s.waiting} | ${s.inFlight} | ${s.ended ?? '—'} |`,
  );
  return [head, rule, ...body].join('\n');
}
