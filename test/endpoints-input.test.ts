/**
 * Bad input on the new endpoints (Responses, embeddings, legacy completions): each a 4xx in OpenAI's
 * envelope with the field named, never a crash or a hang; a stream cut by its client releases its slot.
 * Also priority and timeout from headers and metadata (one validator), unknown query parameters, the
 * event stream's `?model=`, and /v1/models' modes.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { parseConfig } from '../src/adapters/config-loader.js';
import { FakeOpenAI, responseEvents } from './support/fake-openai.js';
import { startGateway, waitFor, type RunningGateway } from './support/gateway.js';
import { openAIDeployment } from './support/test-config.js';

const YAML = `
model_list:
  - model_name: chat-mock
    litellm_params: { model: mock/chat, mock_response: "Hello there." }
  - model_name: embed-mock
    litellm_params: { model: mock/embed, mock_response: "" }
    model_info: { mode: embedding, output_vector_size: 4 }
  - model_name: text-mock
    litellm_params: { model: mock/text, mock_response: "once" }
    model_info: { mode: completion }
router_settings: { max_priority: 100 }
`;

let g: RunningGateway;
let fake: FakeOpenAI;

beforeEach(async () => {
  fake = await FakeOpenAI.start();
  const { config } = parseConfig(YAML, { env: {} });
  config.modelGroups.push({ name: 'upstream', deployments: [openAIDeployment(fake.url, 'upstream', 'u', { limits: { maxParallelRequests: 1 } })] });
  config.modelGroups.push({ name: 'upstream-emb', deployments: [openAIDeployment(fake.url, 'upstream-emb', 'e', { limits: { maxParallelRequests: 1 }, mode: 'embedding' })] });
  g = await startGateway(config);
});

afterEach(async () => {
  await g.stop();
  await fake.close();
});

async function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${g.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as { error?: { message: string; type: string; param: string | null; code: string } } & Record<string, unknown> };
}

async function inFlight(model: string): Promise<number> {
  const status = (await (await fetch(`${g.url}/queue/status`)).json()) as { models: Array<{ model: string; inFlight: number; waiting: number }> };
  const m = status.models.find((x) => x.model === model)!;
  return m.inFlight + m.waiting;
}

const envelope = (code: string, param?: string | null) => ({ error: { message: expect.any(String), type: 'invalid_request_error', code, param: param === undefined ? expect.anything() : param } });

describe('bad input on every new endpoint is a 400 naming the field', () => {
  it.each([
    ['/v1/embeddings', { model: 'embed-mock' }, 'input'],
    ['/v1/embeddings', { model: 'embed-mock', input: 5 }, 'input'],
    ['/v1/embeddings', { model: 'embed-mock', input: '' }, 'input'],
    ['/v1/embeddings', { model: 'embed-mock', input: [] }, 'input'],
    ['/v1/embeddings', { model: 'embed-mock', input: ['ok', 7] }, 'input[1]'],
    ['/v1/embeddings', { model: 'embed-mock', input: Array.from({ length: 2049 }, () => 'x') }, 'input'],
    ['/v1/completions', { model: 'text-mock' }, 'prompt'],
    ['/v1/completions', { model: 'text-mock', prompt: { text: 'x' } }, 'prompt'],
    ['/v1/completions', { model: 'text-mock', prompt: 'x', max_tokens: 'many' }, 'max_tokens'],
    ['/v1/responses', { model: 'chat-mock' }, 'input'],
    ['/v1/responses', { model: 'chat-mock', input: 42 }, 'input'],
    ['/v1/responses', { model: 'chat-mock', input: [{ role: 'robot', content: 'x' }] }, 'input[0].role'],
    ['/v1/responses', { model: 'chat-mock', input: 'x', stream: 'yes' }, 'stream'],
    ['/v1/responses', { model: 'chat-mock', input: 'x', max_output_tokens: 0 }, 'max_output_tokens'],
  ])('%s %j', async (path, body, param) => {
    const r = await post(path, body);
    expect(r.status).toBe(400);
    expect(r.body).toEqual(envelope('invalid_request', param));
  });

  it('an oversized batch names the limit', async () => {
    const r = await post('/v1/embeddings', { model: 'embed-mock', input: Array.from({ length: 2049 }, () => 'x') });
    expect(r.body.error?.message).toContain('at most 2048');
  });

  it.each([
    [{ model: 'chat-mock', input: 'x', tools: [{ type: 'web_search' }] }, 'tools[0].type'],
    [{ model: 'chat-mock', input: [{ type: 'reasoning', summary: [] }] }, 'input[0].type'],
    [{ model: 'chat-mock', input: [{ role: 'user', content: [{ type: 'input_file', file_id: 'f' }] }] }, 'input[0].content[0].type'],
    [{ model: 'chat-mock', input: 'x', background: true }, 'background'],
  ])('responses translated for chat-only deployments: an untranslatable field is a 400 naming it (%j)', async (body, param) => {
    const r = await post('/v1/responses', body);
    expect(r.status).toBe(400);
    expect(r.body).toEqual(envelope('unsupported_parameter', param));
  });

  it.each([
    [{ previous_response_id: 'resp_1' }, 'previous_response_id'],
    [{ store: true }, 'store'],
    [{ conversation: 'conv_1' }, 'conversation'],
  ])('stateful fields to deployments that keep no state: a 400 saying so (%j)', async (extra, param) => {
    const r = await post('/v1/responses', { model: 'chat-mock', input: 'x', ...extra });
    expect(r.status).toBe(400);
    expect(r.body).toEqual(envelope('unsupported_parameter', param));
    expect(r.body.error?.message).toContain('keep');
  });

  it('unknown model is a 404; the wrong endpoint a 400 naming the right one', async () => {
    for (const path of ['/v1/embeddings', '/v1/completions', '/v1/responses']) {
      const r = await post(path, { model: 'nope', input: 'x', prompt: 'x' });
      expect(r.status).toBe(404);
      expect(r.body.error?.code).toBe('model_not_found');
    }
    const wrong = await post('/v1/completions', { model: 'embed-mock', prompt: 'x' });
    expect(wrong.status).toBe(400);
    expect(wrong.body).toEqual(envelope('wrong_endpoint', 'model'));
    expect(wrong.body.error?.message).toContain('POST /v1/embeddings');
    const chatOnText = await post('/v1/responses', { model: 'text-mock', input: 'x' });
    expect(chatOnText.body.error?.message).toContain('POST /v1/completions');
  });
});

describe('a stream cut by its client releases the slot', () => {
  it.each([
    ['/v1/responses', { input: 'hi' }, responseEvents('up-u', ['Hello ', 'there']).slice(0, 3).map((e) => `event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`)],
    ['/v1/completions', { prompt: 'hi' }, ['data: {"id":"cmpl-1","object":"text_completion","created":1,"model":"up-u","choices":[{"text":"Hel","index":0,"logprobs":null,"finish_reason":null}]}\n\n']],
  ])('%s', async (path, body, fragments) => {
    const held = new Promise<void>((resolve) =>
      fake.next(async (x) => {
        x.startSse();
        for (const f of fragments) await x.write(f);
        resolve();
        await x.hang();
      }),
    );
    const controller = new AbortController();
    const res = await fetch(`${g.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'upstream', stream: true, ...body }), signal: controller.signal });
    expect(res.status).toBe(200);
    await held;
    const reader = res.body!.getReader();
    await reader.read();
    controller.abort();
    await fake.until((f) => f.abortedRequests === 1, 'the upstream call to be cut');
    await waitFor(async () => ((await inFlight('upstream')) === 0 ? true : undefined), 'the slot to be released');
  });

  it('an embeddings caller that leaves while queued frees its place', async () => {
    fake.next(async (x) => {
      await x.hang();
    });
    const first = new AbortController();
    const blocker = fetch(`${g.url}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'upstream-emb', input: 'a' }), signal: first.signal }).catch(() => undefined);
    await fake.until((f) => f.requests.length === 1, 'the first call upstream');
    const second = new AbortController();
    const waiting = fetch(`${g.url}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'upstream-emb', input: 'b' }), signal: second.signal }).catch(() => undefined);
    await waitFor(async () => ((await inFlight('upstream-emb')) === 2 ? true : undefined), 'a waiter');
    second.abort();
    first.abort();
    await Promise.all([blocker, waiting]);
    await waitFor(async () => ((await inFlight('upstream-emb')) === 0 ? true : undefined), 'both released');
    expect(fake.requests).toHaveLength(1);
  });
});

describe('priority and timeout without touching the body', () => {
  it('x-triage-priority and metadata.priority are used when the body has none; the body wins', async () => {
    const header = await fetch(`${g.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-triage-priority': '9' }, body: JSON.stringify({ model: 'chat-mock', messages: [{ role: 'user', content: 'x' }] }) });
    expect(header.headers.get('x-triage-priority')).toBe('9');
    const both = await fetch(`${g.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-triage-priority': '9' }, body: JSON.stringify({ model: 'chat-mock', messages: [{ role: 'user', content: 'x' }], priority: 2 }) });
    expect(both.headers.get('x-triage-priority')).toBe('2');
    const meta = await fetch(`${g.url}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-triage-priority': '9' }, body: JSON.stringify({ model: 'embed-mock', input: 'x', metadata: { priority: 4 } }) });
    expect(meta.headers.get('x-triage-priority')).toBe('4');
  });

  it('the same validator and error table for every source', async () => {
    for (const [headers, body] of [
      [{ 'x-triage-priority': 'high' }, {}],
      [{ 'x-triage-priority': '101' }, {}],
      [{}, { metadata: { priority: -1 } }],
      [{}, { priority: 1.5 }],
    ] as const) {
      const r = await post('/v1/embeddings', { model: 'embed-mock', input: 'x', ...body }, headers);
      expect(r.status).toBe(400);
      expect(r.body).toEqual({ error: { message: expect.stringContaining('priority must be an integer from 0 to 100'), type: 'invalid_request_error', param: 'priority', code: 'invalid_priority' } });
    }
    const timeout = await post('/v1/completions', { model: 'text-mock', prompt: 'x' }, { 'x-triage-timeout': 'soon' });
    expect(timeout.status).toBe(400);
    expect(timeout.body).toEqual(envelope('invalid_request', 'timeout'));
    const fine = await post('/v1/completions', { model: 'text-mock', prompt: 'x' }, { 'x-triage-timeout': '2.5' });
    expect(fine.status).toBe(200);
  });
});

describe('query parameters that say what they do', () => {
  it('an unknown query parameter is refused on the POST endpoints and /queue/status', async () => {
    for (const path of ['/v1/chat/completions?modle=chat-mock', '/v1/embeddings?foo=1', '/v1/responses?stream=true', '/v1/completions?x=']) {
      const r = await post(path, { model: 'chat-mock', messages: [{ role: 'user', content: 'x' }], input: 'x', prompt: 'x' });
      expect(r.status).toBe(400);
      expect(r.body.error?.message).toMatch(/Unknown query parameter '(modle|foo|stream|x)'/);
    }
    const status = await fetch(`${g.url}/queue/status?waiter=3`);
    expect(status.status).toBe(400);
    expect(((await status.json()) as { error: { param: string } }).error.param).toBe('waiter');
    // Azure OpenAI clients add api-version: accepted (and ignored).
    expect((await post('/v1/embeddings?api-version=2024-10-21', { model: 'embed-mock', input: 'x' })).status).toBe(200);
  });

  it('/queue/events takes ?model= like ?models=, and closes with a reason naming an unknown parameter', async () => {
    const ws = new WebSocket(`${g.url.replace('http', 'ws')}/queue/events?model=embed-mock`);
    const snapshot = await new Promise<{ type: string; models: Array<{ model: string }> }>((resolve, reject) => {
      ws.once('message', (m) => resolve(JSON.parse(String(m))));
      ws.once('error', reject);
    });
    expect(snapshot.type).toBe('snapshot');
    expect(snapshot.models.map((m) => m.model)).toEqual(['embed-mock']);
    ws.close();

    const bad = new WebSocket(`${g.url.replace('http', 'ws')}/queue/events?modle=embed-mock`);
    const [code, reason] = await new Promise<[number, string]>((resolve) => bad.once('close', (c, r) => resolve([c, String(r)])));
    expect(code).toBe(1008);
    expect(reason).toContain("'modle'");
  });
});

describe('/v1/models', () => {
  it('lists every group with its mode and the endpoints it serves', async () => {
    const body = (await (await fetch(`${g.url}/v1/models`)).json()) as { data: Array<{ id: string; mode: string; endpoints: string[] }> };
    expect(body.data.map((m) => [m.id, m.mode, m.endpoints])).toEqual([
      ['chat-mock', 'chat', ['chat', 'responses', 'completions']],
      ['embed-mock', 'embedding', ['embeddings']],
      ['text-mock', 'completion', ['completions']],
      ['upstream', 'chat', ['chat', 'responses', 'completions']],
      ['upstream-emb', 'embedding', ['embeddings']],
    ]);
  });
});
