/**
 * Security over real sockets: every endpoint wants a key once keys are configured (metrics may be made
 * public), a virtual key's max_priority, models and rpm hold on every path, a key sees only its own
 * requests (in the event stream and in /queue/status) unless it is the master, no secret (master key,
 * virtual keys, upstream api key) reaches a log line, an answer, an event, the metrics or an error
 * message, even when callers put keys in the wrong places or an upstream echoes its key, and a request
 * body cannot steer a deployment (`mock_response`, `api_base`, `api_key`, ...).
 */
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { DeploymentConfig, TriageConfig } from '../src/core/config-types.js';
import { ERROR_TABLE, type ErrorCode } from '../src/errors.js';
import type { QueueEvent } from '../src/events.js';
import { FakeOpenAI, openAIError, respond } from './support/fake-openai.js';
import { chat, startGateway, waitFor, type RunningGateway } from './support/gateway.js';
import { testConfig } from './support/test-config.js';

const MASTER = 'sk-master-7f3c9a2e41d8';
const KEY_A = 'sk-tenant-a-58b1d0e9f4';
const KEY_B = 'sk-tenant-b-c3e7a115b2';
const UPSTREAM = 'sk-upstream-9d2b77f0aa31';
const SECRETS = [MASTER, KEY_A, KEY_B, UPSTREAM];

const CHAT_PATHS = ['/queue/chat/completions', '/chat/completions', '/v1/queue/chat/completions', '/v1/chat/completions'];

let running: RunningGateway[] = [];
let fakes: FakeOpenAI[] = [];
const sockets: WebSocket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.terminate();
  await Promise.all(running.map((g) => g.stop()));
  running = [];
  await Promise.all(fakes.map((f) => f.close()));
  fakes = [];
});

/** Everything a run shows anyone: logs, answers, events, WebSocket messages, metrics. */
class Outputs {
  logs = '';
  readonly seen: string[] = [];
  readonly sink = new Writable({
    write: (chunk: Buffer, _enc, done) => {
      this.logs += chunk.toString();
      done();
    },
  });
  add(text: string): void {
    this.seen.push(text);
  }
  /** Records a fetch answer (status, headers, body) and returns its body text. */
  async answer(r: Response): Promise<string> {
    const body = await r.text();
    this.add(`${r.status} ${JSON.stringify([...r.headers])} ${body}`);
    return body;
  }
  all(): string {
    return [this.logs, ...this.seen].join('\n');
  }
}

interface Setup {
  g: RunningGateway;
  fake: FakeOpenAI;
  out: Outputs;
  events: QueueEvent[];
}

/** A gateway with a master key, two virtual keys, mock groups and one HTTP group on the fake upstream. */
async function start(over: { general?: Partial<TriageConfig['general']>; realMaxParallel?: number } = {}): Promise<Setup> {
  const fake = await FakeOpenAI.start();
  fakes.push(fake);
  const config = testConfig(
    { m: [{ mockResponse: 'mock says hi' }], other: [{}] },
    { numRetries: 1, allowedFails: 100 },
    {
      masterKey: MASTER,
      keys: [
        { key: KEY_A, name: 'team-a', models: ['m', 'real'], maxPriority: 50, rpm: 5 },
        { key: KEY_B, name: 'team-b' },
      ],
      ...over.general,
    },
  );
  const limits = over.realMaxParallel === undefined ? {} : { maxParallelRequests: over.realMaxParallel };
  const real: DeploymentConfig = { id: 'real-1', modelName: 'real', model: 'openai/up-real', provider: 'openai', upstreamModel: 'up-real', limits, mockDelayMs: 0, apiBase: fake.url, apiKey: UPSTREAM };
  config.modelGroups.push({ name: 'real', deployments: [real] });
  const out = new Outputs();
  const g = await startGateway(config, { logger: { level: 'trace', stream: out.sink } });
  running.push(g);
  const events: QueueEvent[] = [];
  g.gateway.router.events.subscribe((e) => events.push(e));
  return { g, fake, out, events };
}

const auth = (key: string) => ({ authorization: `Bearer ${key}` });

function post(g: RunningGateway, body: unknown, headers: Record<string, string> = {}, path = '/queue/chat/completions') {
  return fetch(`${g.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
}

async function expectError(r: Response, code: ErrorCode, out?: Outputs): Promise<{ error: { message: string; param: string | null } }> {
  const text = out ? await out.answer(r) : await r.text();
  expect(r.status, text).toBe(ERROR_TABLE[code].status);
  const body = JSON.parse(text) as { error: { code: string; type: string; message: string; param: string | null } };
  expect(body.error.code).toBe(code);
  expect(body.error.type).toBe(ERROR_TABLE[code].type);
  return body;
}

/** The status a WebSocket upgrade gets: 101 when it opens, else the refusal's HTTP status. */
function wsStatus(url: string, headers: Record<string, string> = {}, out?: Outputs): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    sockets.push(ws);
    ws.on('message', (data) => out?.add(String(data)));
    ws.on('open', () => resolve(101));
    ws.on('unexpected-response', (req, res) => {
      resolve(res.statusCode ?? 0);
      req.destroy();
    });
    ws.on('error', reject);
  });
}

/** A raw request whose path is sent exactly as written (fetch would normalize it). */
function rawGet(g: RunningGateway, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  const url = new URL(g.url);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: url.hostname, port: Number(url.port), path, method: 'GET', headers }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A subscriber to /queue/events collecting every message. */
async function subscribe(g: RunningGateway, key: string, query = '', out?: Outputs) {
  const messages: Array<Record<string, unknown>> = [];
  const socket = new WebSocket(`${g.url.replace('http', 'ws')}/queue/events${query}`, { headers: auth(key) });
  sockets.push(socket);
  socket.on('message', (data) => {
    out?.add(String(data));
    messages.push(JSON.parse(String(data)) as Record<string, unknown>);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
  });
  await waitFor(() => (messages.some((m) => m.type === 'snapshot') ? true : undefined), 'the snapshot');
  return { socket, messages };
}

describe('authentication on every endpoint', () => {
  it('refuses every endpoint without a key or with a wrong one, in the envelope, and serves it with one', async () => {
    const { g } = await start();
    const debugPresent = (await fetch(`${g.url}/debug/machines`, { headers: auth(MASTER) })).status !== 404;
    const gets = ['/v1/models', '/models', '/queue/status', '/queue/status?waiters=5', '/metrics', '/nope', '/v1/nope', '/debug/machines', '/debug/machines/request.svg', '/debug/requests/abc'];
    for (const key of [undefined, 'sk-wrong', `${MASTER}x`, MASTER.slice(0, -1), '']) {
      const headers: Record<string, string> = key === undefined ? {} : auth(key);
      for (const path of CHAT_PATHS) await expectError(await post(g, chat('m', 'x'), headers, path), 'unauthorized');
      for (const path of gets) await expectError(await fetch(`${g.url}${path}`, { headers }), 'unauthorized');
      for (const path of ['/v1/models', '/queue/status', '/metrics']) expect((await fetch(`${g.url}${path}`, { method: 'HEAD', headers })).status).toBe(401);
      for (const path of ['/queue/events', '/debug/live']) expect(await wsStatus(`${g.url.replace('http', 'ws')}${path}`, headers)).toBe(401);
    }
    // Keys sent where they do not belong are not keys: body fields, a Basic header, a cookie.
    await expectError(await post(g, { ...chat('m', 'x'), api_key: MASTER, key: MASTER }), 'unauthorized');
    await expectError(await post(g, chat('m', 'x'), { authorization: `Basic ${Buffer.from(`u:${MASTER}`).toString('base64')}` }), 'unauthorized');
    await expectError(await post(g, chat('m', 'x'), { cookie: `token=${MASTER}` }), 'unauthorized');
    await expectError(await post(g, chat('m', 'x'), { 'x-api-key': `Bearer ${MASTER}` }), 'unauthorized');

    // Paths that look public, or public paths bent toward protected ones, are not let through.
    for (const path of ['/queue/status/', '//queue/status', '/QUEUE/status', '/queue/%73tatus', '/health/liveliness/../../queue/status', '/health/readiness/../../v1/models', '/debug/../queue/status', '/debug/%2e%2e/queue/status', '/debug/assets/../../metrics', '/metrics?x=/health/liveliness']) {
      const r = await rawGet(g, path);
      expect(r.status, path).toBe(401);
    }

    // The right keys: a virtual key reads models, status and metrics and chats; only the master debugs.
    for (const key of [KEY_B, MASTER]) {
      for (const path of CHAT_PATHS) expect((await post(g, chat('m', 'x'), auth(key), path)).status).toBe(200);
      for (const path of ['/v1/models', '/models', '/queue/status', '/metrics']) expect((await fetch(`${g.url}${path}`, { headers: auth(key) })).status, path).toBe(200);
      expect(await wsStatus(`${g.url.replace('http', 'ws')}/queue/events`, auth(key))).toBe(101);
      expect((await fetch(`${g.url}/queue/status?token=${key}`)).status).toBe(200);
    }
    if (debugPresent) {
      expect((await fetch(`${g.url}/debug/machines`, { headers: auth(KEY_B) })).status).toBe(401);
      expect(await wsStatus(`${g.url.replace('http', 'ws')}/debug/live`, auth(KEY_B))).toBe(401);
      expect(await wsStatus(`${g.url.replace('http', 'ws')}/debug/live`, auth(MASTER))).toBe(101);
    }
    // Probes stay open, and so does the debugger's static page, which holds no data.
    for (const path of ['/health/liveliness', '/health/liveness', '/health/readiness']) expect((await fetch(`${g.url}${path}`)).status).toBe(200);
    if (debugPresent) {
      const page = await fetch(`${g.url}/debug`);
      expect(page.status).toBe(200);
      const html = await page.text();
      for (const secret of SECRETS) expect(html).not.toContain(secret);
    }
  });

  it('an upgrade answered over HTTP (refused, or not a WebSocket route) gets its answer, then its connection is closed', async () => {
    const { g } = await start();
    const url = new URL(g.url);
    const cases: Array<[string, number]> = [['/queue/events', 401], ['/debug/live', 401], ['/queue/chat/completions', 401], ['/health/liveness', 200]];
    for (const [path, status] of cases) {
      const socket = connect(Number(url.port), url.hostname);
      let received = '';
      let closed = false;
      socket.on('data', (d: Buffer) => (received += d.toString()));
      socket.on('close', () => (closed = true));
      socket.write(`GET ${path} HTTP/1.1\r\nHost: ${url.host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`);
      // The server ends the connection by itself; the test closes it only if that fails.
      await waitFor(() => (closed ? true : undefined), `the refused upgrade of ${path} to be closed`).finally(() => socket.destroy());
      expect(received, path).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
      expect(received.toLowerCase(), path).toContain('connection: close');
    }
  });

  it('public_metrics opens /metrics and nothing else', async () => {
    const { g } = await start({ general: { publicMetrics: true } });
    const r = await fetch(`${g.url}/metrics`);
    expect(r.status).toBe(200);
    expect(await r.text()).toContain('triage_requests_total');
    for (const path of ['/queue/status', '/v1/models', '/metrics/', '/metricsx']) expect((await fetch(`${g.url}${path}`)).status, path).toBe(401);
    await expectError(await post(g, chat('m', 'x')), 'unauthorized');
  });
});

describe("a virtual key's limits", () => {
  it('max_priority, allowed models and rpm hold on every path alias, for streams, and against a ?model= override', async () => {
    const { g, events } = await start();
    // max_priority: a better priority is clamped, a worse one kept, none given takes the key's.
    const clampedStream = await post(g, { ...chat('m', 'x', 0), stream: true }, auth(KEY_A), '/v1/chat/completions');
    expect(clampedStream.headers.get('x-triage-priority')).toBe('50');
    expect(clampedStream.headers.get('x-triage-priority-clamped')).toBe('true');
    await clampedStream.text();
    const worse = await post(g, chat('m', 'x', 70), auth(KEY_A), '/chat/completions');
    expect(worse.headers.get('x-triage-priority')).toBe('70');
    expect(worse.headers.get('x-triage-priority-clamped')).toBeNull();
    // A request header cannot claim a priority either.
    const header = await post(g, { ...chat('m', 'x'), priority: null }, { ...auth(KEY_A), 'x-triage-priority': '0' }, '/v1/queue/chat/completions');
    expect(header.headers.get('x-triage-priority')).toBe('50');
    expect(events.filter((e) => e.type === 'request.queued').map((e) => (e as { priority: number }).priority)).toEqual([50, 70, 50]);

    // Allowed models: refused whether named in the body or by ?model=, on every alias, without counting against rpm.
    for (const path of CHAT_PATHS) {
      await expectError(await post(g, chat('other', 'x'), auth(KEY_A), path), 'model_not_allowed');
      await expectError(await post(g, chat('m', 'x'), auth(KEY_A), `${path}?model=other`), 'model_not_allowed');
    }
    // A body cannot pose as another key: tenant (and signal) are the gateway's to set.
    const spoof = await post(g, { ...chat('m', 'x'), tenant: 'team-b', signal: 'x' }, auth(KEY_A));
    expect(spoof.status).toBe(200);
    expect((events.filter((e) => e.type === 'request.queued').at(-1) as { tenant: string }).tenant).toBe('team-a');

    // rpm 5 across all aliases: the fifth call above was the fourth... one more passes, then 429.
    expect((await post(g, chat('m', 'x'), auth(KEY_A), '/v1/queue/chat/completions')).status).toBe(200);
    const limited = await post(g, chat('m', 'x'), auth(KEY_A), CHAT_PATHS[3]);
    await expectError(limited, 'key_rate_limited');
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    await expectError(await post(g, { ...chat('m', 'x'), stream: true }, auth(KEY_A), CHAT_PATHS[1]), 'key_rate_limited');
    // Another key and the master are not affected.
    expect((await post(g, chat('m', 'x'), auth(KEY_B))).status).toBe(200);
    expect((await post(g, chat('other', 'x', 0), auth(MASTER))).headers.get('x-triage-priority')).toBe('0');
  });
});

describe('isolation between keys', () => {
  it('a key sees only its own requests in the event stream, its snapshot and /queue/status; the master sees all', async () => {
    const { g, fake } = await start({ realMaxParallel: 1 });
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    fake.always(async (x) => {
      await Promise.race([gate, x.ended]);
      respond.completion('gated')(x);
    });
    const master = await subscribe(g, MASTER);
    const a = await subscribe(g, KEY_A);
    const aWide = await subscribe(g, KEY_A, '?mine=0&models=real');
    // B's blocker holds the only slot until the gate opens; then each key queues one request behind it.
    const blocker = post(g, chat('real', 'b-blocker'), auth(KEY_B));
    const dispatched = await waitFor(() => master.messages.find((m) => m.type === 'request.dispatched'), 'the blocker dispatched');
    const bWaiting = post(g, chat('real', 'b-waits'), auth(KEY_B));
    const aWaiting = post(g, chat('real', 'a-waits'), auth(KEY_A));
    const waitersFor = async (key: string) => {
      const s = (await (await fetch(`${g.url}/queue/status`, { headers: auth(key) })).json()) as { models: Array<{ model: string; waiting: number; waiters: Array<{ tenant: string; id: string }> }> };
      return s.models.find((m) => m.model === 'real')!;
    };
    await waitFor(async () => ((await waitersFor(MASTER)).waiting === 2 ? true : undefined), 'two waiters');
    const bId = (master.messages.find((m) => m.type === 'request.queued' && m.tenant === 'team-b' && m.id !== dispatched.id) as { id: string }).id;

    // Status and a fresh snapshot: the master sees both waiters, each key only its own.
    expect((await waitersFor(MASTER)).waiters.map((w) => w.tenant).sort()).toEqual(['team-a', 'team-b']);
    expect((await waitersFor(KEY_A)).waiters.map((w) => w.tenant)).toEqual(['team-a']);
    expect((await waitersFor(KEY_B)).waiters.map((w) => w.tenant)).toEqual(['team-b']);
    const fresh = await subscribe(g, KEY_A);
    const snap = fresh.messages.find((m) => m.type === 'snapshot') as { models: Array<{ model: string; waiters: Array<{ tenant: string }> }> };
    expect(snap.models.find((m) => m.model === 'real')!.waiters.map((w) => w.tenant)).toEqual(['team-a']);

    // Asking for B's request by id, or for everything, does not widen what key A sees.
    a.socket.send(JSON.stringify({ type: 'subscribe', mine: false, request: bId }));
    await waitFor(() => (a.messages.some((m) => m.type === 'subscribed') ? true : undefined), 'subscribed');
    openGate();
    await Promise.all([blocker, bWaiting, aWaiting].map((p) => p.then((r) => r.text())));
    await waitFor(() => (master.messages.filter((m) => m.type === 'request.done').length === 3 ? true : undefined), 'three done');
    await waitFor(() => (aWide.messages.some((m) => m.type === 'request.done') ? true : undefined), 'A done on the wide subscriber');
    for (const sub of [a, aWide, fresh]) {
      const tenants = new Set(sub.messages.filter((m) => typeof m.type === 'string' && (m.type as string).startsWith('request.')).map((m) => m.tenant));
      expect([...tenants]).toEqual(['team-a']);
    }
    expect(a.messages.some((m) => m.id === bId)).toBe(false);
    expect(new Set(master.messages.filter((m) => m.type === 'request.done').map((m) => m.tenant))).toEqual(new Set(['team-a', 'team-b']));
  });
});

describe('secrets', () => {
  it('never appear in logs, answers, events, WebSocket messages or metrics, wherever callers put them, or when an upstream echoes its key', async () => {
    const { g, fake, out, events } = await start();
    // The upstream answers some calls with an error that repeats the Authorization header it got.
    fake.always((x) => {
      const said = String(x.request.headers.authorization ?? '');
      if (x.request.body?.user === 'echo-401') return respond.error(401, openAIError(`Incorrect API key provided: ${said}`, 'invalid_request_error', null, 'invalid_api_key'))(x);
      if (x.request.body?.user === 'echo-400') return respond.error(400, openAIError(`Unsupported value for the key ${said}`, 'invalid_request_error', 'user'))(x);
      if (x.request.body?.user === 'echo-500') return respond.error(500, openAIError(`backend failed for ${said}`, 'server_error'))(x);
      return respond.completion('from upstream')(x);
    });
    const wsOut = await subscribe(g, MASTER, '', out);

    // Keys in query strings under every name, in paths, as model names and other fields, in bodies.
    for (const key of [MASTER, KEY_A, KEY_B, UPSTREAM]) {
      for (const param of ['token', 'api_key', 'key', 'x', 'access_token', 'model']) {
        await out.answer(await post(g, chat('m', 'x'), auth(MASTER), `/queue/chat/completions?${param}=${key}`));
        await out.answer(await fetch(`${g.url}/queue/status?${param}=${encodeURIComponent(key)}`, { headers: auth(MASTER) }));
      }
      await out.answer(await fetch(`${g.url}/v1/${key}`, { headers: auth(MASTER) }));
      await out.answer(await fetch(`${g.url}/v1/${key}?token=${key}`));
      await out.answer(await post(g, chat(key, 'x'), auth(MASTER)));
      await out.answer(await post(g, chat(key, 'x'), auth(KEY_A)));
      await out.answer(await post(g, chat('m', 'x'), auth(KEY_A), `/queue/chat/completions?model=${key}`));
      await out.answer(await post(g, { ...chat('m', 'x'), priority: key }, auth(MASTER)));
      await out.answer(await post(g, { ...chat('m', 'x'), timeout: key, stream: key }, auth(MASTER)));
      await out.answer(await post(g, { model: 'm', messages: [{ role: key, content: key }], [key]: [[[key]]] }, auth(MASTER)));
      await out.answer(await post(g, { model: 'm', messages: [{ role: 'user', content: 'x' }], deep: JSON.parse('['.repeat(120) + JSON.stringify(key) + ']'.repeat(120)) as unknown }, auth(MASTER)));
      await out.answer(await post(g, `{"model":"m","messages":${key}}`, auth(MASTER)));
      await out.answer(await post(g, key, auth(MASTER)));
      await out.answer(await post(g, chat('m', 'x'), { authorization: `Bearer ${key}x` }));
      await out.answer(await post(g, chat('m', 'x'), { 'x-api-key': `${key} ${key}` }));
      await out.answer(await post(g, { ...chat('real', 'x'), api_key: key, api_base: `http://${key}.invalid`, user: key }, auth(MASTER)));
      wsOut.socket.send(JSON.stringify({ type: 'subscribe', models: [key] }));
      wsOut.socket.send(JSON.stringify({ type: 'subscribe', types: [key], request: key }));
      wsOut.socket.send(JSON.stringify({ type: key }));
      expect(await wsStatus(`${g.url.replace('http', 'ws')}/queue/events?models=${key}&token=${MASTER}`, {}, out)).toBe(101);
    }
    // The upstream echoes its key: in a passed-through 400, in 500s that are retried and end in 502, and
    // in a refused key (401: it is the deployment's key, not the caller's; the only deployment then cools
    // down, so the retry is answered 503 upstream_unavailable with that error).
    const echoed = await post(g, { ...chat('real', 'x'), user: 'echo-400' }, auth(MASTER));
    expect(echoed.status).toBe(400);
    expect(JSON.parse(await out.answer(echoed))).toMatchObject({ error: { code: 'upstream_error', message: 'Unsupported value for the key Bearer [redacted]' } });
    await expectError(await post(g, { ...chat('real', 'x'), user: 'echo-500' }, auth(MASTER)), 'upstream_error', out);
    const streamed = await post(g, { ...chat('real', 'x'), user: 'echo-500', stream: true }, auth(MASTER));
    await out.answer(streamed);
    const refused = await post(g, { ...chat('real', 'x'), user: 'echo-401' }, auth(MASTER));
    expect(refused.status).toBe(503);
    expect(JSON.parse(await out.answer(refused))).toMatchObject({ error: { code: 'upstream_unavailable', message: expect.stringContaining('Incorrect API key provided: Bearer [redacted]') } });
    expect(fake.requests.some((r) => String(r.headers.authorization) === `Bearer ${UPSTREAM}`)).toBe(true);

    await waitFor(() => (wsOut.messages.filter((m) => m.type === 'error').length >= 12 ? true : undefined), 'the WebSocket errors');
    await waitFor(() => (wsOut.messages.some((m) => m.type === 'request.failed') ? true : undefined), 'the failure events');
    out.add(await (await fetch(`${g.url}/metrics`, { headers: auth(MASTER) })).text());
    out.add(await (await fetch(`${g.url}/queue/status`, { headers: auth(MASTER) })).text());
    for (const path of ['/debug/machines', ...events.slice(-5).map((e) => `/debug/requests/${(e as { id?: string }).id ?? 'x'}`)]) {
      const r = await fetch(`${g.url}${path}`, { headers: auth(MASTER) });
      if (r.status !== 404) out.add(await r.text());
    }
    out.add(JSON.stringify(events));

    // The run said a lot, at trace level; none of it holds a secret or a recognizable part of one.
    expect(out.logs.length).toBeGreaterThan(10_000);
    expect(events.some((e) => e.type === 'request.failed')).toBe(true);
    const everything = out.all();
    for (const secret of SECRETS) {
      expect(everything.includes(secret), `${secret} leaked`).toBe(false);
      expect(everything.includes(secret.slice(3, -2)), `part of ${secret} leaked`).toBe(false);
    }
    // Redaction left a visible trace where an echo was removed.
    expect(everything).toContain('[redacted]');
  });
});

describe('a request body cannot steer a deployment', () => {
  it('mock_response, api_base, api_key and friends are not forwarded upstream and do not change a mock', async () => {
    const { g, fake } = await start();
    fake.always(respond.completion('real upstream answer'));
    const injected = {
      mock_response: 'pwned',
      mock_delay: 30,
      api_base: 'http://127.0.0.1:9/evil',
      base_url: 'http://127.0.0.1:9/evil',
      api_key: 'sk-injected-by-caller',
      api_version: '2099-01-01',
      litellm_params: { mock_response: 'pwned', api_base: 'http://127.0.0.1:9/evil' },
      user_config: { model_list: [] },
      metadata_triage: { tenant: 'team-b' },
      tenant: 'team-b',
      timeout: 30,
      priority: 3,
    };
    // A real upstream: the call goes to the configured base with the configured key, without those fields.
    const started = Date.now();
    const realAnswer = await post(g, { ...chat('real', 'hello'), ...injected }, auth(MASTER));
    expect(realAnswer.status).toBe(200);
    expect(((await realAnswer.json()) as { choices: Array<{ message: { content: string } }> }).choices[0].message.content).toBe('real upstream answer');
    expect(fake.requests).toHaveLength(1);
    const sent = fake.requests[0];
    expect(sent.path).toBe('/v1/chat/completions');
    expect(sent.headers.authorization).toBe(`Bearer ${UPSTREAM}`);
    expect(sent.body?.model).toBe('up-real');
    for (const field of ['mock_response', 'mock_delay', 'api_base', 'base_url', 'api_key', 'api_version', 'litellm_params', 'user_config', 'metadata_triage', 'tenant', 'timeout', 'priority']) {
      expect(sent.body, field).not.toHaveProperty(field);
    }
    expect(sent.rawBody).not.toContain('pwned');
    expect(sent.rawBody).not.toContain('sk-injected-by-caller');

    // A mock deployment: the configured answer, at the configured speed, whatever the body says.
    for (const stream of [false, true]) {
      const r = await post(g, { ...chat('m', 'hello'), ...injected, stream }, auth(MASTER));
      const text = await r.text();
      expect(r.status).toBe(200);
      expect(text).toContain('mock');
      expect(text).not.toContain('pwned');
    }
    // mock_delay: 30 (seconds) was not taken from the body either.
    expect(Date.now() - started).toBeLessThan(10_000);
    // Nor can ?model= pick a deployment by its id, or a body route around the group's deployments.
    await expectError(await post(g, chat('m', 'x'), auth(MASTER), '/queue/chat/completions?model=real-1'), 'model_not_found');
    await expectError(await post(g, { ...chat('m', 'x'), model: 'openai/up-real' }, auth(MASTER)), 'model_not_found');
  });
});
