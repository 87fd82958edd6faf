/**
 * The statechart debugger: its endpoints and auth, the recorder's bounds and sanitizing, and the page
 * itself in headless Chromium against a real gateway on fake time.
 */
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createActor, setup } from 'xstate';
import { TriageError } from '../src/errors.js';
import { FakeClock } from '../src/core/clock.js';
import { requestMachine } from '../src/machines/request-machine.js';
import { schedulerMachine } from '../src/machines/scheduler-machine.js';
import { parseConfig } from '../src/adapters/config-loader.js';
import { createRouter, type Router } from '../src/router.js';
import { DebugRecorder, sanitizePayload } from '../src/server/debug/inspector.js';
import { machineToGraph } from '../src/server/debug/statechart-graph.js';
import { chat, startGateway, waitFor, type RunningGateway } from './support/gateway.js';
import { testConfig } from './support/test-config.js';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
// The picture in docs/ is refreshed only when asked (TRIAGE_UPDATE_SCREENSHOT=1): a plain test run must
// not leave a tracked file changed. Otherwise it goes to the temp directory, and is still checked.
const SCREENSHOT = process.env.TRIAGE_UPDATE_SCREENSHOT === '1'
  ? resolve(dirname(fileURLToPath(import.meta.url)), '../docs/debugger.png')
  : join(tmpdir(), `triage-debugger-${process.pid}.png`);
const MASTER = 'sk-debug-master-7c1';
const TEAM_KEY = 'sk-debug-team-a-92f';

const REQUEST_STATES = ['request', 'request.queued', 'request.polling', 'request.dispatched', 'request.done', 'request.timeout', 'request.cancelled', 'request.failed', 'request.rejected'];
const SCHEDULER_STATES = ['scheduler', 'scheduler.idle', 'scheduler.backlogged', 'scheduler.watching', 'scheduler.closed'];

let running: RunningGateway[] = [];
let routers: Router[] = [];
let browser: Browser | undefined;
const sockets: WebSocket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) if (s.readyState === WebSocket.OPEN || s.readyState === WebSocket.CONNECTING) s.terminate();
  await browser?.close();
  browser = undefined;
  await Promise.all(running.map((g) => g.stop()));
  await Promise.all(routers.map((r) => r.close(1_000)));
  running = [];
  routers = [];
});

async function start(...args: Parameters<typeof startGateway>) {
  const g = await startGateway(...args);
  running.push(g);
  return g;
}

const stateIdsIn = (svg: string) => [...svg.matchAll(/data-state-id="([^"]*)"/g)].map((m) => m[1]);

describe('debugger endpoints', () => {
  it('serves the page and its local assets, and draws every state of both machines', async () => {
    const g = await start(testConfig({ m: [{}] }));
    const app = g.gateway.app;

    const page = await app.inject('/debug');
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.body).toContain('<script src="/debug/assets/debug.js"');
    expect(page.body).toContain('href="/debug/assets/debug.css"');
    // Everything local: no CDN, no remote font.
    expect(page.body).not.toMatch(/https?:\/\//);
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");

    const js = await app.inject('/debug/assets/debug.js');
    expect(js.statusCode).toBe(200);
    expect(js.headers['content-type']).toMatch(/^text\/javascript/);
    expect(js.body).toContain('/debug/live');
    const css = await app.inject('/debug/assets/debug.css');
    expect(css.statusCode).toBe(200);
    expect(css.headers['content-type']).toMatch(/^text\/css/);

    const machines = (await app.inject('/debug/machines')).json() as Array<{ id: string; title: string; states: string[] }>;
    expect(machines.map((m) => m.id)).toEqual(['request', 'scheduler']);
    expect(machines.every((m) => m.title.length > 0)).toBe(true);

    const request = await app.inject('/debug/machines/request.svg');
    expect(request.statusCode).toBe(200);
    expect(request.headers['content-type']).toMatch(/^image\/svg\+xml/);
    expect(stateIdsIn(request.body).sort()).toEqual([...REQUEST_STATES].sort());
    expect(stateIdsIn(request.body).sort()).toEqual(machineToGraph(requestMachine).nodes.map((n) => n.id).sort());

    const scheduler = await app.inject('/debug/machines/scheduler.svg');
    expect(scheduler.statusCode).toBe(200);
    expect(stateIdsIn(scheduler.body).sort()).toEqual([...SCHEDULER_STATES].sort());
    expect(stateIdsIn(scheduler.body).sort()).toEqual(machineToGraph(schedulerMachine).nodes.map((n) => n.id).sort());

    expect((await app.inject('/debug/machines/nope.svg')).statusCode).toBe(404);
  });

  it('with a master key, the data endpoints and the live socket refuse callers without it', async () => {
    const g = await start(testConfig({ m: [{}] }, {}, { masterKey: MASTER, keys: [{ name: 'team-a', key: TEAM_KEY }] }));
    const app = g.gateway.app;

    // The page and its assets are public (no data in them).
    for (const path of ['/debug', '/debug/assets/debug.js', '/debug/assets/debug.css']) {
      expect((await app.inject(path)).statusCode, path).toBe(200);
    }
    for (const path of ['/debug/live', '/debug/machines', '/debug/machines/request.svg', '/debug/requests/abc']) {
      const res = await app.inject(path);
      expect(res.statusCode, path).toBe(401);
      expect(res.json().error.code).toBe('unauthorized');
      // A virtual key sees only its own tenant elsewhere; the debugger shows everyone's requests.
      expect((await app.inject({ url: path, headers: { authorization: `Bearer ${TEAM_KEY}` } })).statusCode, path).toBe(401);
    }
    expect((await app.inject({ url: '/debug/machines', headers: { 'x-api-key': MASTER } })).statusCode).toBe(200);
    expect((await app.inject(`/debug/machines/scheduler.svg?token=${MASTER}`)).statusCode).toBe(200);

    // Over a real socket: refused with 401 without the key, an init message with it.
    const wsUrl = `${g.url.replace('http', 'ws')}/debug/live`;
    const refused = new WebSocket(wsUrl);
    sockets.push(refused);
    const status = await new Promise<number>((resolve, reject) => {
      refused.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      refused.once('open', () => reject(new Error('opened without a key')));
      refused.once('error', () => undefined);
    });
    expect(status).toBe(401);

    const messages: Array<{ type: string; [k: string]: unknown }> = [];
    const ok = new WebSocket(`${wsUrl}?token=${MASTER}`);
    sockets.push(ok);
    ok.on('message', (data) => messages.push(JSON.parse(String(data)) as (typeof messages)[number]));
    const init = await waitFor(() => messages.find((m) => m.type === 'init'), 'the init message');
    expect(init.groups).toEqual([{ model: 'm', state: 'idle', stateIds: ['scheduler', 'scheduler.idle'] }]);
    expect(g.gateway.debug.attached).toBe(true);
    ok.close();
    await waitFor(() => (g.gateway.debug.attached ? undefined : true), 'inspection detached after the last client left');
  });
});

describe('DebugRecorder', () => {
  it('summarizes payloads: no refs, functions, secrets or message contents beyond a preview', () => {
    const actor = createActor(setup({}).createMachine({}));
    const long = 'confidential '.repeat(100);
    const out = sanitizePayload({
      type: 'x',
      ref: actor,
      actorRef: actor,
      other: actor,
      fn: () => 1,
      apiKey: 'sk-1',
      nested: { api_key: 'sk-2', Authorization: 'Bearer sk-3', token: 'sk-4', masterKey: 'sk-5', tokens: 42, total_tokens: 7 },
      body: { model: 'm', messages: [{ role: 'system', content: long }, { role: 'user', content: long }], max_tokens: 5, user: 'alice', api_key: 'sk-6' },
      error: new TriageError('queue_full', 'full', { retryAfterSeconds: 3 }),
      list: Array.from({ length: 50 }, (_, i) => i),
      when: new Date(0),
    });
    const json = JSON.stringify(out);
    for (const secret of ['sk-1', 'sk-2', 'sk-3', 'sk-4', 'sk-5', 'sk-6']) expect(json).not.toContain(secret);
    expect(json).not.toContain(long.slice(0, 200));
    expect(json).not.toContain('alice');
    expect(out).toMatchObject({
      type: 'x',
      apiKey: '[redacted]',
      nested: { api_key: '[redacted]', Authorization: '[redacted]', token: '[redacted]', masterKey: '[redacted]', tokens: 42, total_tokens: 7 },
      body: { model: 'm', messages: { count: 2, roles: ['system', 'user'] }, max_tokens: 5, otherFields: ['user', 'api_key'] },
      error: { name: 'TriageError', code: 'queue_full', message: 'full', status: 429, retryAfterSeconds: 3 },
    });
    expect((out as { body: { messages: { preview: string } } }).body.messages.preview.length).toBeLessThan(120);
    expect(out).not.toHaveProperty('ref');
    expect(out).not.toHaveProperty('actorRef');
    expect(out).not.toHaveProperty('other');
    expect(out).not.toHaveProperty('fn');
    expect(out).not.toHaveProperty('when');
    expect((out as { list: unknown[] }).list).toHaveLength(21);
  });

  it('by default records nothing while no page is open', async () => {
    const router = createRouter(testConfig({ m: [{}] }));
    routers.push(router);
    const recorder = new DebugRecorder(router);
    await router.scheduleCompletion({ model: 'm', messages: [{ role: 'user', content: 'x' }] });
    expect(recorder.attached).toBe(false);
    expect(recorder.recentRequests()).toEqual([]);
    recorder.close();
  });

  it("shows a wildcard's model, started after the page opened, with its scheduler's events", async () => {
    const { config } = parseConfig('model_list:\n  - { model_name: "*", litellm_params: { model: "mock/*", mock_response: hi } }\n', { env: {} });
    const router = createRouter(config);
    routers.push(router);
    const recorder = new DebugRecorder(router);
    const disconnect = recorder.connect({});
    expect(recorder.groups()).toEqual([]);
    await router.scheduleCompletion({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] });
    expect(recorder.groups().map((g) => g.model)).toEqual(['gpt-4o']);
    expect(recorder.schedulerLog('gpt-4o').map((e) => e.type)).toContain('enqueue');
    disconnect();
    recorder.close();
  });

  it('inspects only while a client is connected, keeps request.* events always when asked to, and stays bounded', async () => {
    const router = createRouter(testConfig({ m: [{}] }));
    routers.push(router);
    const recorder = new DebugRecorder(router, { maxRequests: 3, maxTimelineEntries: 10, recordEventsWhenClosed: true });
    const secret = 'do-not-keep-this-text '.repeat(40);

    // Page closed: no inspection, but the event bus still records the request.
    await router.scheduleCompletion({ model: 'm', messages: [{ role: 'user', content: secret }] });
    expect(recorder.attached).toBe(false);
    const [closedRun] = recorder.recentRequests();
    expect(closedRun).toMatchObject({ model: 'm', state: 'done', finished: true, inspected: false, deployment: 'm#0' });
    expect(recorder.request(closedRun.id)!.timeline.map((e) => e.type)).toEqual(['request.queued', 'request.dispatched', 'request.done']);

    // Page open: every transition, with its event and the resulting state.
    const seen: string[] = [];
    const disconnect = recorder.connect({ entry: (s, e) => seen.push(`${s.id}:${e.kind}:${e.type}`) });
    expect(recorder.attached).toBe(true);
    await router.scheduleCompletion({ model: 'm', messages: [{ role: 'user', content: secret }], api_key: 'sk-forwarded-secret' });
    const [inspected] = recorder.recentRequests();
    const detail = recorder.request(inspected.id)!;
    expect(detail.summary).toMatchObject({ state: 'done', stateIds: ['request', 'request.done'], finished: true, inspected: true, priority: 0 });
    const changes = detail.timeline.filter((e) => e.kind === 'transition' && e.changed).map((e) => e.state);
    // Granted on arrival: acceptance and grant come as one event, so it goes from queued straight to dispatched.
    expect(changes).toEqual(['queued', 'dispatched', 'done']);
    const kinds = new Set(detail.timeline.map((e) => e.kind));
    expect([...kinds].sort()).toEqual(['emitted', 'event', 'sent', 'transition']);
    expect(detail.timeline.find((e) => e.kind === 'sent')).toMatchObject({ type: 'enqueue', to: 'scheduler m' });
    expect(detail.timeline.find((e) => e.type === 'grant')).toMatchObject({ kind: 'event', source: 'scheduler m' });
    expect(seen.some((s) => s.startsWith(`${inspected.id}:transition:`))).toBe(true);
    const json = JSON.stringify(detail);
    expect(json).not.toContain('sk-forwarded-secret');
    expect(json).not.toContain(secret.slice(0, 120));
    expect(json).not.toContain('upstreamFor');
    expect(recorder.groups()).toEqual([{ model: 'm', state: 'idle', stateIds: ['scheduler', 'scheduler.idle'] }]);
    expect(recorder.schedulerLog('m').length).toBeGreaterThan(0);

    // Page closed again: inspection detached, no more transitions recorded.
    disconnect();
    expect(recorder.attached).toBe(false);
    await router.scheduleCompletion({ model: 'm', messages: [{ role: 'user', content: 'x' }] });
    expect(recorder.recentRequests()[0]).toMatchObject({ inspected: false, state: 'done' });

    // Bounded: the oldest requests are evicted, and a long timeline drops its oldest entries.
    const again = recorder.connect({});
    for (let i = 0; i < 3; i++) await router.scheduleCompletion({ model: 'm', messages: [{ role: 'user', content: `n${i}` }] });
    again();
    expect(recorder.size).toBe(3);
    expect(recorder.request(closedRun.id)).toBeUndefined();
    const last = recorder.request(recorder.recentRequests()[0].id)!;
    expect(last.timeline.length).toBeLessThanOrEqual(10);
    expect(last.summary.dropped).toBeGreaterThan(0);
    expect(last.timeline[last.timeline.length - 1]).toMatchObject({ state: 'done' });
    recorder.close();
  });
});

describe('the debugger page in headless Chromium', () => {
  it('draws both machines, lights a waiting request in polling, then in done as its timeline grows', async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium, or bash scripts/test-all). This test does not skip.`);
    }
    const clock = new FakeClock(Date.now());
    const config = testConfig(
      {
        'gpt-4o-mini': [{ id: 'gpt-4o-mini#eu', maxParallelRequests: 1, rpm: 120, tpm: 60_000, mockDelayMs: 1_000 }],
        'embeddings-small': [{ id: 'embeddings#0', rpm: 600 }],
      },
      {},
      { masterKey: MASTER },
    );
    const g = await start(config, { clock });
    const router = g.gateway.router;
    const client = g.client(MASTER);

    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    const page = await browser.newPage({ viewport: { width: 1500, height: 1050 } });
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(m.text());
    });
    await page.goto(`${g.url}/debug?token=${MASTER}`);
    await page.waitForSelector('#conn[data-state="live"]');

    // Every machine drawn with all its states.
    const drawn = (machine: string) =>
      page.locator(`.chart[data-machine="${machine}"] svg [data-state-id]`).evaluateAll((els) => els.map((e) => e.getAttribute('data-state-id')));
    expect((await drawn('request')).sort()).toEqual([...REQUEST_STATES].sort());
    expect((await drawn('scheduler')).sort()).toEqual([...SCHEDULER_STATES].sort());
    await page.waitForSelector('#groups li[data-model="gpt-4o-mini"].selected');
    await page.waitForSelector('#chart-scheduler [data-state-id="scheduler.idle"].active');

    // Some history, then a blocker that holds the one slot until the fake clock moves.
    await client.chat.completions.create(chat('embeddings-small', 'warm up'));
    const blocker = client.chat.completions.create(chat('gpt-4o-mini', 'Summarise the incident report', 2));
    await waitFor(async () => ((await router.queueStatus())[0].inFlight === 1 ? true : undefined), 'the blocker dispatched');
    const watched = client.chat.completions.create(chat('gpt-4o-mini', 'Classify this support ticket', 5)).withResponse();
    const id = await waitFor(async () => (await router.queueStatus())[0].waiters[0]?.id, 'the watched request waiting');
    const later = client.chat.completions.create(chat('gpt-4o-mini', 'Nightly batch: translate catalogue', 9));
    await waitFor(async () => ((await router.queueStatus())[0].waiting === 2 ? true : undefined), 'a second waiter');

    // Pick it in the page: the request statechart lights `polling`; the queue shows it first in line.
    await page.click(`#requests li[data-request-id="${id}"]`);
    await page.waitForSelector('#chart-request [data-state-id="request.polling"].active');
    await page.waitForSelector(`#waiters tr[data-waiter-id="${id}"]`);
    await page.waitForSelector('#chart-scheduler [data-state-id="scheduler.backlogged"].active');
    expect(await page.locator('#chart-request [data-state-id].active').evaluateAll((els) => els.map((e) => e.getAttribute('data-state-id')))).toEqual([
      'request',
      'request.polling',
    ]);
    await page.waitForSelector('#timeline tbody tr.entry');
    const before = await page.locator('#timeline tbody tr.entry').count();
    expect(before).toBeGreaterThan(0);
    expect(await page.textContent('#req-state')).toBe('polling');
    // Let the fake clock run a little (not enough to release anyone) so the queue shows real waits.
    clock.advance(350);
    await waitFor(async () => ((await page.textContent(`#waiters tr[data-waiter-id="${id}"] td:last-child`)) === '350 ms' ? true : undefined), 'the waits shown');
    // Open one payload, so the picture shows what a payload looks like.
    await page.click('#timeline tbody tr.kind-sent .payload summary');
    // The click scrolled the payload into view; a full-page picture is taken from the top, or the fixed
    // header is drawn where the page had scrolled to.
    await page.evaluate('window.scrollTo(0, 0); for (const el of document.querySelectorAll("*")) if (el.scrollTop > 0) el.scrollTop = 0;');
    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    // A PNG (its signature), and not an empty page.
    const png = readFileSync(SCREENSHOT);
    expect(png.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');
    expect(png.length).toBeGreaterThan(20_000);
    if (process.env.TRIAGE_UPDATE_SCREENSHOT !== '1') rmSync(SCREENSHOT);

    // Release the blocker; once the watched request holds the slot, let its own call finish.
    clock.advance(1_000);
    await waitFor(() => (router.requestActor(id)?.getSnapshot().value === 'dispatched' ? true : undefined), 'the watched request dispatched');
    await page.waitForSelector('#chart-request [data-state-id="request.dispatched"].active');
    clock.advance(1_000);
    const { response } = await watched;
    expect(response.headers.get('x-triage-request-id')).toBe(id);
    await page.waitForSelector('#chart-request [data-state-id="request.done"].active');
    const after = await waitFor(async () => {
      const n = await page.locator('#timeline tbody tr.entry').count();
      return n > before ? n : undefined;
    }, 'the timeline to grow');
    expect(after).toBeGreaterThan(before);
    expect(await page.textContent('#req-state')).toBe('done');
    expect(await page.locator('#chart-request [data-state-id="request.polling"].active').count()).toBe(0);

    // The last waiter goes through too, so nothing is left sleeping on the fake clock.
    await blocker;
    await waitFor(async () => ((await router.queueStatus())[0].waiting === 0 && (await router.queueStatus())[0].inFlight === 1 ? true : undefined), 'the last waiter dispatched');
    clock.advance(1_000);
    await later;
    expect(pageErrors).toEqual([]);
  });
});
