/** The benchmark's measurement functions on workloads whose answers are known (no timing is asserted). */
import { describe, expect, it } from 'vitest';
import { waitFor } from './support/gateway.js';
import {
  allowedByWindow,
  countInversions,
  countParallelViolations,
  countWindowViolations,
  median,
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

  it('takes medians, of odd and even counts, and NaN of none', () => {
    expect(median([5, 1, 3])).toBe(3);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
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

describe('soak arithmetic (bench/soak-measure.ts)', async () => {
  const { linearFit, sampleTable, slopePerMinute, soakVerdict } = await import('../bench/soak-measure.js');
  type Sample = import('../bench/soak-measure.js').SoakSample;

  /** A sample every 5 s for `seconds`, heap and lag p99 as functions of the time in seconds. */
  const run = (seconds: number, heap: (t: number) => number, lagP99: (t: number) => number = () => 3): Sample[] =>
    Array.from({ length: seconds / 5 }, (_, i) => {
      const t = (i + 1) * 5;
      return { atMs: t * 1000, heapUsedMiB: heap(t), rssMiB: 100 + heap(t), lagP50Ms: 0.2, lagP99Ms: lagP99(t), lagMaxMs: lagP99(t) * 2, waiting: 0, inFlight: 3 };
    });
  // As the soak calls it: the run's length plus half a sampling interval, so the last sample is inside.
  const options = (seconds: number) => ({ durationMs: seconds * 1000 + 2_500 });

  it('fits a least-squares line, and refuses one it cannot fit', () => {
    expect(linearFit([{ x: 0, y: 1 }, { x: 1, y: 3 }, { x: 2, y: 5 }])).toEqual({ slope: 2, intercept: 1, n: 3 });
    // Noise (+½, −½, −½, +½) around y = 10 + x that is uncorrelated with x: the slope stays exactly 1.
    const fit = linearFit([{ x: 0, y: 10.5 }, { x: 1, y: 10.5 }, { x: 2, y: 11.5 }, { x: 3, y: 13.5 }]);
    expect(fit.slope).toBeCloseTo(1, 10);
    expect(fit.intercept).toBeCloseTo(10, 10);
    expect(linearFit([{ x: 4, y: 7 }]).slope).toBeNaN();
    expect(linearFit([{ x: 4, y: 7 }, { x: 4, y: 9 }]).slope).toBeNaN();
    expect(linearFit([]).n).toBe(0);
  });

  it('takes slopes per minute over a time range', () => {
    // 10 MiB, +0.5 MiB per minute.
    const samples = run(180, (t) => 10 + (0.5 * t) / 60);
    expect(slopePerMinute(samples, 'heapUsedMiB', 90_000, 180_000).slope).toBeCloseTo(0.5, 10);
    expect(slopePerMinute(samples, 'heapUsedMiB', 90_000, 180_000).n).toBe(18);
    expect(slopePerMinute(samples, 'rssMiB', -Infinity, 60_000).n).toBe(12);
  });

  it('calls a warm-up followed by a flat heap stable, and keeps the warm-up as the baseline', () => {
    // +6 MiB over the first minute (JIT, caches), then flat with ±0.2 MiB of noise.
    const samples = run(180, (t) => (t <= 60 ? 10 + (6 * t) / 60 : 16 + (t % 10 === 0 ? 0.2 : -0.2)));
    const v = soakVerdict(samples, options(180));
    expect(v.baselineMs).toBe(60_000);
    expect(v.heapSlopeBaseline).toBeCloseTo(6, 10);
    expect(Math.abs(v.heapSlope)).toBeLessThan(0.1);
    expect(v.heapAtBaseline).toBeCloseTo(16, 10);
    expect(v.memoryStable).toBe(true);
    expect(v.stable).toBe(true);
    expect(v.reasons).toEqual([]);
  });

  it('finds a leak of 3 MiB/min in the second half', () => {
    const samples = run(180, (t) => (t <= 90 ? 15 : 15 + (3 * (t - 90)) / 60));
    const v = soakVerdict(samples, options(180));
    expect(v.heapSlope).toBeCloseTo(3, 10);
    expect(v.heapGrowthSecondHalf).toBeCloseTo(3 * (182.5 / 2 / 60), 10);
    expect(v.memoryStable).toBe(false);
    expect(v.stable).toBe(false);
    expect(v.reasons).toEqual([expect.stringContaining('heap grew 3.00 MiB/min')]);
  });

  it('does not call noise a leak in a short run, and says what it could have judged', () => {
    // 30 s: +1.5 MiB/min over the second half is 0.4 MiB, within the noise of the heap after GC.
    const samples = run(30, (t) => 14 + (1.5 * t) / 60);
    const v = soakVerdict(samples, options(30));
    expect(v.heapSlope).toBeCloseTo(1.5, 10);
    expect(v.memoryStable).toBe(true);
    expect(v.smallestLeakJudged).toBeCloseTo(1 / (32.5 / 2 / 60), 10);
    // 4 MiB/min over the same half is 1.08 MiB: judged.
    expect(soakVerdict(run(30, (t) => 14 + (4 * t) / 60), options(30)).memoryStable).toBe(false);
    // Two samples in the second half cannot give a slope worth judging.
    const two = soakVerdict(run(20, () => 14), { durationMs: 20_000 });
    expect(two.memoryStable).toBe(false);
    expect(two.reasons).toEqual([expect.stringContaining('too few samples')]);
  });

  it('judges lag growth by the medians of the first and last thirds', () => {
    // p99 2 ms for the first two thirds, 12 ms in the last: ×6 and +10 ms.
    const grown = soakVerdict(run(180, () => 15, (t) => (t > 122 ? 12 : 2)), options(180));
    expect(grown.lagP99First).toBe(2);
    expect(grown.lagP99Last).toBe(12);
    expect(grown.lagMaxLast).toBe(24);
    expect(grown.lagStable).toBe(false);
    expect(grown.reasons).toEqual([expect.stringContaining('lag p99 grew from 2.00 ms to 12.00 ms')]);
    // ×3 but only +1 ms: noise, not growth.
    expect(soakVerdict(run(180, () => 15, (t) => (t > 122 ? 1.5 : 0.5)), options(180)).lagStable).toBe(true);
    // One bad sample in the last third does not move its median.
    expect(soakVerdict(run(180, () => 15, (t) => (t === 150 ? 80 : 3)), options(180)).lagP99Last).toBe(3);
  });

  it('prints the samples as a Markdown table', () => {
    const table = sampleTable(run(10, () => 14.256).map((s) => ({ ...s, gcMs: 21.04, ended: 1500 })));
    const lines = table.split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/^\| t \(s\) \| heap used after GC \(MiB\) \|/);
    expect(lines[2]).toBe('| 5 | 14.26 | 114.3 | 0.20 | 3.00 | 6.00 | 21.0 | 0 | 3 | 1500 |');
  });
});

describe('the fixed-rate generator reads HTTP responses off raw bytes (bench/load.ts ResponseReader)', () => {
  const response = (status: number, body: string, extraHeaders = '') =>
    `HTTP/1.1 ${status} X\r\ncontent-type: application/json\r\n${extraHeaders}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

  it('reports each response once, at its last byte, however the bytes are split', async () => {
    const { ResponseReader } = await import('../bench/load.js');
    const bytes = Buffer.from(response(200, '{"ok":"é"}') + response(503, '') + response(201, 'x'.repeat(40), 'x-a: 1\r\n'));
    // Every split point into two chunks, and one byte at a time.
    for (let cut = 0; cut <= bytes.length; cut++) {
      const seen: number[] = [];
      const reader = new ResponseReader((status) => seen.push(status));
      reader.push(bytes.subarray(0, cut));
      reader.push(bytes.subarray(cut));
      expect(seen).toEqual([200, 503, 201]);
    }
    const seen: number[] = [];
    const reader = new ResponseReader((status) => seen.push(status));
    for (let i = 0; i < bytes.length; i++) {
      reader.push(bytes.subarray(i, i + 1));
      // Nothing is reported before the last byte of the first response.
      if (i < Buffer.byteLength(response(200, '{"ok":"é"}')) - 1) expect(seen).toEqual([]);
    }
    expect(seen).toEqual([200, 503, 201]);
  });

  it('refuses a response whose end it cannot find (no Content-Length)', async () => {
    const { ResponseReader } = await import('../bench/load.js');
    const reader = new ResponseReader(() => undefined);
    expect(() => reader.push(Buffer.from('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n'))).toThrow(/Content-Length only; got: HTTP\/1.1 200 OK/);
  });
});

describe('the in-process request timer (bench/in-process-timer.ts)', () => {
  it('times each finished request from its request event to its finish, and starts afresh on each take', async () => {
    const { createServer } = await import('node:http');
    const { InProcessTimer } = await import('../bench/in-process-timer.js');
    const timer = new InProcessTimer();
    // One request at a time: a known sequence.
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () => res.end(req.url === '/slow' ? 'x'.repeat(10) : 'ok'));
    });
    timer.attach(server);
    const url = await new Promise<string>((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as { port: number }).port}`)));
    try {
      for (let i = 0; i < 5; i++) expect(await (await fetch(`${url}/x`)).text()).toBe('ok');
      // A finish event may come after the client has read the answer: count with a deadline.
      let timed = 0;
      await waitFor(() => ((timed += timer.take().n) >= 5 ? true : undefined), 'five requests to be timed');
      expect(timed).toBe(5);
      expect(await (await fetch(`${url}/slow`)).text()).toBe('x'.repeat(10));
      const second = await waitFor(() => {
        const s = timer.take();
        return s.n > 0 ? s : undefined;
      }, 'the sixth request to be timed');
      expect(second.n).toBe(1);
      expect(second.min).toBeGreaterThanOrEqual(0);
      expect(timer.take().n).toBe(0);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});

describe('the median fixed-rate round (bench/scenario-overhead.ts)', () => {
  it('reports the round whose p99 added is the median, with both servers from that same round', async () => {
    const { medianRound } = await import('../bench/scenario-overhead.js');
    const result = (p99: number) => ({ requests: 1, ok: 1, errors: 0, seconds: 1, rps: 1, latencyMs: { n: 1, min: p99, mean: p99, p50: p99, p90: p99, p99, max: p99 } });
    const round = (bare: number, gateway: number) => ({ results: [result(bare), result(gateway)], generatorLagMs: { p99: 0, max: 0 } });
    // Added: 9, 0.5, 2 -> the median is 2 (the third round), not the round with the median p99s.
    const picked = medianRound([round(1, 10), round(3, 3.5), round(2, 4)]);
    expect(picked.bare.latencyMs.p99).toBe(2);
    expect(picked.gateway.latencyMs.p99).toBe(4);
    // An even count takes the lower middle round.
    expect(medianRound([round(0, 4), round(0, 1)]).gateway.latencyMs.p99).toBe(1);
    expect(() => medianRound([])).toThrow(/no fixed-rate rounds/);
  });
});

describe('fixed-rate load to several servers side by side (bench/load.ts)', () => {
  it('sends each server the same number of requests and reports each one its own answers, in order', async () => {
    const { createServer } = await import('node:http');
    const { fixedRate } = await import('../bench/load.js');
    const seen = [0, 0];
    // The first server answers 200, the second 503 to every other request.
    const servers = [0, 1].map((n) =>
      createServer((req, res) => {
        req.resume();
        req.on('end', () => {
          seen[n]! += 1;
          res.statusCode = n === 1 && seen[n]! % 2 === 0 ? 503 : 200;
          res.end('{}');
        });
      }),
    );
    const urls = await Promise.all(
      servers.map(
        (s) =>
          new Promise<string>((resolve) => {
            s.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(s.address() as { port: number }).port}`));
          }),
      ),
    );
    try {
      const target = (url: string) => ({ url, path: '/x', body: '{}', headers: {} });
      // As many connections as requests: a stall of the test machine cannot leave a slot without one.
      const [a, b] = await fixedRate(urls.map(target), 200, 0.5, 100);
      expect(seen).toEqual([100, 100]);
      expect(a).toMatchObject({ requests: 100, ok: 100, errors: 0 });
      expect(b).toMatchObject({ requests: 100, ok: 50, errors: 50 });
      expect(a!.latencyMs.n).toBe(100);
      expect(b!.latencyMs.n).toBe(50);
    } finally {
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    }
  });

  it('counts a request whose connection the server drops as an error and goes on with the connections left', async () => {
    const { createServer } = await import('node:http');
    const { fixedRate } = await import('../bench/load.js');
    let n = 0;
    // Every 5th request: the server closes the connection instead of answering.
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        n += 1;
        if (n % 5 === 0) req.socket.destroy();
        else res.end('{}');
      });
    });
    const url = await new Promise<string>((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as { port: number }).port}`)));
    try {
      // 120 connections: after the 20 drops, still one per request even if all came due at once.
      const [r] = await fixedRate([{ url, path: '/x', body: '{}', headers: {} }], 200, 0.5, 120);
      expect(n).toBe(100);
      expect(r).toMatchObject({ requests: 100, ok: 80, errors: 20 });
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});

describe('instruction counts (bench/instructions.ts)', () => {
  it('reads the total from cachegrind\'s summary, and refuses a log without one', async () => {
    const { instructionsFromLog } = await import('../bench/instructions.js');
    const log = ['==21188== Cachegrind, a cache and branch-prediction profiler', '==21188== ', '==21188== I   refs:      6,759,743,495', '==21188== I1  misses:      109,223,609'].join('\n');
    expect(instructionsFromLog(log)).toBe(6_759_743_495);
    expect(instructionsFromLog('==7== I refs:        12,345')).toBe(12_345);
    expect(() => instructionsFromLog('==7== valgrind: could not start')).toThrow(/no instruction count/);
  });

  it('divides the difference of two runs by the difference of their requests, and refuses runs that do not differ', async () => {
    const { perRequest } = await import('../bench/instructions.js');
    // Start-up and warm-up (1,000,000) are in both runs; each request costs 150.
    expect(perRequest({ requests: 2_500, instructions: 1_000_000 + 2_500 * 150 }, { requests: 5_500, instructions: 1_000_000 + 5_500 * 150 })).toBe(150);
    expect(() => perRequest({ requests: 10, instructions: 5 }, { requests: 10, instructions: 9 })).toThrow(/no difference/);
  });

  it('sends exactly the requests asked for over the same keep-alive connections each time, and counts the 2xx answers', async () => {
    const { createServer } = await import('node:http');
    const { KeepAliveClient } = await import('../bench/load.js');
    let seen = 0;
    const sockets = new Set<unknown>();
    // Every fifth request gets a 500.
    const server = createServer((req, res) => {
      sockets.add(req.socket);
      req.resume();
      req.on('end', () => {
        seen += 1;
        res.statusCode = seen % 5 === 0 ? 500 : 200;
        res.end('{}');
      });
    });
    const url = await new Promise<string>((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as { port: number }).port}`)));
    const client = new KeepAliveClient({ url, path: '/x', body: '{"a":1}', headers: { authorization: 'Bearer k' } }, 4);
    try {
      expect(await client.send(250)).toBe(200);
      expect(seen).toBe(250);
      expect(await client.send(50)).toBe(40);
      expect(seen).toBe(300);
      expect(sockets.size).toBe(4);
    } finally {
      client.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});

describe('the scale child (bench/scale-main.ts)', () => {
  /** Runs the built child the way scenario 3 does, and returns its one JSON line. */
  async function scaleChild(kind: 'router' | 'store', n: number, batch: number, batches: number): Promise<Record<string, number | string | number[]>> {
    const { execFile } = await import('node:child_process');
    const { fileURLToPath } = await import('node:url');
    const script = fileURLToPath(new URL('../dist/bench/scale-main.js', import.meta.url));
    const stdout = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, ['--expose-gc', script, kind, String(n), String(batch), String(batches)], { timeout: 60_000 }, (error, out, err) => (error ? reject(new Error(`${error.message}\n${err}`)) : resolve(out))),
    );
    return JSON.parse(stdout.trim()) as Record<string, number | string | number[]>;
  }

  // The child checks itself that every cycle leaves exactly N waiting (it throws otherwise, and the
  // run fails here); these runs check what it reports. No figure is compared with a time.
  for (const kind of ['store', 'router'] as const) {
    it(`${kind}: reports the size, the cycles, a positive cost per operation, and a heap figure`, async () => {
      const r = await scaleChild(kind, 300, 100, 3);
      expect(r).toMatchObject({ kind, n: 300, batch: 100, batches: 3 });
      for (const key of ['enqueueUs', 'grantUs']) expect(r[key]).toBeGreaterThan(0);
      // The figure is the median cycle's; every cycle's is reported, and the mean over them.
      for (const op of ['enqueue', 'grant']) {
        const cycles = r[`${op}CycleUs`] as unknown as number[];
        expect(cycles).toHaveLength(3);
        expect(r[`${op}Us`]).toBe([...cycles].sort((a, b) => a - b)[1]);
        expect(r[`${op}MeanUs`]).toBeCloseTo((cycles[0] + cycles[1] + cycles[2]) / 3, 9);
      }
      // At 300 waiters the heap difference is within the collector's noise (it read -124 B once for
      // the store): only that it is a number is checked here.
      expect(Number.isFinite(r.bytesPerWaiter)).toBe(true);
    });
  }

  it('refuses sizes it cannot use', async () => {
    await expect(scaleChild('store', 300, 0, 3)).rejects.toThrow(/usage: scale-main/);
  });
});

describe('the command line of npm run bench (bench/bench-args.ts)', async () => {
  const { BENCH_USAGE, DEFAULT_SCENARIOS, parseBenchArgs } = await import('../bench/bench-args.js');

  it('runs the six default scenarios in full mode, writing the docs, with no arguments', () => {
    const r = parseBenchArgs([]);
    expect(r.kind).toBe('run');
    if (r.kind !== 'run') return;
    expect([...r.options.only]).toEqual([...DEFAULT_SCENARIOS]);
    expect(r.options).toMatchObject({ mode: 'full', writeDocs: true, soakSeconds: 180 });
  });

  it('reads --quick, --only, --no-docs and --soak-seconds', () => {
    const r = parseBenchArgs(['--quick', '--only', 'soak, redis', '--no-docs', '--soak-seconds', '45']);
    expect(r.kind === 'run' && { ...r.options, only: [...r.options.only] }).toEqual({ mode: 'quick', only: ['soak', 'redis'], writeDocs: false, soakSeconds: 45 });
    const quick = parseBenchArgs(['--quick', '--only', 'soak']);
    expect(quick.kind === 'run' && quick.options.soakSeconds).toBe(30);
  });

  it('answers --help and -h with the usage, which names every option and scenario', () => {
    expect(parseBenchArgs(['--help'])).toEqual({ kind: 'help' });
    expect(parseBenchArgs(['-h'])).toEqual({ kind: 'help' });
    for (const word of ['--quick', '--only', '--no-docs', '--soak-seconds', '--help', ...DEFAULT_SCENARIOS, 'soak', 'instructions']) expect(BENCH_USAGE).toContain(word);
  });

  it('names what is wrong instead of throwing', () => {
    const cases: Array<[string[], RegExp]> = [
      [['--fast'], /Unknown option '--fast'/],
      [['extra'], /Unexpected argument 'extra'/],
      [['--only'], /--only/],
      [['--only', 'overhead,speed'], /--only: unknown scenario "speed"; known: overhead, latency/],
      [['--only', ''], /--only: unknown scenario ""/],
      [['--soak-seconds', '5'], /--soak-seconds must be a whole number from 10 to 3600, got "5"/],
      [['--soak-seconds', 'ten'], /got "ten"/],
    ];
    for (const [argv, message] of cases) {
      const r = parseBenchArgs(argv);
      expect(r.kind, argv.join(' ')).toBe('error');
      expect(r.kind === 'error' && r.message).toMatch(message);
    }
  });
});
