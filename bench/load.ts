/**
 * The HTTP load generators, each against servers in child processes of their own (so generator and
 * server each have a core, the same for every server compared):
 *
 * - `closedLoop`: autocannon in the benchmark's own process, N connections each sending the next
 *   request as soon as the previous answer arrives: the most the server can do. Latencies are taken
 *   from autocannon's per-response event (floating-point ms), because its own histogram rounds to
 *   whole milliseconds.
 * - `fixedRate`: an open-loop generator written here on raw sockets: requests sent on a fixed schedule
 *   (R per second, evenly spaced, catching up if a timer fires late) over keep-alive connections,
 *   latency from send to the last byte of the response, to several servers side by side on one
 *   schedule. autocannon's rate option sends each connection's quota for a second as one burst at the
 *   start of the second, which measures burst latency, not latency at a steady rate. The benchmark
 *   runs it in a child process of its own (bench/rate-main.ts), away from autocannon's garbage.
 * - `KeepAliveClient`: a fixed number of requests over connections kept between calls (node:http),
 *   for counts rather than times (bench/instructions.ts).
 */
import { Agent, request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
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

/**
 * Requests over a fixed set of keep-alive connections that outlive each `send`. A server's cost per
 * request depends on its connections' history: under valgrind the bare server executed ~40% more
 * instructions per request on connections opened after others had closed than on the ones it was
 * warmed up on. Keeping one set makes the warm-up and the measured requests meet the same server.
 */
export class KeepAliveClient {
  private readonly agent: Agent;

  constructor(
    private readonly target: LoadTarget,
    private readonly connections: number,
  ) {
    this.agent = new Agent({ keepAlive: true, maxSockets: connections });
  }

  /** Sends exactly `total` requests, `connections` at a time; resolves with how many got a 2xx. */
  async send(total: number): Promise<number> {
    let started = 0;
    let ok = 0;
    const url = `${this.target.url}${this.target.path}`;
    const headers = { 'content-type': 'application/json', ...this.target.headers };
    const one = () =>
      new Promise<void>((resolve, reject) => {
        const req = httpRequest(url, { method: 'POST', agent: this.agent, headers }, (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300) ok += 1;
            resolve();
          });
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end(this.target.body);
      });
    const worker = async () => {
      while (started < total) {
        started += 1;
        await one();
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.connections, total) }, worker));
    return ok;
  }

  close(): void {
    this.agent.destroy();
  }
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

/** One measured round of `fixedRate`, as the generator child (bench/rate-main.ts) reports it. */
export interface RateRound {
  results: LoadResult[];
  /** The generator's own event-loop delay during the round, ms (10 ms sampling timer). */
  generatorLagMs: { p99: number; max: number };
}

/**
 * Reads HTTP/1.1 responses off one keep-alive connection, however the bytes arrive split or joined,
 * and reports each one's status as its last byte arrives. Only responses with a Content-Length (what
 * fastify sends for a JSON body): anything else throws, since its end could not be found.
 */
export class ResponseReader {
  private pending: Buffer | null = null;
  /** Bytes of the current response (head + body), or -1 while its head is incomplete. */
  private need = -1;
  private status = 0;

  constructor(private readonly onResponse: (status: number) => void) {}

  push(chunk: Buffer): void {
    let bytes = this.pending === null ? chunk : Buffer.concat([this.pending, chunk]);
    this.pending = null;
    for (;;) {
      if (this.need < 0) {
        const headEnd = bytes.indexOf('\r\n\r\n');
        if (headEnd < 0) {
          this.pending = bytes;
          return;
        }
        const head = bytes.toString('latin1', 0, headEnd);
        this.status = Number(head.slice(9, 12));
        const length = /\r\ncontent-length:[ \t]*(\d+)/i.exec(head);
        if (length === null) throw new Error(`the fixed-rate generator reads responses with a Content-Length only; got: ${head.split('\r\n', 1)[0]}`);
        this.need = headEnd + 4 + Number(length[1]);
      }
      if (bytes.length < this.need) {
        this.pending = bytes;
        return;
      }
      const rest = bytes.length > this.need ? bytes.subarray(this.need) : null;
      this.need = -1;
      this.onResponse(this.status);
      if (rest === null) return;
      bytes = rest;
    }
  }
}

/** One keep-alive connection of the fixed-rate generator, with at most one request on it at a time. */
interface RateConnection {
  socket: Socket;
  reader: ResponseReader;
  /** performance.now() at the send of the request in flight; NaN when idle. */
  sentAt: number;
}

interface Lane {
  request: Buffer;
  /** Idle connections, least recently used first, so every connection stays in use. */
  idle: RateConnection[];
  open: number;
  latencies: number[];
  ok: number;
  errors: number;
}

function requestBytes(target: LoadTarget, url: URL): Buffer {
  const body = Buffer.from(target.body);
  let head = `POST ${target.path} HTTP/1.1\r\nhost: ${url.host}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n`;
  for (const [name, value] of Object.entries(target.headers)) head += `${name}: ${value}\r\n`;
  return Buffer.concat([Buffer.from(`${head}\r\n`, 'latin1'), body]);
}

async function openLane(target: LoadTarget, connections: number): Promise<Lane> {
  const url = new URL(target.url);
  const lane: Lane = { request: requestBytes(target, url), idle: [], open: 0, latencies: [], ok: 0, errors: 0 };
  const sockets = await Promise.all(
    Array.from(
      { length: connections },
      () =>
        new Promise<Socket>((resolve, reject) => {
          const socket = connect({ host: url.hostname, port: Number(url.port), noDelay: true }, () => resolve(socket));
          socket.once('error', reject);
        }),
    ),
  );
  for (const socket of sockets) {
    const conn: RateConnection = {
      socket,
      sentAt: NaN,
      reader: new ResponseReader((status) => {
        if (status >= 200 && status < 300) {
          lane.ok += 1;
          lane.latencies.push(performance.now() - conn.sentAt);
        } else lane.errors += 1;
        conn.sentAt = NaN;
        lane.idle.push(conn);
      }),
    };
    lane.open += 1;
    socket.on('data', (chunk: Buffer) => {
      try {
        conn.reader.push(chunk);
      } catch {
        socket.destroy();
      }
    });
    socket.on('error', () => undefined);
    // A connection the server closed leaves the pool; a request in flight on it is an error.
    socket.once('close', () => {
      lane.open -= 1;
      if (!Number.isNaN(conn.sentAt)) lane.errors += 1;
      const at = lane.idle.indexOf(conn);
      if (at >= 0) lane.idle.splice(at, 1);
    });
    lane.idle.push(conn);
  }
  return lane;
}

/**
 * Open loop at `rate` requests per second to EACH target, on one schedule: at every due slot one
 * request goes to every target (the order alternating), so the servers compared meet the same moments
 * of machine noise and their latency tails can be subtracted. Results in the order of `targets`.
 *
 * Written on raw sockets with the request bytes built once: node:http's client cost the generator
 * ~0.25 ms per request and frequent collections of its own, which showed up in every latency it took
 * (the bare server's p50 read 0.42 ms through it, 0.15-0.29 ms through this). Each target gets
 * `connections` keep-alive connections opened before the clock starts; a slot that finds all of them
 * busy counts as an error rather than opening more.
 */
export async function fixedRate(targets: LoadTarget[], rate: number, seconds: number, connections = 32): Promise<LoadResult[]> {
  const total = Math.round(rate * seconds);
  const lanes = await Promise.all(targets.map((target) => openLane(target, connections)));
  const send = (lane: Lane) => {
    const conn = lane.idle.shift();
    if (conn === undefined) {
      lane.errors += 1;
      return;
    }
    conn.sentAt = performance.now();
    conn.socket.write(lane.request);
  };

  let sent = 0;
  const start = performance.now();
  await new Promise<void>((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000));
      while (sent < due) {
        sent += 1;
        for (let i = 0; i < lanes.length; i++) send(lanes[(sent + i) % lanes.length]!);
      }
      if (sent >= total) return resolve();
      setTimeout(tick, 1);
    };
    tick();
  });
  // Let the last answers arrive (bounded).
  const busy = (lane: Lane) => lane.idle.length < lane.open;
  const drainUntil = performance.now() + 2_000;
  while (lanes.some(busy) && performance.now() < drainUntil) await new Promise((r) => setTimeout(r, 5));
  const elapsed = (performance.now() - start) / 1000;
  return lanes.map((lane) => {
    // Still unanswered after the drain: lost.
    const lost = lane.open - lane.idle.length;
    for (const conn of lane.idle) conn.socket.destroy();
    lane.idle.length = 0;
    return { requests: sent, ok: lane.ok, errors: lane.errors + lost, seconds: elapsed, rps: lane.ok / elapsed, latencyMs: summarize(lane.latencies) };
  });
}
