/**
 * Every HTTP error row: status, the OpenAI envelope {"error":{message,type,param,code}}, and headers.
 * LiteLLM answers most of these as 400 "Authentication Error"; each here has its own status.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { TriageConfig } from '../src/core/config-types.js';
import { ERROR_TABLE, type ErrorCode } from '../src/errors.js';
import { FakeClock } from '../src/core/clock.js';
import { chat, startGateway, waitFor, type RunningGateway } from './support/gateway.js';
import { testConfig } from './support/test-config.js';

let running: RunningGateway[] = [];
afterEach(async () => {
  await Promise.all(running.map((g) => g.stop()));
  running = [];
});

async function start(config: TriageConfig, clock?: FakeClock): Promise<RunningGateway> {
  const g = await startGateway(config, clock ? { clock } : {});
  running.push(g);
  return g;
}

interface Envelope {
  error: { message: string; type: string; param: string | null; code: string };
}

async function post(g: RunningGateway, body: string | object, headers: Record<string, string> = {}, path = '/queue/chat/completions') {
  const response = await fetch(`${g.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { response, body: (await response.json()) as Envelope };
}

function expectError(r: { response: Response; body: Envelope }, code: ErrorCode, param: string | null = null) {
  expect(r.response.status).toBe(ERROR_TABLE[code].status);
  expect(r.response.headers.get('content-type')).toMatch(/application\/json/);
  expect(Object.keys(r.body)).toEqual(['error']);
  expect(Object.keys(r.body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  expect(r.body.error.code).toBe(code);
  expect(r.body.error.type).toBe(ERROR_TABLE[code].type);
  expect(r.body.error.param).toBe(param);
  expect(r.body.error.message.length).toBeGreaterThan(0);
}

const MASTER = 'sk-master-3f9a1c';
const BATCH = 'sk-batch-77e2d0';

describe('400 invalid request', () => {
  it('rejects invalid JSON, wrong types and missing fields with the field named', async () => {
    const g = await start(testConfig({ m: [{}] }));
    expectError(await post(g, '{"model": "m", "messages": ['), 'invalid_json');
    expectError(await post(g, '[1,2]'), 'invalid_request');
    expectError(await post(g, chat('m', 'x', 'high' as never)), 'invalid_priority', 'priority');
    expectError(await post(g, chat('m', 'x', 1.5)), 'invalid_priority', 'priority');
    expectError(await post(g, chat('m', 'x', -1)), 'invalid_priority', 'priority');
    expectError(await post(g, chat('m', 'x', 1001)), 'invalid_priority', 'priority');
    expectError(await post(g, { model: 'm' }), 'invalid_request', 'messages');
    expectError(await post(g, { model: 'm', messages: 'hi' }), 'invalid_request', 'messages');
    expectError(await post(g, { model: 'm', messages: [{ content: 'no role' }] }), 'invalid_request', 'messages[0]');
    expectError(await post(g, { messages: [{ role: 'user', content: 'x' }] }), 'invalid_request', 'model');
    expectError(await post(g, { ...chat('m', 'x'), timeout: -3 }), 'invalid_request', 'timeout');
    expectError(await post(g, { ...chat('m', 'x'), stream: 'yes' }), 'invalid_request', 'stream');
    expectError(await post(g, { ...chat('m', 'x'), max_tokens: 0 }), 'invalid_request', 'max_tokens');
    expectError(await post(g, '{"model":"m","messages":[],"__proto__":{"x":1}}'), 'invalid_json');
  });

  it('answers 413 for a body over the configured limit and 415 for a non-JSON content type', async () => {
    const g = await start(testConfig({ m: [{}] }, {}, { maxRequestBodyBytes: 1024 }));
    expectError(await post(g, chat('m', 'x'.repeat(2000))), 'body_too_large');
    const r = await fetch(`${g.url}/queue/chat/completions`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hello' });
    expectError({ response: r, body: (await r.json()) as Envelope }, 'unsupported_media_type');
  });
});

describe('auth', () => {
  const keyed = () =>
    testConfig({ m: [{}], other: [{}] }, {}, { masterKey: MASTER, keys: [{ key: BATCH, name: 'batch', models: ['m'], maxPriority: 50 }] });

  it('401 without a key or with a wrong one; Bearer and x-api-key both work', async () => {
    const g = await start(keyed());
    expectError(await post(g, chat('m', 'x')), 'unauthorized');
    const wrong = await post(g, chat('m', 'x'), { authorization: 'Bearer sk-wrong' });
    expectError(wrong, 'unauthorized');
    expect(JSON.stringify(wrong.body)).not.toContain('sk-wrong');
    expect((await fetch(`${g.url}/queue/status`)).status).toBe(401);
    expect((await fetch(`${g.url}/v1/models`)).status).toBe(401);
    const ok = await g.client(MASTER).chat.completions.create(chat('m', 'x'));
    expect(ok.choices[0].message.content).toBe('ok');
    const viaHeader = await fetch(`${g.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': BATCH }, body: JSON.stringify(chat('m', 'x', 60)) });
    expect(viaHeader.status).toBe(200);
    // Health probes stay open for orchestrators.
    expect((await fetch(`${g.url}/health/liveliness`)).status).toBe(200);
  });

  it('403 for a model the key may not use; a better priority than max_priority is clamped', async () => {
    const g = await start(keyed());
    expectError(await post(g, chat('other', 'x'), { authorization: `Bearer ${BATCH}` }), 'model_not_allowed', 'model');
    const { response } = await g.client(BATCH).chat.completions.create(chat('m', 'x', 0)).withResponse();
    expect(response.headers.get('x-triage-priority')).toBe('50');
    expect(response.headers.get('x-triage-priority-clamped')).toBe('true');
    const { response: defaulted } = await g.client(BATCH).chat.completions.create(chat('m', 'x')).withResponse();
    expect(defaulted.headers.get('x-triage-priority')).toBe('50');
    const { response: master } = await g.client(MASTER).chat.completions.create(chat('m', 'x', 0)).withResponse();
    expect(master.headers.get('x-triage-priority')).toBe('0');
  });

  it('429 key_rate_limited with a computed Retry-After once a key used its rpm', async () => {
    const clock = new FakeClock(Date.now());
    const g = await start(testConfig({ m: [{}] }, {}, { keys: [{ key: BATCH, name: 'batch', rpm: 2 }] }), clock);
    const client = g.client(BATCH);
    await client.chat.completions.create(chat('m', 'x'));
    clock.advance(20_000);
    await client.chat.completions.create(chat('m', 'x'));
    const r = await post(g, chat('m', 'x'), { authorization: `Bearer ${BATCH}` });
    expectError(r, 'key_rate_limited');
    // The first request leaves the window 60 s after it was made: 40 s from now.
    expect(r.response.headers.get('retry-after')).toBe('40');
  });
});

describe('404, 408, 429, 502, 503', () => {
  it('404 for an unknown model and an unknown route', async () => {
    const g = await start(testConfig({ m: [{}] }));
    const r = await post(g, chat('nope', 'x'));
    expectError(r, 'model_not_found', 'model');
    expect(r.body.error.message).toContain('nope');
    const route = await fetch(`${g.url}/v2/unknown`);
    expectError({ response: route, body: (await route.json()) as Envelope }, 'not_found');
  });

  it('408 when the queue wait passes the deadline', async () => {
    const clock = new FakeClock(Date.now());
    // Held by max_parallel_requests (calls end at unknown times) the deadline is not certain to pass.
    const g = await start(testConfig({ m: [{ maxParallelRequests: 1, mockDelayMs: 60_000 }] }, { queueTimeoutMs: 5_000 }), clock);
    const running = post(g, chat('m', 'x'));
    await waitFor(() => (g.gateway.router.liveRequests === 1 ? true : undefined), 'a call');
    const pending = post(g, chat('m', 'x'));
    await waitFor(() => (g.gateway.router.liveRequests === 2 ? true : undefined), 'a waiter');
    clock.advance(5_000);
    const timedOut = await pending;
    expectError(timedOut, 'queue_timeout');
    // Final for this request: a client's automatic retry would only queue again at the back.
    expect(timedOut.response.headers.get('x-should-retry')).toBe('false');
    clock.advance(55_000);
    expect((await running).response.status).toBe(200);
  });

  it('429 queue_full with Retry-After: when a newcomer could be granted (the rpm window and the waiters ahead)', async () => {
    const clock = new FakeClock(Date.now());
    const g = await start(testConfig({ m: [{ rpm: 6 }] }, { maxQueueSize: 3 }), clock);
    const client = g.client();
    for (let i = 0; i < 6; i++) await client.chat.completions.create(chat('m', 'x'));
    const waiting = [0, 1, 2].map(() => post(g, chat('m', 'x')));
    await waitFor(() => (g.gateway.router.liveRequests === 3 ? true : undefined), 'three waiters');
    const full = await post(g, chat('m', 'x'));
    expectError(full, 'queue_full');
    // The 6 grants of the window reopen their lanes 60 s later: room for the 3 waiting and this one.
    expect(full.response.headers.get('retry-after')).toBe('60');
    clock.advance(60_000);
    for (const w of await Promise.all(waiting)) expect(w.response.status).toBe(200);
  });

  it('502 when the upstream keeps failing after num_retries', async () => {
    const g = await start(testConfig({ m: [{ mockResponse: 'litellm.InternalServerError' }] }, { numRetries: 1, cooldownTimeMs: 0 }));
    const r = await post(g, chat('m', 'x'));
    expectError(r, 'upstream_error');
  });

  it('503 while draining, for new requests', async () => {
    const g = await start(testConfig({ m: [{}] }));
    g.gateway.startDraining();
    const refused = await post(g, chat('m', 'x'));
    expectError(refused, 'shutting_down');
    // A retry should reach another instance: soon, and on a new connection.
    expect(refused.response.headers.get('retry-after')).toBe('1');
    expect(refused.response.headers.get('connection')).toBe('close');
    expect((await fetch(`${g.url}/health/readiness`)).status).toBe(503);
  });
});
