/**
 * The HTTP load generators, both run in the benchmark's own process against a server in a child
 * process (so generator and server each have a core of their own, the same for every server compared):
 *
 * - `closedLoop`: autocannon, N connections each sending the next request as soon as the previous
 *   answer arrives: the most the server can do. Latencies are taken from autocannon's per-response
 *   event (floating-point ms), because its own histogram rounds to whole milliseconds.
 * - `fixedRate`: an open-loop generator written here: requests sent on a fixed schedule (R per
 *   second, evenly spaced, catching up if a timer fires late) over keep-alive connections, latency
 *   from send to the end of the response, to several servers side by side on one schedule. autocannon's
 *   rate option sends each connection's quota for a second as one burst at the start of the second,
 *   which measures burst latency, not latency at a steady rate.
 */
import { Agent, request } from 'node:http';
import autocannon from 'autocannon';
import { summarize, type Summary } from './measure.js';

export interface LoadTarget {
  url: string;
  path: string;
  body: string;
  headers: Record<string, string>;
}

export interface LoadResult {
  requests: number;
  ok: number;
  errors: number;
  seconds: number;
  rps: number;
  latencyMs: Summary;
}

export async function closedLoop(target: LoadTarget, connections: number, seconds: number): Promise<LoadResult> {
  const latencies: number[] = [];
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: `${target.url}${target.path}`,
        method: 'POST',
        body: target.body,
        headers: { 'content-type': 'application/json', ...target.headers },
        connections,
        duration: seconds,
        pipelining: 1,
      },
      (err: unknown, r: autocannon.Result) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(r)),
    );
    instance.on('response', (_client: unknown, statusCode: number, _bytes: number, ms: number) => {
      if (statusCode >= 200 && statusCode < 300) latencies.push(ms);
    });
  });
  const ok = result['2xx'];
  return {
    requests: result.requests.total,
    ok,
    errors: result.errors + result.timeouts + result.non2xx,
    seconds: result.duration,
    rps: ok / result.duration,
    latencyMs: summarize(latencies),
  };
}

/**
 * Open loop at `rate` requests per second to EACH target, on one schedule: at every due slot one
 * request goes to every target (the order alternating), so the servers compared meet the same moments
 * of machine noise and their latency tails can be subtracted. Results in the order of `targets`.
 */
export async function fixedRate(targets: LoadTarget[], rate: number, seconds: number): Promise<LoadResult[]> {
  const total = Math.round(rate * seconds);
  const maxOutstanding = 256;
  const lanes = targets.map((target) => {
    const url = new URL(target.url);
    const body = Buffer.from(target.body);
    return {
      target,
      url,
      body,
      agent: new Agent({ keepAlive: true, maxSockets: 32 }),
      headers: { 'content-type': 'application/json', 'content-length': String(body.length), ...target.headers },
      latencies: [] as number[],
      ok: 0,
      errors: 0,
      outstanding: 0,
    };
  });
  type Lane = (typeof lanes)[number];

  const sendOne = (lane: Lane) => {
    const started = performance.now();
    lane.outstanding += 1;
    const req = request({ host: lane.url.hostname, port: lane.url.port, path: lane.target.path, method: 'POST', headers: lane.headers, agent: lane.agent }, (res) => {
      res.resume();
      res.on('end', () => {
        lane.outstanding -= 1;
        if (res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300) {
          lane.ok += 1;
          lane.latencies.push(performance.now() - started);
        } else lane.errors += 1;
      });
    });
    req.on('error', () => {
      lane.outstanding -= 1;
      lane.errors += 1;
    });
    req.end(lane.body);
  };

  let sent = 0;
  const start = performance.now();
  await new Promise<void>((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000));
      while (sent < due) {
        sent += 1;
        for (let i = 0; i < lanes.length; i++) {
          const lane = lanes[(sent + i) % lanes.length]!;
          // A stalled server must not make the generator pile up sockets: past the cap, count it lost.
          if (lane.outstanding >= maxOutstanding) lane.errors += 1;
          else sendOne(lane);
        }
      }
      if (sent >= total) return resolve();
      setTimeout(tick, 1);
    };
    tick();
  });
  // Let the last answers arrive (bounded).
  const drainUntil = performance.now() + 2_000;
  while (lanes.some((l) => l.outstanding > 0) && performance.now() < drainUntil) await new Promise((r) => setTimeout(r, 5));
  const elapsed = (performance.now() - start) / 1000;
  return lanes.map((lane) => {
    lane.agent.destroy();
    return { requests: sent, ok: lane.ok, errors: lane.errors, seconds: elapsed, rps: lane.ok / elapsed, latencyMs: summarize(lane.latencies) };
  });
}
