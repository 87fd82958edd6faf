/**
 * Scenario 1, overhead: POST /queue/chat/completions through the whole gateway as `npm start` runs it
 * (master key checked, access log at info, metrics on, node started with the CLI's V8 flags; mock
 * deployment with no delay, no limit reached) against a bare fastify server answering the same JSON
 * body, with the same load generator and concurrency. Closed loop for throughput and latency at
 * the most the server can do (best of several rounds, each in fresh processes); a fixed 1,000 req/s for the latency a gateway adds at a normal rate;
 * metrics on against metrics off for what the Prometheus metrics cost, the access log on against off
 * for what the log costs.
 *
 * Two more figures say where the gap to the bare server lies: the gateway with its router stubbed
 * (the HTTP layer alone: auth, hooks, headers), and the XState floor, the least one actor costs
 * (bench/xstate-floor.ts). Together they give the most any design with one live actor per request
 * can reach on this machine.
 */
import { startChild, type Child } from './child-rpc.js';
import { closedLoop, type LoadResult, type LoadTarget, type RateRound } from './load.js';
import type { Summary } from './measure.js';
import { step } from './progress.js';
import type { Row } from './report.js';
import { row } from './rows.js';

const S = '1 overhead';
const MODEL = 'bench-mock';
const MASTER_KEY = 'sk-bench-master-key';

export interface OverheadSettings {
  connections: number;
  seconds: number;
  warmupSeconds: number;
  rounds: number;
  rate: number;
  /** Fixed-rate rounds (odd: the median round is reported), their length, and the warm-up before them. */
  rateRounds: number;
  rateSeconds: number;
  rateWarmupSeconds: number;
  /** Actors per round and rounds for the XState floor. */
  floorActors: number;
  floorRounds: number;
}

export const OVERHEAD_SETTINGS = {
  quick: { connections: 32, seconds: 1.5, warmupSeconds: 0.3, rounds: 1, rate: 1000, rateRounds: 3, rateSeconds: 1, rateWarmupSeconds: 0.5, floorActors: 5_000, floorRounds: 2 },
  // Four shorter rounds, not two long ones: the best of more samples per server is steadier on a shared machine.
  full: { connections: 32, seconds: 3, warmupSeconds: 1, rounds: 4, rate: 1000, rateRounds: 5, rateSeconds: 3, rateWarmupSeconds: 1, floorActors: 20_000, floorRounds: 3 },
} satisfies Record<string, OverheadSettings>;

async function startServer(mode: 'bare' | 'gateway' | 'http-only', metrics: boolean, logs: boolean, timeRequests = false): Promise<{ child: Child; target: LoadTarget }> {
  const child = await startChild('server-main.js');
  const { url } = await child.call<{ url: string }>('start', { mode, metrics, logs, model: MODEL, masterKey: MASTER_KEY, timeRequests });
  const target: LoadTarget = {
    url,
    path: '/queue/chat/completions',
    body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'Say ok.' }], priority: 0 }),
    headers: { authorization: `Bearer ${MASTER_KEY}` },
  };
  return { child, target };
}

const best = (results: LoadResult[]) => results.reduce((a, b) => (b.rps > a.rps ? b : a));

/** The fixed-rate rounds, run by a generator child started for them (bench/rate-main.ts). */
async function fixedRateRounds(settings: OverheadSettings, targets: [LoadTarget, LoadTarget]): Promise<RateRound[]> {
  const generator = await startChild('rate-main.js');
  try {
    const timeoutMs = 30_000 + (settings.rateWarmupSeconds + settings.rateRounds * settings.rateSeconds) * 3_000;
    return await generator.call<RateRound[]>('fixedRate', { targets, rate: settings.rate, seconds: settings.rateSeconds, rounds: settings.rateRounds, warmupSeconds: settings.rateWarmupSeconds }, timeoutMs);
  } finally {
    await generator.stop();
  }
}

/**
 * The round whose p99 added (second target − first) is the median of all rounds. One round's p99 is
 * the 1% tail of a few thousand requests, which one stall of this shared machine can move by
 * milliseconds; the median round is what the gateway adds when no single stall decides it.
 */
export function medianRound(rounds: readonly RateRound[]): { bare: LoadResult; gateway: LoadResult } {
  if (rounds.length === 0) throw new Error('no fixed-rate rounds');
  const added = (r: RateRound) => r.results[1]!.latencyMs.p99 - r.results[0]!.latencyMs.p99;
  const sorted = [...rounds].sort((a, b) => added(a) - added(b));
  const median = sorted[(sorted.length - 1) >> 1]!;
  return { bare: median.results[0]!, gateway: median.results[1]! };
}

type ServerName = 'bare' | 'gateway' | 'noLogs' | 'noMetrics' | 'httpOnly';
/** `gateway` is the gateway as `npm start` runs it; each other one changes one thing. */
const SERVERS: Record<ServerName, { mode: 'bare' | 'gateway' | 'http-only'; metrics: boolean; logs: boolean }> = {
  bare: { mode: 'bare', metrics: false, logs: false },
  gateway: { mode: 'gateway', metrics: true, logs: true },
  noLogs: { mode: 'gateway', metrics: true, logs: false },
  noMetrics: { mode: 'gateway', metrics: false, logs: true },
  httpOnly: { mode: 'http-only', metrics: true, logs: true },
};

/** Starts the named servers, each in a fresh child process; stops them all if one fails to start. */
async function startServers<N extends ServerName>(names: readonly N[], timeRequests = false): Promise<Record<N, { child: Child; target: LoadTarget }>> {
  const started = await Promise.allSettled(names.map((n) => startServer(SERVERS[n].mode, SERVERS[n].metrics, SERVERS[n].logs, timeRequests)));
  const failed = started.find((r) => r.status === 'rejected');
  if (failed !== undefined) {
    await Promise.all(started.map((r) => (r.status === 'fulfilled' ? r.value.child.stop() : undefined)));
    throw (failed as PromiseRejectedResult).reason;
  }
  return Object.fromEntries(names.map((n, i) => [n, (started[i] as PromiseFulfilledResult<{ child: Child; target: LoadTarget }>).value])) as Record<N, { child: Child; target: LoadTarget }>;
}

const stopAll = (servers: Record<string, { child: Child }>) => Promise.all(Object.values(servers).map((s) => s.child.stop()));

/** The bare server's and the gateway's in-process times since the last call (bench/in-process-timer.ts). */
const takeInProcessTimes = (pair: Record<'bare' | 'gateway', { child: Child }>) =>
  Promise.all([pair.bare.child.call<Summary>('inProcessTimes'), pair.gateway.child.call<Summary>('inProcessTimes')]);

export async function overheadScenario(settings: OverheadSettings, details: Record<string, unknown>): Promise<Row[]> {
  const names = Object.keys(SERVERS) as ServerName[];
  const runs: Record<ServerName, LoadResult[]> = { bare: [], gateway: [], noLogs: [], noMetrics: [], httpOnly: [] };
  // Every round in fresh processes: one process's memory layout can make it several percent faster or
  // slower than another of the same code for its whole life, and the best of several layouts per
  // server compares servers, not layouts.
  for (let round = 1; round <= settings.rounds; round++) {
    step(S, `round ${round}/${settings.rounds}: starting the bare server, three gateways (as npm start runs it, access log off, metrics off) and the HTTP layer alone in fresh child processes`);
    const servers = await startServers(names);
    try {
      // A check that the gateway really answers (auth, routing, mock) before timing it.
      const probe = await closedLoop(servers.gateway.target, 1, 0.2);
      if (probe.ok === 0) throw new Error('the gateway answered no request with 2xx');
      for (const name of names) {
        step(S, `round ${round}/${settings.rounds}: warm-up ${name} ${settings.warmupSeconds}s, then closed loop, ${settings.connections} connections, ${settings.seconds}s`);
        await closedLoop(servers[name].target, settings.connections, settings.warmupSeconds);
        runs[name].push(await closedLoop(servers[name].target, settings.connections, settings.seconds));
      }
    } finally {
      await stopAll(servers);
    }
  }

  step(S, 'starting a bare server and a gateway for the fixed rate');
  const pair = await startServers(['bare', 'gateway'] as const, true);
  try {
    for (const name of ['bare', 'gateway'] as const) await closedLoop(pair[name].target, settings.connections, settings.warmupSeconds);
    // The in-process times start after the closed-loop warm-up (they then include the generator's own warm-up at the fixed rate).
    await takeInProcessTimes(pair);
    // Side by side on one schedule: both tails meet the same moments of machine noise.
    step(S, `fixed rate ${settings.rate} req/s to bare and to gateway side by side, ${settings.rateRounds} × ${settings.rateSeconds}s, generator in a child of its own`);
    const rateRounds = await fixedRateRounds(settings, [pair.bare.target, pair.gateway.target]);
    const { bare: rateBare, gateway: rateGateway } = medianRound(rateRounds);
    // Inside each server, over all the rounds.
    const [inBare, inGateway] = await takeInProcessTimes(pair);

    step(S, `XState floor: ${settings.floorRounds} × ${settings.floorActors} minimal actors in a child of their own`);
    const floor = await pair.bare.child.call<{ micros: number }>('xstateFloor', { actors: settings.floorActors, rounds: settings.floorRounds }, 120_000);

    const measured: Measured = { bare: best(runs.bare), gateway: best(runs.gateway), noLogs: best(runs.noLogs), noMetrics: best(runs.noMetrics), httpOnly: best(runs.httpOnly), rateBare, rateGateway, inBare, inGateway, floorMicros: floor.micros };
    details.overhead = {
      settings,
      runs,
      rateBare,
      rateGateway,
      rateRounds,
      inProcessAtRate: { bare: inBare, gateway: inGateway },
      xstateFloorMicros: floor.micros,
      loadGenerator: 'closed loop: autocannon in the runner process, fresh server processes every round; fixed rate: bench/load.ts on raw sockets in a child process of its own; each server in its own child process',
    };
    return overheadRows(settings, measured);
  } finally {
    await stopAll(pair);
  }
}

interface Measured {
  bare: LoadResult;
  /** As `npm start` runs it: access log on, metrics on. */
  gateway: LoadResult;
  noLogs: LoadResult;
  noMetrics: LoadResult;
  httpOnly: LoadResult;
  rateBare: LoadResult;
  rateGateway: LoadResult;
  /** Request event to response finish inside each server, over all the fixed-rate rounds (ms). */
  inBare: Summary;
  inGateway: Summary;
  /** µs per minimal actor life. */
  floorMicros: number;
}

/** Requests per second when each request costs the HTTP layer's time plus one minimal actor. */
export function ceilingWithActor(httpOnlyRps: number, floorMicros: number): number {
  return 1e6 / (1e6 / httpOnlyRps + floorMicros);
}

function overheadRows(settings: OverheadSettings, m: Measured): Row[] {
  const { bare, gateway, noLogs, noMetrics, httpOnly, rateBare, rateGateway } = m;
  const c = settings.connections;
  return [
    row({ scenario: S, measure: `throughput, gateway as npm start runs it (${c} connections)`, unit: 'req/s', value: gateway.rps, baseline: bare.rps, baselineLabel: 'bare fastify', target: { comparison: '>=', limit: 0.6, text: '≥ 0.6× bare', on: 'ratio' } }),
    row({ scenario: S, measure: `throughput, gateway with the access log off (${c} conn.)`, unit: 'req/s', value: noLogs.rps, baseline: bare.rps, baselineLabel: 'bare fastify' }),
    row({ scenario: S, measure: `p50 latency at max load (${c} conn.)`, unit: 'ms', value: gateway.latencyMs.p50, baseline: bare.latencyMs.p50, baselineLabel: 'bare' }),
    row({ scenario: S, measure: `p99 latency at max load (${c} conn.)`, unit: 'ms', value: gateway.latencyMs.p99, baseline: bare.latencyMs.p99, baselineLabel: 'bare' }),
    row({ scenario: S, measure: 'p50 added at max load (gateway − bare)', unit: 'ms', value: gateway.latencyMs.p50 - bare.latencyMs.p50, showRatio: false }),
    row({ scenario: S, measure: 'p99 added at max load (gateway − bare)', unit: 'ms', value: gateway.latencyMs.p99 - bare.latencyMs.p99, showRatio: false }),
    row({ scenario: S, measure: `p50 latency at ${settings.rate} req/s (median of ${settings.rateRounds} rounds)`, unit: 'ms', value: rateGateway.latencyMs.p50, baseline: rateBare.latencyMs.p50, baselineLabel: 'bare' }),
    row({ scenario: S, measure: `p99 latency at ${settings.rate} req/s (median of ${settings.rateRounds} rounds)`, unit: 'ms', value: rateGateway.latencyMs.p99, baseline: rateBare.latencyMs.p99, baselineLabel: 'bare' }),
    row({
      scenario: S,
      measure: `p99 added at ${settings.rate} req/s (gateway − bare)${rateGateway.rps < settings.rate * 0.95 ? `; the gateway kept up with only ${Math.round(rateGateway.rps)} req/s` : ''}`,
      unit: 'ms',
      value: rateGateway.latencyMs.p99 - rateBare.latencyMs.p99,
      showRatio: false,
      target: { comparison: '<=', limit: 0.5, text: '≤ 0.5 ms' },
    }),
    row({ scenario: S, measure: `p99 inside the process at ${settings.rate} req/s (request event → response finished; all rounds)`, unit: 'ms', value: m.inGateway.p99, baseline: m.inBare.p99, baselineLabel: 'bare' }),
    row({ scenario: S, measure: `p99 added inside the process at ${settings.rate} req/s (gateway − bare)`, unit: 'ms', value: m.inGateway.p99 - m.inBare.p99, showRatio: false }),
    row({ scenario: S, measure: 'throughput, access log on vs off', unit: 'req/s', value: gateway.rps, baseline: noLogs.rps, baselineLabel: 'gateway, access log off' }),
    row({ scenario: S, measure: 'throughput, metrics on vs off', unit: 'req/s', value: gateway.rps, baseline: noMetrics.rps, baselineLabel: 'gateway, metrics off' }),
    row({ scenario: S, measure: `throughput, HTTP layer alone (router stubbed; ${c} conn.)`, unit: 'req/s', value: httpOnly.rps, baseline: bare.rps, baselineLabel: 'bare fastify' }),
    row({ scenario: S, measure: 'XState floor: one minimal actor (start, 3 events, final)', unit: 'µs', value: m.floorMicros, baseline: bare.rps > 0 ? 1e6 / bare.rps : null, baselineLabel: 'one bare fastify request' }),
    row({
      scenario: S,
      measure: 'throughput ceiling with one actor per request (HTTP layer alone + XState floor)',
      unit: 'req/s',
      value: httpOnly.rps > 0 ? ceilingWithActor(httpOnly.rps, m.floorMicros) : null,
      baseline: bare.rps,
      baselineLabel: 'bare fastify',
    }),
  ];
}
