/**
 * A benchmark child that runs the fixed-rate generator (bench/load.ts) and nothing else, so its
 * timings are not disturbed by the runner's own work and garbage (autocannon's closed loops run there
 * just before). One warm-up run, then the measured rounds; with each round the generator's own
 * event-loop delay, the resolution its latencies can be trusted to.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { serveCommands } from './child-rpc.js';
import { fixedRate, type LoadTarget, type RateRound } from './load.js';

/** The histogram holds whole timer intervals (ns); the lateness is what exceeds the resolution. */
const lateness = (intervalNs: number, resolutionMs: number) => Math.max(0, intervalNs / 1e6 - resolutionMs);

serveCommands({
  async fixedRate(a) {
    const targets = a.targets as LoadTarget[];
    const rate = Number(a.rate);
    await fixedRate(targets, rate, Number(a.warmupSeconds));
    const rounds: RateRound[] = [];
    const resolutionMs = 10;
    const lag = monitorEventLoopDelay({ resolution: resolutionMs });
    for (let i = 0; i < Number(a.rounds); i++) {
      lag.reset();
      lag.enable();
      const results = await fixedRate(targets, rate, Number(a.seconds));
      lag.disable();
      rounds.push({ results, generatorLagMs: { p99: lateness(lag.percentile(99), resolutionMs), max: lateness(lag.max, resolutionMs) } });
    }
    return rounds;
  },
});
