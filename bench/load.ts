/**
 * The HTTP load generators, both run in the benchmark's own process against a server in a child
 * process (so generator and server each have a core of their own, the same for every server compared):
 *
 * - `closedLoop`: autocannon, N connections each sending the next request as soon as the previous
 *   answer arrives: the most the server can do. Latencies are taken from autocannon's per-response
 *   event (floating-point ms), because its own histogram rounds to whole milliseconds.
 * - `fixedRate`: an open-loop generator written here: requests sent on a fixed schedule (R per
 *   second, evenly spaced, catching up if a timer fires late) over keep-alive connections, latency
 *   from send to the end of the response. autocannon's rate option sends each connection's quota for a
 *   second as one burst at the start of the second, which measures burst latency, not latency at a
 *   steady rate.
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

export async function fixedRate(target: LoadTarget, rate: number, seconds: number): Promise<LoadResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: 32 });
  const url = new URL(target.url);
  const body = Buffer.from(target.body);
  const headers = { 'content-type': 'application/json', 'content-length': String(body.length), ...target.headers };
  const latencies: number[] = [];
  const total = Math.round(rate * seconds);
  const maxOutstanding = 256;
  let sent = 0;
  let ok = 0;
  let errors = 0;
  let outstanding = 0;

  const sendOne = () => {
    const started = performance.now();
    outstanding += 1;
    const req = request(
      { host: url.hostname, port: url.port, path: target.path, method: 'POST', headers, agent },
      (res) => {
        res.resume();
        res.on('end', () => {
          outstanding -= 1;
          if (res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300) {
            ok += 1;
            latencies.push(performance.now() - started);
          } else errors += 1;
        });
      },
    );
    req.on('error', () => {
      outstanding -= 1;
      errors += 1;
    });
    req.end(body);
  };

  const start = performance.now();
  await new Promise<void>((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000));
      while (sent < due) {
        sent += 1;
        // A stalled server must not make the generator pile up sockets: past the cap, count it lost.
        if (outstanding >= maxOutstanding) errors += 1;
        else sendOne();
      }
      if (sent >= total) return resolve();
      setTimeout(tick, 1);
    };
    tick();
  });
  // Let the last answers arrive (bounded).
  const drainUntil = performance.now() + 2_000;
  while (outstanding > 0 && performance.now() < drainUntil) await new Promise((r) => setTimeout(r, 5));
  const elapsed = (performance.now() - start) / 1000;
  agent.destroy();
  return { requests: sent, ok, errors, seconds: elapsed, rps: ok / elapsed, latencyMs: summarize(latencies) };
}
