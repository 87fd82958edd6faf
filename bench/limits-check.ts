/** Turns a store's records into the limit checks of bench/measure.ts for one model group. */
import { allowedByWindow, countParallelViolations, countWindowViolations, utilisation, type Dispatch, type SlotInterval } from './measure.js';
import type { StoreRecord } from './store-log.js';

export interface LimitCheck {
  kind: 'rpm' | 'tpm' | 'parallel';
  /** Evidence for a violation: up to 3 calls that started while the limit was already in use. */
  examples?: unknown[];
  grants: number;
  allowed: number;
  utilisation: number | null;
  violations: number;
  spanMs: number;
}

type Grant = Extract<StoreRecord, { op: 'grant' }>;
type Release = Extract<StoreRecord, { op: 'release' }>;

/**
 * rpm/tpm: every 60 s window of the grant log per deployment (times as the store reported them;
 * `windowMs` below 60 000 allows for the clocks of several processes); utilisation over
 * [first grant, first grant + spanMs] against what the windows allow.
 */
export function checkWindowLimit(
  kind: 'rpm' | 'tpm',
  records: StoreRecord[],
  model: string,
  options: { perDeployment: number; deployments: number; tokensPerRequest?: number; spanMs: number; windowMs?: number },
): LimitCheck {
  const grants = records.filter((r): r is Grant => r.op === 'grant' && r.model === model);
  const log: Dispatch[] = grants.map((g) => ({ at: g.at, deployment: g.deployment, amount: kind === 'tpm' ? g.tokens : 1 }));
  const violations = countWindowViolations(log, options.perDeployment, options.windowMs ?? 60_000);
  const t0 = Math.min(...grants.map((g) => g.at));
  const inSpan = grants.filter((g) => g.at <= t0 + options.spanMs).length;
  const perWindow = kind === 'tpm' ? Math.floor(options.perDeployment / (options.tokensPerRequest ?? 1)) : options.perDeployment;
  const allowed = allowedByWindow(perWindow * options.deployments, options.spanMs);
  return { kind, grants: inSpan, allowed, utilisation: utilisation(inSpan, allowed), violations, spanMs: options.spanMs };
}

/**
 * Parallel: each call holds its slot from its grant to its release (`time` picks the timestamp:
 * the store's clock in memory, or the runner's common high-resolution base across processes);
 * utilisation: grants over [first grant, + spanMs] against slots × ceil(span / call duration).
 */
export function checkParallelLimit(
  records: StoreRecord[],
  model: string,
  options: { perDeployment: number; deployments: number; callMs: number; spanMs: number; time: (r: Grant | Release) => number; toleranceMs?: number },
): LimitCheck {
  // Timestamps of several processes agree only within a tolerance: each interval is shrunk by it at
  // both ends, so only overlaps the records prove are counted.
  const tol = options.toleranceMs ?? 0;
  const grants = records.filter((r): r is Grant => r.op === 'grant' && r.model === model);
  const releases = new Map<string, Release>();
  for (const r of records) if (r.op === 'release' && r.model === model) releases.set(r.id, r);
  const intervals: Array<SlotInterval & { grant: Grant }> = [];
  for (const g of grants) {
    const r = releases.get(g.id);
    const start = options.time(g) + tol;
    const end = r === undefined ? Infinity : options.time(r) - tol;
    // A call shorter than the tolerance proves no overlap.
    if (end > start) intervals.push({ deployment: g.deployment, start, end, grant: g });
  }
  const violations = countParallelViolations(intervals, options.perDeployment);
  const t0 = Math.min(...grants.map(options.time));
  const inSpan = grants.filter((g) => options.time(g) < t0 + options.spanMs).length;
  const allowed = options.perDeployment * options.deployments * Math.ceil(options.spanMs / options.callMs);
  const check: LimitCheck = { kind: 'parallel', grants: inSpan, allowed, utilisation: utilisation(inSpan, allowed), violations, spanMs: options.spanMs };
  if (violations > 0) {
    // Evidence: the first calls that started while the limit was in use, with the calls holding it.
    // A request granted twice, or a grant never released, shows up here too.
    const grantsPerRequest = new Map<string, number>();
    for (const g of grants) grantsPerRequest.set(g.id, (grantsPerRequest.get(g.id) ?? 0) + 1);
    const lastGrant = Math.max(...grants.map(options.time));
    check.examples = [
      {
        requestsGrantedMoreThanOnce: [...grantsPerRequest].filter(([, n]) => n > 1).length,
        grantsNeverReleased: intervals.filter((i) => i.end === Infinity && i.start < lastGrant - 10 * options.callMs).length,
      },
    ];
    const show = (i: SlotInterval & { grant: Grant }) => ({ start: i.start, end: Number.isFinite(i.end) ? i.end : 'never released', grant: i.grant });
    for (const a of intervals) {
      const open = intervals.filter((b) => b !== a && b.deployment === a.deployment && b.start <= a.start && b.end > a.start);
      if (open.length < options.perDeployment) continue;
      check.examples.push({ started: show(a), alreadyHolding: open.map(show) });
      if (check.examples.length >= 4) break;
    }
  }
  return check;
}
