/**
 * Scenario 7, soak (`npm run bench -- --only soak`; not part of the default run): a real gateway in a
 * child process under a steady paced load for minutes (180 s by default, `--soak-seconds N`, 30 s with
 * `--quick`), to see whether anything builds up with time: memory that keeps growing once the process
 * is warm, or an event loop that gets slower.
 *
 * The load, sent from the runner's process at a fixed rate over keep-alive connections: mixed
 * priorities, a share of streaming requests (read to `data: [DONE]`), a share cancelled by an
 * AbortController at a random moment (if not answered by then: while queued or during the call), and a
 * share sent to a group with `max_parallel_requests` so that some wait. Every few seconds the child
 * takes a sample: event-loop delay over the interval (`monitorEventLoopDelay`: p50, p99, max), then
 * heap used after a full GC, RSS, and the queues' waiting and in-flight counts. The verdict (bench/soak-measure.ts) compares the run
 * with its own beginning: heap slope over the second half (the first minute is the baseline), lag p99
 * of the last third against the first third.
 *
 * The gateway runs as `npm start` runs it: a master key, metrics on, the access log at info through
 * the CLI's asynchronous destination (into /dev/null here).
 *
 * This module is also the child: started with `--soak-child` it serves the runner's commands.
 */
import { Agent, request } from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';
import { createGateway, type Gateway } from '../src/gateway.js';
import { createLogDestination } from '../src/log-destination.js';
import { benchConfig } from './bench-config.js';
import { pushEvent, serveCommands, startChild } from './child-rpc.js';
import { summarize } from './measure.js';
import { step } from './progress.js';
import type { Row } from './report.js';
import { row } from './rows.js';
import { sampleTable, soakVerdict, type SoakSample, type SoakVerdict } from './soak-measure.js';

const S = '7 soak';
const FAST = 'soak-fast';
const LIMITED = 'soak-limited';
const MASTER_KEY = 'sk-bench-soak-key';
const CHILD_FLAG = '--soak-child';
const LAG_RESOLUTION_MS = 10;

export interface SoakSettings {
  seconds: number;
  /** Requests per second, sent evenly. */
  rate: number;
  sampleEveryMs: number;
  /** Shares of the requests (drawn independently per request). */
  limitedShare: number;
  streamShare: number;
  cancelShare: number;
  /** A cancelled request is aborted after a random delay below this. */
  cancelWithinMs: number;
  /** Queue-wait deadline sent in every body (`timeout`), seconds. */
  queueTimeoutSec: number;
  /** Most requests outstanding at once; past it a due request is counted as skipped (never piled up). */
  maxOutstanding: number;
  /** Longest wait for the last answers after the sending ends. */
  drainMs: number;
}

export function soakSettings(seconds: number): SoakSettings {
  return {
    seconds,
    rate: 300,
    sampleEveryMs: 5_000,
    // 12% of 300 req/s = 36 req/s on 4 slots of 80 ms (50 req/s): about 0.7 busy, so some wait.
    limitedShare: 0.12,
    streamShare: 0.2,
    cancelShare: 0.05,
    cancelWithinMs: 150,
    queueTimeoutSec: 5,
    maxOutstanding: 2_000,
    drainMs: 15_000,
  };
}

export const SOAK_TARGETS = { maxHeapSlopeMiBPerMin: 1, heapNoiseMiB: 1, maxLagRatio: 2, lagSlackMs: 5 };

// ---------------------------------------------------------------------------------------------------
// The child: one gateway, and the sampler.

function serveChild(): void {
  let gateway: Gateway | undefined;
  let sampler: NodeJS.Timeout | undefined;
  let startedAt = 0;
  let sampling = false;
  const samples: SoakSample[] = [];
  const eld = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
  const gc = (globalThis as { gc?: () => void }).gc;
  // The histogram's values are whole timer intervals: the delay is what exceeds the resolution.
  const lag = (ns: number) => Math.max(0, ns / 1e6 - LAG_RESOLUTION_MS);

  const takeSample = async () => {
    if (sampling || gateway === undefined) return;
    sampling = true;
    try {
      const atMs = performance.now() - startedAt;
      const lagP50Ms = lag(eld.percentile(50));
      const lagP99Ms = lag(eld.percentile(99));
      const lagMaxMs = lag(eld.max);
      // Reset, then GC: Node's histogram drops the first delay after a reset, so the forced GC's pause
      // is not counted as event-loop lag (it is timed on its own, gcMs).
      eld.reset();
      const gcStart = performance.now();
      gc?.();
      const gcMs = performance.now() - gcStart;
      const mem = process.memoryUsage();
      // Which part of the heap moves (old objects, code, ...): kept in the results JSON, not the table.
      const spacesMiB: Record<string, number> = {};
      for (const sp of getHeapSpaceStatistics()) spacesMiB[sp.space_name] = Math.round((sp.space_used_size / 2 ** 20) * 1000) / 1000;
      const groups = await gateway.router.queueStatus(0);
      const sample: SoakSample = {
        atMs,
        heapUsedMiB: mem.heapUsed / 2 ** 20,
        rssMiB: mem.rss / 2 ** 20,
        lagP50Ms,
        lagP99Ms,
        lagMaxMs,
        waiting: groups.reduce((n, g) => n + g.waiting, 0),
        inFlight: groups.reduce((n, g) => n + g.inFlight, 0),
        gcMs,
        spacesMiB,
      };
      samples.push(sample);
      pushEvent('soak-sample', { sample });
    } finally {
      sampling = false;
    }
  };

  serveCommands({
    async start(a) {
      if (gc === undefined) throw new Error('the soak child needs --expose-gc');
      const config = benchConfig({
        groups: {
          [FAST]: [{ mockResponse: 'soak answer in a few words to stream', mockDelayMs: Number(a.fastDelayMs) }],
          [LIMITED]: [{ mockResponse: 'soak answer from the limited group', mockDelayMs: Number(a.limitedDelayMs), maxParallel: Number(a.limitedParallel) }],
        },
        masterKey: MASTER_KEY,
        metrics: true,
        maxQueueSize: 10_000,
        timeoutSec: Number(a.queueTimeoutSec),
      });
      // The access log as `npm start` writes it (src/cli.ts: info, the asynchronous destination), into a
      // sink, as bench/server-main.ts does: what builds up with time includes the log's buffers.
      gateway = await createGateway({ config, logger: { level: 'info' }, logDestination: createLogDestination('/dev/null') });
      const url = await gateway.listen(0, '127.0.0.1');
      return { url };
    },
    begin(a) {
      startedAt = performance.now();
      eld.enable();
      eld.reset();
      sampler = setInterval(() => void takeSample(), Number(a.sampleEveryMs));
      return true;
    },
    /** Ends the sampling with one last sample (the load has just stopped), unless one was just taken. */
    async stopSampling(a) {
      clearInterval(sampler);
      const last = samples.length > 0 ? samples[samples.length - 1].atMs : 0;
      if (performance.now() - startedAt - last > Number(a.sampleEveryMs) / 2) await takeSample();
      eld.disable();
      return samples.length;
    },
    async final() {
      clearInterval(sampler);
      const groups = gateway === undefined ? [] : await gateway.router.queueStatus(0);
      return {
        samples,
        waiting: groups.reduce((n, g) => n + g.waiting, 0),
        inFlight: groups.reduce((n, g) => n + g.inFlight, 0),
        liveRequests: gateway?.router.liveRequests ?? -1,
      };
    },
    async close() {
      clearInterval(sampler);
      await gateway?.close(1_000);
    },
  });
}

if (process.argv.includes(CHILD_FLAG)) serveChild();

// ---------------------------------------------------------------------------------------------------
// The runner: the paced load.

export interface SoakLoad {
  sent: number;
  skipped: number;
  done: number;
  streamsDone: number;
  cancelled: number;
  /** Streams that answered 200 and ended without `data: [DONE]` (and were not cancelled by us). */
  streamsIncomplete: number;
  byStatus: Record<string, number>;
  networkErrors: number;
  sendSeconds: number;
  drainedMs: number;
  outstandingAtEnd: number;
  /** Latency (send → end of the response) of completed non-streaming requests of the fast group. */
  latency: Array<{ at: number; ms: number }>;
  /** Answered requests of the limited group that waited in the queue (x-triage-queue-wait-ms ≥ 1), and the longest wait. */
  waited: number;
  longestWaitMs: number;
}

async function runLoad(url: string, s: SoakSettings, onSendingDone: () => Promise<void>, ended: { count: number }): Promise<SoakLoad> {
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  const target = new URL(url);
  const out: SoakLoad = {
    sent: 0,
    skipped: 0,
    done: 0,
    streamsDone: 0,
    cancelled: 0,
    streamsIncomplete: 0,
    byStatus: {},
    networkErrors: 0,
    sendSeconds: 0,
    drainedMs: 0,
    outstandingAtEnd: 0,
    latency: [],
    waited: 0,
    longestWaitMs: 0,
  };
  let outstanding = 0;
  const start = performance.now();

  const sendOne = () => {
    const limited = Math.random() < s.limitedShare;
    const stream = Math.random() < s.streamShare;
    const cancel = Math.random() < s.cancelShare;
    const body = Buffer.from(
      JSON.stringify({
        model: limited ? LIMITED : FAST,
        messages: [{ role: 'user', content: 'A soak request of ordinary size.' }],
        priority: Math.floor(Math.random() * 10),
        stream,
        timeout: s.queueTimeoutSec,
      }),
    );
    const controller = cancel ? new AbortController() : undefined;
    const sentAt = performance.now();
    let settled = false;
    let cancelTimer: NodeJS.Timeout | undefined;
    outstanding += 1;
    const settle = (kind: 'ok' | 'stream-ok' | 'stream-incomplete' | 'status' | 'failed', status?: number) => {
      if (settled) return;
      settled = true;
      clearTimeout(cancelTimer);
      outstanding -= 1;
      ended.count += 1;
      if (kind === 'failed') {
        if (controller?.signal.aborted) out.cancelled += 1;
        else out.networkErrors += 1;
        return;
      }
      out.byStatus[String(status)] = (out.byStatus[String(status)] ?? 0) + 1;
      if (kind === 'ok') {
        out.done += 1;
        if (!limited) out.latency.push({ at: sentAt - start, ms: performance.now() - sentAt });
      } else if (kind === 'stream-ok') {
        out.done += 1;
        out.streamsDone += 1;
      } else if (kind === 'stream-incomplete') out.streamsIncomplete += 1;
    };
    const req = request(
      {
        host: target.hostname,
        port: target.port,
        path: '/queue/chat/completions',
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': String(body.length), authorization: `Bearer ${MASTER_KEY}` },
        ...(controller ? { signal: controller.signal } : {}),
      },
      (res) => {
        const waitedMs = Number(res.headers['x-triage-queue-wait-ms'] ?? 0);
        if (limited && waitedMs >= 1) {
          out.waited += 1;
          out.longestWaitMs = Math.max(out.longestWaitMs, waitedMs);
        }
        let tail = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          if (stream) tail = (tail + d).slice(-32);
        });
        res.on('end', () => {
          if (res.statusCode !== 200) settle('status', res.statusCode);
          else if (!stream) settle('ok', 200);
          else settle(tail.includes('data: [DONE]') ? 'stream-ok' : 'stream-incomplete', 200);
        });
        res.on('error', () => settle('failed'));
        res.on('close', () => settle('failed'));
      },
    );
    req.on('error', () => settle('failed'));
    if (controller) cancelTimer = setTimeout(() => controller.abort(), Math.random() * s.cancelWithinMs);
    req.end(body);
  };

  const total = Math.round(s.rate * s.seconds);
  await new Promise<void>((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor(((performance.now() - start) * s.rate) / 1000));
      while (out.sent + out.skipped < due) {
        if (outstanding >= s.maxOutstanding) out.skipped += 1;
        else {
          out.sent += 1;
          sendOne();
        }
      }
      if (out.sent + out.skipped >= total) return resolve();
      setTimeout(tick, 2);
    };
    tick();
  });
  out.sendSeconds = (performance.now() - start) / 1000;
  await onSendingDone();
  const drainStart = performance.now();
  const drainUntil = drainStart + s.drainMs;
  while (outstanding > 0 && performance.now() < drainUntil) await new Promise((r) => setTimeout(r, 10));
  out.drainedMs = performance.now() - drainStart;
  out.outstandingAtEnd = outstanding;
  agent.destroy();
  return out;
}

// ---------------------------------------------------------------------------------------------------

/** The same-run baseline: the first minute, or the first half of a shorter run. */
const baselineSeconds = (s: SoakSettings) => Math.min(60, s.seconds / 2);

const GROUP_SETUP = { fastDelayMs: 10, limitedDelayMs: 80, limitedParallel: 4 };

export async function soakScenario(settings: SoakSettings, details: Record<string, unknown>): Promise<Row[]> {
  const s = settings;
  step(S, `starting a gateway in a child process; ${s.rate} req/s for ${s.seconds}s, a sample every ${s.sampleEveryMs / 1000}s`);
  const child = await startChild('soak.js', { execArgv: ['--expose-gc'], args: [CHILD_FLAG] });
  try {
    const { url } = await child.call<{ url: string }>('start', { ...GROUP_SETUP, queueTimeoutSec: s.queueTimeoutSec });
    const ended = { count: 0 };
    const endedAtSample: number[] = [];
    let lastEnded = 0;
    child.onEvent((e) => {
      if (e.event !== 'soak-sample') return;
      const sample = e.sample as SoakSample;
      endedAtSample.push(ended.count - lastEnded);
      lastEnded = ended.count;
      step(
        S,
        `t=${(sample.atMs / 1000).toFixed(0)}s heap ${sample.heapUsedMiB.toFixed(1)} MiB, RSS ${sample.rssMiB.toFixed(0)} MiB, lag p99 ${sample.lagP99Ms.toFixed(2)} ms (max ${sample.lagMaxMs.toFixed(1)}), waiting ${sample.waiting}, in flight ${sample.inFlight}`,
      );
    });
    await child.call('begin', { sampleEveryMs: s.sampleEveryMs });
    const load = await runLoad(url, s, async () => void (await child.call('stopSampling', { sampleEveryMs: s.sampleEveryMs })), ended);
    const final = await child.call<{ samples: SoakSample[]; waiting: number; inFlight: number; liveRequests: number }>('final', {}, 10_000);
    const samples = final.samples.map((x, i) => ({ ...x, ended: endedAtSample[i] }));
    // Periods are widened by half a sampling interval, so the sample taken at (just after) a boundary
    // such as 60 s or the end of the run counts in the period it closes.
    const half = s.sampleEveryMs / 2;
    const verdict = soakVerdict(samples, { durationMs: s.seconds * 1000 + half, baselineMs: baselineSeconds(s) * 1000 + half, ...SOAK_TARGETS });
    const table = sampleTable(samples);
    process.stdout.write(`\nSoak samples (${samples.length}, every ${s.sampleEveryMs / 1000} s):\n\n${table}\n`);
    const third = (s.seconds * 1000) / 3;
    const latFirst = summarize(load.latency.filter((l) => l.at <= third).map((l) => l.ms));
    const latLast = summarize(load.latency.filter((l) => l.at > 2 * third).map((l) => l.ms));
    const { latency: _latency, ...loadSummary } = load;
    details.soak = {
      settings: s,
      groups: GROUP_SETUP,
      load: loadSummary,
      latencyFastMs: { firstThird: latFirst, lastThird: latLast },
      final: { waiting: final.waiting, inFlight: final.inFlight, liveRequests: final.liveRequests },
      verdict,
      samples,
      table,
    };
    return soakRows(s, load, verdict, samples, final, latFirst.p99, latLast.p99);
  } finally {
    await child.stop(5_000);
  }
}

function soakRows(
  s: SoakSettings,
  load: SoakLoad,
  v: SoakVerdict,
  samples: SoakSample[],
  final: { waiting: number; inFlight: number; liveRequests: number },
  latP99First: number,
  latP99Last: number,
): Row[] {
  const base = `${baselineSeconds(s)} s`;
  const statuses = Object.entries(load.byStatus)
    .filter(([k]) => k !== '200')
    .map(([k, n]) => `${n} × ${k}`)
    .join(', ');
  const outcome = `${load.done} done (${load.streamsDone} streams, ${load.waited} waited up to ${Math.round(load.longestWaitMs)} ms), ${load.cancelled} cancelled${statuses ? `, ${statuses}` : ''}${load.networkErrors ? `, ${load.networkErrors} network errors` : ''}${load.streamsIncomplete ? `, ${load.streamsIncomplete} streams incomplete` : ''}${load.skipped ? `, ${load.skipped} skipped` : ''}`;
  const leftBehind = final.waiting + final.inFlight + Math.max(0, final.liveRequests) + load.outstandingAtEnd;
  const shortRun =
    v.smallestLeakJudged > SOAK_TARGETS.maxHeapSlopeMiBPerMin
      ? ` (too short to tell a leak below ${v.smallestLeakJudged.toFixed(1)} MiB/min from noise)`
      : '';
  const lagTarget = `≤ ${SOAK_TARGETS.maxLagRatio}× first third (or + ≤ ${SOAK_TARGETS.lagSlackMs} ms)`;
  return [
    row({ scenario: S, measure: `requests sent over ${s.seconds} s (${outcome})`, unit: 'req/s', value: load.sent / load.sendSeconds, baseline: s.rate, baselineLabel: 'asked for' }),
    {
      ...row({ scenario: S, measure: 'heap used after GC, slope over the second half', unit: 'MiB/min', value: v.heapSlope, baseline: v.heapSlopeBaseline, baselineLabel: `slope over the first ${base}`, showRatio: false }),
      target: `< ${SOAK_TARGETS.maxHeapSlopeMiBPerMin} MiB/min, or < ${SOAK_TARGETS.heapNoiseMiB} MiB added`,
      // The verdict's judgement (it also refuses a slope fitted on fewer than 3 samples).
      status: v.memoryStable ? 'met' : 'MISSED',
    },
    row({ scenario: S, measure: 'heap used after GC, last sample', unit: 'MiB', value: v.heapAtEnd, baseline: v.heapAtBaseline, baselineLabel: `at ${base}` }),
    row({ scenario: S, measure: 'RSS slope over the second half', unit: 'MiB/min', value: v.rssSlope, baseline: v.rssSlopeBaseline, baselineLabel: `slope over the first ${base}`, showRatio: false }),
    {
      ...row({ scenario: S, measure: 'event-loop lag p99, last third (median of the samples)', unit: 'ms', value: v.lagP99Last, baseline: v.lagP99First, baselineLabel: 'first third' }),
      target: lagTarget,
      status: v.lagStable ? 'met' : 'MISSED',
    },
    row({ scenario: S, measure: 'event-loop lag max, last third (median of the samples)', unit: 'ms', value: v.lagMaxLast, baseline: v.lagMaxFirst, baselineLabel: 'first third' }),
    row({ scenario: S, measure: 'latency p99, fast group, last third', unit: 'ms', value: latP99Last, baseline: latP99First, baselineLabel: 'first third' }),
    row({
      scenario: S,
      measure: `most waiting at a sample (most in flight: ${Math.max(0, ...samples.map((x) => x.inFlight))})`,
      unit: 'count',
      value: Math.max(0, ...samples.map((x) => x.waiting)),
      showRatio: false,
    }),
    row({ scenario: S, measure: 'left behind at the end (waiting, in flight, live requests, unanswered)', unit: 'count', value: leftBehind, target: { comparison: '==', limit: 0, text: '0' } }),
    {
      scenario: S,
      measure: 'verdict',
      unit: '',
      value: null,
      baseline: null,
      baselineLabel: '',
      ratio: null,
      target: 'no leak, no lag growth',
      status: v.stable ? 'met' : 'MISSED',
      note: v.stable
        ? `stable: heap ${v.heapSlope.toFixed(2)} MiB/min over the second half (${v.heapGrowthSecondHalf.toFixed(2)} MiB)${shortRun}, lag p99 ${v.lagP99First.toFixed(2)} → ${v.lagP99Last.toFixed(2)} ms`
        : `NOT stable: ${v.reasons.join('; ')}`,
    },
  ];
}
