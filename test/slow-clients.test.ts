/**
 * Slow clients over raw `net` sockets: headers or a body trickled in byte by byte, a connection that
 * sends nothing, an idle keep-alive connection, a reader that stops reading a stream. The server's
 * timeouts (`timeouts` of createGateway: request, headers, keep-alive, how often Node checks them, and
 * how long a stalled stream reader is waited for)
 * are set small here; a client cut by them gets a 408 in the OpenAI envelope and never holds a queue
 * slot, while a request that is fully received and waits in the queue longer than those timeouts is
 * not affected.
 */
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { TriageConfig } from '../src/core/config-types.js';
import type { QueueEvent } from '../src/events.js';
import type { ServerTimeouts } from '../src/server/app.js';
import { parseConfig } from '../src/adapters/config-loader.js';
import { chat, startGateway, waitFor, type RunningGateway } from './support/gateway.js';
import { testConfig } from './support/test-config.js';

const TIMEOUTS = { headersTimeoutMs: 400, requestTimeoutMs: 800, keepAliveTimeoutMs: 400, checkIntervalMs: 50 };
/** Slack for a loaded 2-core machine: a cut must come after its timeout and well before this much later. */
const LATE_MS = 3_000;

let running: RunningGateway[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(running.map((g) => g.stop()));
  running = [];
});

async function start(config: TriageConfig = testConfig({ m: [{ maxParallelRequests: 1 }] }), timeouts: Partial<ServerTimeouts> = {}): Promise<{ g: RunningGateway; port: number; events: QueueEvent[] }> {
  const g = await startGateway(config, { timeouts: { ...TIMEOUTS, ...timeouts } });
  running.push(g);
  const events: QueueEvent[] = [];
  g.gateway.router.events.subscribe((e) => events.push(e));
  return { g, port: Number(new URL(g.url).port), events };
}

interface Trickler {
  socket: Socket;
  /** Resolves with the ms from connect to the server closing the connection. */
  closed: Promise<number>;
  received(): string;
  /** Bytes written so far. */
  sent(): number;
}

/**
 * Connects, writes `prefix`, then one byte of `drip` every `everyMs` until the server closes the
 * connection or `drip` runs out. Bounded: the socket is destroyed after 10 s whatever happens.
 */
function trickle(port: number, prefix: string, drip: string, everyMs = 20): Trickler {
  const socket = connect(port, '127.0.0.1');
  sockets.push(socket);
  socket.setNoDelay(true);
  const started = Date.now();
  let got = '';
  let written = 0;
  let timer: NodeJS.Timeout | undefined;
  socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
  socket.on('error', () => undefined);
  const hardStop = setTimeout(() => socket.destroy(), 10_000);
  const closed = new Promise<number>((resolve) => {
    socket.on('close', () => {
      clearInterval(timer);
      clearTimeout(hardStop);
      resolve(Date.now() - started);
    });
  });
  socket.on('connect', () => {
    if (prefix !== '') socket.write(prefix);
    written = prefix.length;
    let i = 0;
    timer = setInterval(() => {
      if (socket.destroyed || i >= drip.length) return clearInterval(timer);
      socket.write(drip[i++]);
      written += 1;
    }, everyMs);
  });
  return { socket, closed, received: () => got, sent: () => written };
}

/** The one response in `raw`: status, and the JSON body. */
function response(raw: string): { status: number; body: { error?: { code: string; type: string; message: string; param: unknown } } } {
  const m = /^HTTP\/1\.1 (\d{3}) [^\r]*\r\n([\s\S]*?)\r\n\r\n([\s\S]*)$/.exec(raw);
  if (!m) throw new Error(`not an HTTP response: ${JSON.stringify(raw.slice(0, 200))}`);
  return { status: Number(m[1]), body: JSON.parse(m[3]) as never };
}

function expectTimeoutAnswer(raw: string): void {
  const r = response(raw);
  expect(r.status).toBe(408);
  expect(r.body.error).toEqual({ message: expect.any(String), type: 'invalid_request_error', param: null, code: 'invalid_request' });
}

async function groupStatus(g: RunningGateway) {
  const s = (await (await fetch(`${g.url}/queue/status`)).json()) as { models: Array<{ model: string; waiting: number; inFlight: number }> };
  return s.models;
}

const BODY = JSON.stringify(chat('m', 'slow but sure'));
const HEAD = (length: number) => `POST /queue/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n\r\n`;

describe('slow clients', () => {
  it('cuts a client trickling its headers at the headers timeout, with a 408 in the envelope', async () => {
    const { port, events } = await start();
    const t = trickle(port, 'POST /queue/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n', `X-Slow: ${'a'.repeat(1000)}`);
    const after = await t.closed;
    expect(after).toBeGreaterThanOrEqual(TIMEOUTS.headersTimeoutMs - 50);
    expect(after).toBeLessThan(TIMEOUTS.headersTimeoutMs + LATE_MS);
    expectTimeoutAnswer(t.received());
    expect(events).toEqual([]);
  });

  it('cuts a connection that sends nothing at all', async () => {
    const { port } = await start();
    const t = trickle(port, '', '');
    const after = await t.closed;
    expect(after).toBeGreaterThanOrEqual(TIMEOUTS.headersTimeoutMs - 50);
    expect(after).toBeLessThan(TIMEOUTS.headersTimeoutMs + LATE_MS);
    expectTimeoutAnswer(t.received());
  });

  it('cuts a client trickling its body at the request timeout; it never reaches the queue', async () => {
    const { g, port, events } = await start();
    const t = trickle(port, HEAD(BODY.length), BODY);
    // While it trickles, nothing waits or runs for it.
    let checks = 0;
    const watching = (async () => {
      while (t.socket.readyState !== 'closed' && !t.socket.destroyed && checks < 200) {
        checks += 1;
        const [m] = await groupStatus(g);
        expect(m).toMatchObject({ waiting: 0, inFlight: 0 });
        expect(g.gateway.router.liveRequests).toBe(0);
        await new Promise((r) => setTimeout(r, 25));
      }
    })();
    const after = await t.closed;
    await watching;
    expect(checks).toBeGreaterThan(3);
    expect(t.sent()).toBeLessThan(HEAD(BODY.length).length + BODY.length);
    expect(after).toBeGreaterThanOrEqual(TIMEOUTS.requestTimeoutMs - 50);
    expect(after).toBeLessThan(TIMEOUTS.requestTimeoutMs + LATE_MS);
    expectTimeoutAnswer(t.received());
    expect(events).toEqual([]);
    // The gateway is fine: the next request is served.
    const ok = await g.client().chat.completions.create(chat('m', 'after'));
    expect(ok.choices[0].message.content).toBe('ok');
  });

  it('serves a slow client that finishes within the request timeout', async () => {
    const { port } = await start();
    // The whole body over ~10 writes 10 ms apart, far inside the 800 ms request timeout.
    const head = HEAD(BODY.length);
    const t = trickle(port, head + BODY.slice(0, BODY.length - 10), `${BODY.slice(-10)}`, 10);
    await waitFor(() => (t.received().includes('"chat.completion"') ? true : undefined), 'the answer', 5_000);
    expect(t.received().startsWith('HTTP/1.1 200 ')).toBe(true);
    t.socket.destroy();
  });

  it('many slow clients at once hold no slot and do not delay normal requests', async () => {
    const { g, port, events } = await start(testConfig({ m: [{ maxParallelRequests: 1, mockDelayMs: 5 }] }));
    const slow: Trickler[] = [];
    for (let i = 0; i < 20; i++) {
      slow.push(trickle(port, HEAD(BODY.length), BODY, 25));
      slow.push(trickle(port, 'POST /queue/chat/completions HTTP/1.1\r\n', 'Host: 127.0.0.1\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n', 25));
    }
    const client = g.client();
    const served: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t0 = Date.now();
      const r = await client.chat.completions.create(chat('m', `normal ${i}`));
      expect(r.choices[0].message.content).toBe('ok');
      served.push(Date.now() - t0);
      const [m] = await groupStatus(g);
      expect(m.waiting).toBe(0);
      expect(m.inFlight).toBe(0);
    }
    // Each normal request was answered without waiting for any slow client (loose bound: CI noise).
    expect(Math.max(...served)).toBeLessThan(TIMEOUTS.headersTimeoutMs + LATE_MS);
    const cut = await Promise.all(slow.map((s) => s.closed));
    expect(Math.max(...cut)).toBeLessThan(TIMEOUTS.requestTimeoutMs + LATE_MS);
    for (const s of slow) expectTimeoutAnswer(s.received());
    // Only the ten normal requests ever entered the queue.
    expect(events.filter((e) => e.type === 'request.queued')).toHaveLength(10);
    expect(g.gateway.router.liveRequests).toBe(0);
  });

  it('closes an idle keep-alive connection after the keep-alive timeout', async () => {
    const { port } = await start();
    const t = trickle(port, HEAD(BODY.length) + BODY, '');
    await waitFor(() => (t.received().includes('"chat.completion"') ? true : undefined), 'the answer');
    const after = await t.closed;
    expect(after).toBeGreaterThanOrEqual(TIMEOUTS.keepAliveTimeoutMs - 50);
    expect(after).toBeLessThan(TIMEOUTS.keepAliveTimeoutMs + LATE_MS);
  });

  it('takes its timeouts from general_settings in the YAML config when the code sets none', async () => {
    const { config } = parseConfig(`
model_list:
  - model_name: m
    litellm_params: { model: mock/m, mock_response: ok }
general_settings:
  keep_alive_timeout_seconds: 0.3
`, { env: {} });
    expect(config.general.clientTimeouts).toEqual({ keepAliveTimeoutMs: 300 });
    const g = await startGateway(config);
    running.push(g);
    const t = trickle(Number(new URL(g.url).port), HEAD(BODY.length) + BODY, '');
    await waitFor(() => (t.received().includes('"chat.completion"') ? true : undefined), 'the answer');
    const after = await t.closed;
    expect(after).toBeGreaterThanOrEqual(300 - 50);
    expect(after).toBeLessThan(300 + LATE_MS);
  });

  it('does not cut a fully received request that waits in the queue longer than the request timeout', async () => {
    // The blocker holds the only slot for 1.2 s, longer than the 800 ms request timeout and a check.
    const { g, port } = await start(testConfig({ m: [{ maxParallelRequests: 1, mockDelayMs: 1_200 }] }));
    const blocker = g.client().chat.completions.create(chat('m', 'blocker'));
    await waitFor(async () => ((await groupStatus(g))[0].inFlight === 1 ? true : undefined), 'the blocker to hold the slot');
    const body = JSON.stringify({ ...chat('m', 'patient'), stream: true });
    const t = trickle(port, HEAD(body.length) + body, '');
    await waitFor(async () => ((await groupStatus(g))[0].waiting === 1 ? true : undefined), 'the streaming request to wait');
    await blocker;
    await waitFor(() => (t.received().includes('data: [DONE]') ? true : undefined), 'the stream to finish', 10_000);
    expect(t.received().startsWith('HTTP/1.1 200')).toBe(true);
    t.socket.destroy();
  });

  it('a reader that stops reading a stream does not keep its slot once the upstream is done', async () => {
    // A long answer; the client never reads, so the socket's buffers fill and writes stall.
    const { g, port, events } = await start(testConfig({ m: [{ maxParallelRequests: 1, mockResponse: 'word '.repeat(30_000) }] }));
    const body = JSON.stringify({ ...chat('m', 'never read'), stream: true });
    const t = trickle(port, HEAD(body.length) + body, '');
    t.socket.pause();
    await waitFor(() => (events.some((e) => e.type === 'request.done') ? true : undefined), 'the request to finish upstream', 10_000);
    expect(g.gateway.router.liveRequests).toBe(0);
    await waitFor(async () => ((await groupStatus(g))[0].inFlight === 0 ? true : undefined), 'the slot to be released');
    // The slot is free for the next caller while the stalled socket is still open.
    const next = await g.client().chat.completions.create(chat('m', 'next'));
    expect(next.choices[0].message.content).toContain('word');
    expect(t.socket.destroyed).toBe(false);
    t.socket.destroy();
  });

  it('a reader that stops reading a stream for longer than streamStallMs is disconnected: its answer is cut, not held', async () => {
    const STALL_MS = 300;
    const { g, port, events } = await start(testConfig({ m: [{ maxParallelRequests: 1, mockResponse: 'word '.repeat(30_000) }] }), { streamStallMs: STALL_MS });
    const body = JSON.stringify({ ...chat('m', 'never read'), stream: true });
    const started = Date.now();
    const t = trickle(port, HEAD(body.length) + body, '');
    t.socket.pause();
    const server = g.gateway.app.server;
    const connections = () => new Promise<number>((resolve, reject) => server.getConnections((e, n) => (e ? reject(e) : resolve(n))));
    await waitFor(async () => ((await connections()) === 1 ? true : undefined), 'the stream to start');
    // The server closes its end once the reader has been stalled for STALL_MS.
    await waitFor(async () => ((await connections()) === 0 ? true : undefined), 'the stalled stream to be closed', STALL_MS + LATE_MS);
    expect(Date.now() - started).toBeGreaterThanOrEqual(STALL_MS);
    await waitFor(() => (g.gateway.router.liveRequests === 0 ? true : undefined), 'the request to end');
    await waitFor(async () => ((await groupStatus(g))[0].inFlight === 0 ? true : undefined), 'the slot to be released');
    expect(events.some((e) => e.type === 'request.done' || e.type === 'request.cancelled')).toBe(true);
    // Reading again, the client gets what was already sent, then the end: no [DONE], the answer was cut.
    t.socket.resume();
    await t.closed;
    expect(t.received()).toContain('HTTP/1.1 200');
    expect(t.received()).not.toContain('data: [DONE]');
  });
});
