/**
 * OpenAIUpstream against a scripted fake upstream on 127.0.0.1: what is forwarded (and what never
 * is), SSE parsing across arbitrary chunk boundaries, Retry-After parsing, and how every failure is
 * classified for retries and cooldown.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DeploymentConfig } from '../src/core/config-types.js';
import type { ChatCompletionBody, ChatCompletionChunk } from '../src/core/openai-types.js';
import { OpenAIUpstream, parseRetryAfter, sseData } from '../src/adapters/openai-upstream.js';
import { UpstreamError, type UpstreamFailureKind } from '../src/core/upstream.js';
import { closedPort, FakeOpenAI, openAIError, PacedStream, respond, type Handler } from './support/fake-openai.js';
import { chat, startGateway, type RunningGateway } from './support/gateway.js';
import { testConfig } from './support/test-config.js';

let fake: FakeOpenAI;
let gateways: RunningGateway[] = [];

beforeEach(async () => {
  fake = await FakeOpenAI.start();
});

afterEach(async () => {
  await Promise.all(gateways.map((g) => g.stop()));
  gateways = [];
  await fake.close();
  expect(fake.handlerErrors).toEqual([]);
});

function deployment(over: Partial<DeploymentConfig> = {}): DeploymentConfig {
  return {
    id: 'up#0',
    modelName: 'm',
    model: 'openai/gpt-upstream',
    provider: 'openai',
    upstreamModel: 'gpt-upstream',
    limits: {},
    mockDelayMs: 0,
    apiBase: fake.url,
    apiKey: 'sk-deployment-key',
    ...over,
  };
}

const body = (extra: Record<string, unknown> = {}): ChatCompletionBody => ({ model: 'gpt-upstream', messages: [{ role: 'user', content: 'hi' }], ...extra });
const call = (b: ChatCompletionBody, signal: AbortSignal = new AbortController().signal) => ({ body: b, signal });

async function collect(stream: AsyncIterable<ChatCompletionChunk>): Promise<ChatCompletionChunk[]> {
  const out: ChatCompletionChunk[] = [];
  for await (const c of stream) out.push(c);
  return out;
}

/** The UpstreamError a call fails with (fails the test when it succeeds or throws something else). */
async function failure(work: Promise<unknown>): Promise<UpstreamError> {
  const e = await work.then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(e).toBeInstanceOf(UpstreamError);
  return e as UpstreamError;
}

const contentOf = (chunks: ChatCompletionChunk[]) => chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');

describe('parseRetryAfter', () => {
  const h = (init: Record<string, string>) => new Headers(init);
  const now = Date.UTC(2030, 0, 1, 12, 0, 0);

  it('reads Retry-After as seconds', () => {
    expect(parseRetryAfter(h({ 'retry-after': '2' }), now)).toBe(2000);
    expect(parseRetryAfter(h({ 'retry-after': '0' }), now)).toBe(0);
    expect(parseRetryAfter(h({ 'retry-after': '1.5' }), now)).toBe(1500);
  });

  it('reads Retry-After as an HTTP date, relative to now, never negative', () => {
    expect(parseRetryAfter(h({ 'retry-after': new Date(now + 5_000).toUTCString() }), now)).toBe(5000);
    expect(parseRetryAfter(h({ 'retry-after': 'Tue, 01 Jan 2030 12:01:00 GMT' }), now)).toBe(60_000);
    expect(parseRetryAfter(h({ 'retry-after': new Date(now - 60_000).toUTCString() }), now)).toBe(0);
  });

  it('prefers retry-after-ms (OpenAI) over Retry-After', () => {
    expect(parseRetryAfter(h({ 'retry-after-ms': '1500', 'retry-after': '7' }), now)).toBe(1500);
    expect(parseRetryAfter(h({ 'retry-after-ms': '12.5' }), now)).toBe(12.5);
    expect(parseRetryAfter(h({ 'retry-after-ms': 'soon', 'retry-after': '7' }), now)).toBe(7000);
  });

  it('ignores absent, empty, negative and unparseable values instead of reading them as 0', () => {
    expect(parseRetryAfter(h({}), now)).toBeUndefined();
    expect(parseRetryAfter(h({ 'retry-after': 'soon' }), now)).toBeUndefined();
    // An empty or negative value is no hint: 0 would mean "no cooldown at all" for a 429.
    expect(parseRetryAfter(h({ 'retry-after': '' }), now)).toBeUndefined();
    expect(parseRetryAfter(h({ 'retry-after': '-3' }), now)).toBeUndefined();
    expect(parseRetryAfter(h({ 'retry-after-ms': '', 'retry-after': '3' }), now)).toBe(3000);
    expect(parseRetryAfter(h({ 'retry-after-ms': '-5', 'retry-after': '3' }), now)).toBe(3000);
    expect(parseRetryAfter(h({ 'retry-after': '0x10' }), now)).toBeUndefined();
  });
});

describe('sseData', () => {
  const payload =
    ': keep-alive comment\n\n' +
    'data: {"a":1}\n\n' +
    'event: message\r\nid: 7\r\ndata: {"b":2}\r\n\r\n' +
    'data:{"c":3}\n\n' +
    'data: line1\ndata: line2\n\n' +
    'data: {"d":"é🙂"}\r\n\r\n' +
    'retry: 100\n\n' +
    'data: [DONE]\n\n';
  const expected = ['{"a":1}', '{"b":2}', '{"c":3}', 'line1\nline2', '{"d":"é🙂"}', '[DONE]'];
  const bytes = new TextEncoder().encode(payload);

  const streamOf = (chunks: Uint8Array[]) =>
    new ReadableStream<Uint8Array>({
      start(controller) {
        for (const c of chunks) controller.enqueue(c);
        controller.close();
      },
    });
  const parse = async (chunks: Uint8Array[]) => {
    const out: string[] = [];
    for await (const d of sseData(streamOf(chunks))) out.push(d);
    return out;
  };

  it('yields the same events wherever the byte stream is cut once (mid-line, mid-CRLF, mid-UTF-8)', async () => {
    for (let i = 0; i <= bytes.length; i++) {
      expect(await parse([bytes.slice(0, i), bytes.slice(i)]), `cut at ${i}`).toEqual(expected);
    }
  });

  it('yields the same events wherever the byte stream is cut twice', async () => {
    for (let i = 0; i <= bytes.length; i++) {
      for (let j = i; j <= bytes.length; j += 3) {
        expect(await parse([bytes.slice(0, i), bytes.slice(i, j), bytes.slice(j)]), `cuts at ${i}, ${j}`).toEqual(expected);
      }
    }
  });

  it('yields the same events one byte at a time', async () => {
    expect(await parse([...bytes].map((b) => Uint8Array.of(b)))).toEqual(expected);
  });

  it('yields each event as soon as its blank line arrives, not at the end of the body', async () => {
    let push!: (s: string) => void;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        push = (s) => controller.enqueue(new TextEncoder().encode(s));
      },
    });
    const it = sseData(body)[Symbol.asyncIterator]();
    push('data: one\r\n');
    push('\r\ndata: tw');
    expect(await it.next()).toEqual({ value: 'one', done: false });
    push('o\n\n');
    expect(await it.next()).toEqual({ value: 'two', done: false });
    await it.return?.();
  });
});

describe('OpenAIUpstream: what is forwarded', () => {
  it('posts the body to {api_base}/chat/completions with the deployment key, without LiteLLM control fields', async () => {
    const upstream = new OpenAIUpstream(deployment());
    const completion = await upstream.complete(
      call(
        body({
          temperature: 0.3,
          user: 'u-1',
          tools: [{ type: 'function', function: { name: 'f', parameters: {} } }],
          mock_response: 'steered',
          mock_delay: 5,
          api_key: 'sk-attacker',
          api_base: 'http://attacker.invalid',
          base_url: 'http://attacker.invalid',
          api_version: '2024-01-01',
          litellm_params: { api_key: 'x' },
          user_config: {},
        }),
      ),
    );
    expect(completion.choices[0].message.content).toBe('Hello from the fake upstream.');
    const [r] = fake.requests;
    expect(fake.requests).toHaveLength(1);
    expect(r.method).toBe('POST');
    expect(r.path).toBe('/v1/chat/completions');
    expect(r.headers.authorization).toBe('Bearer sk-deployment-key');
    expect(r.headers['content-type']).toBe('application/json');
    expect(r.body).toEqual({
      model: 'gpt-upstream',
      messages: [{ role: 'user', content: 'hi' }],
      temperature: 0.3,
      user: 'u-1',
      tools: [{ type: 'function', function: { name: 'f', parameters: {} } }],
      stream: false,
    });
    expect(r.rawBody).not.toContain('attacker');
  });

  it('tolerates a trailing slash in api_base and sends no Authorization without an api_key', async () => {
    await new OpenAIUpstream(deployment({ apiBase: `${fake.url}/`, apiKey: undefined })).complete(call(body()));
    expect(fake.requests[0].path).toBe('/v1/chat/completions');
    expect(fake.requests[0].headers.authorization).toBeUndefined();
  });

  it('asks for usage in streams and hides the usage-only chunk from a caller who did not ask for it', async () => {
    fake.always(respond.stream(['Hel', 'lo']));
    const upstream = new OpenAIUpstream(deployment());
    const chunks = await collect(upstream.stream(call(body({ stream_options: { other: 1 } }))));
    expect(fake.requests[0].body).toMatchObject({ stream: true, stream_options: { other: 1, include_usage: true } });
    expect(fake.requests[0].headers.accept).toBe('text/event-stream');
    expect(contentOf(chunks)).toBe('Hello');
    const usage = chunks.filter((c) => c.usage);
    expect(usage).toHaveLength(1);
    expect(usage[0]).toMatchObject({ choices: [], usage: { total_tokens: 8 }, __triageHidden: true });
    expect(chunks.filter((c) => c.__triageHidden)).toHaveLength(1);
  });

  it('passes the usage chunk through when the caller asked for it', async () => {
    fake.always(respond.stream(['Hi']));
    const chunks = await collect(new OpenAIUpstream(deployment()).stream(call(body({ stream_options: { include_usage: true } }))));
    const last = chunks[chunks.length - 1];
    expect(last.usage).toEqual({ prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 });
    expect(last.__triageHidden).toBeUndefined();
  });

  it('parses a stream written in arbitrary fragments with CRLF line ends', async () => {
    const events = [
      { id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'gpt-upstream', choices: [{ index: 0, delta: { role: 'assistant', content: 'Héllo' }, finish_reason: null }] },
      { id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'gpt-upstream', choices: [{ index: 0, delta: { content: ', 🙂 world' }, finish_reason: 'stop' }] },
    ];
    const text = `: ping\r\n\r\n${events.map((e) => `data: ${JSON.stringify(e)}\r\n\r\n`).join('')}data: [DONE]\r\n\r\n`;
    const raw = Buffer.from(text);
    // Cut mid-line, between CR and LF, and inside multi-byte characters.
    const cuts = [3, 9, 10, 40, raw.indexOf('é') + 1, raw.indexOf('🙂') + 2, raw.indexOf('\r\n\r\n', 60) + 1, raw.length - 3];
    const fragments: string[] = [];
    let from = 0;
    const sorted = [...new Set(cuts)].sort((a, b) => a - b);
    for (const c of sorted) {
      fragments.push(raw.subarray(from, c).toString('latin1'));
      from = c;
    }
    fragments.push(raw.subarray(from).toString('latin1'));
    fake.always(async (x) => {
      x.startSse();
      for (const f of fragments) {
        // latin1 round-trips the raw bytes, so multi-byte characters really are split between writes.
        if (!(await new Promise<boolean>((ok) => x.res.write(Buffer.from(f, 'latin1'), (e) => ok(e == null))))) return;
        await new Promise((r) => setImmediate(r));
      }
      x.finish();
    });
    const chunks = await collect(new OpenAIUpstream(deployment()).stream(call(body())));
    expect(contentOf(chunks)).toBe('Héllo, 🙂 world');
    expect(chunks).toEqual(events);
  });
});

describe('OpenAIUpstream: failures are classified for retries and cooldown', () => {
  const cases: Array<{ name: string; handler: Handler; kind: UpstreamFailureKind; status: number; retryAfterMs?: number; retryable: boolean; message?: RegExp }> = [
    { name: '429 with Retry-After', handler: respond.rateLimited({ retryAfter: '2' }), kind: 'rate_limited', status: 429, retryAfterMs: 2000, retryable: true },
    { name: '429 with retry-after-ms', handler: respond.rateLimited({ retryAfter: '9', retryAfterMs: '250' }), kind: 'rate_limited', status: 429, retryAfterMs: 250, retryable: true },
    { name: '429 without a hint', handler: respond.rateLimited(), kind: 'rate_limited', status: 429, retryable: true, message: /HTTP 429: Rate limit reached/ },
    { name: '500', handler: respond.error(500), kind: 'server_error', status: 500, retryable: true, message: /HTTP 500: fake upstream error 500/ },
    { name: '503 with Retry-After', handler: respond.error(503, openAIError('overloaded', 'server_error'), { 'retry-after': '1' }), kind: 'server_error', status: 503, retryAfterMs: 1000, retryable: true },
    { name: '408', handler: respond.error(408), kind: 'server_error', status: 408, retryable: true },
    { name: '400 with an OpenAI error body', handler: respond.error(400, openAIError("Invalid value for 'temperature'.", 'invalid_request_error', 'temperature', 'invalid_value')), kind: 'client_error', status: 400, retryable: false, message: /HTTP 400: Invalid value for 'temperature'/ },
    { name: '401 (the deployment key refused)', handler: respond.error(401, openAIError('Incorrect API key provided', 'invalid_request_error', null, 'invalid_api_key')), kind: 'auth_failed', status: 401, retryable: true },
    { name: '403 (the deployment key not allowed)', handler: respond.error(403, openAIError('Project does not have access to model', 'invalid_request_error')), kind: 'auth_failed', status: 403, retryable: true },
    { name: '404', handler: respond.error(404), kind: 'client_error', status: 404, retryable: false },
    { name: '422 with a body that is not JSON', handler: (x) => x.json(422, 'nope'), kind: 'client_error', status: 422, retryable: false, message: /^HTTP 422$/ },
  ];

  for (const c of cases) {
    for (const mode of ['complete', 'stream'] as const) {
      it(`${c.name} → ${c.kind} (${mode})`, async () => {
        fake.always(c.handler);
        const upstream = new OpenAIUpstream(deployment());
        const e = await failure(mode === 'complete' ? upstream.complete(call(body())) : collect(upstream.stream(call(body()))));
        expect(e.kind).toBe(c.kind);
        expect(e.status).toBe(c.status);
        expect(e.retryAfterMs).toBe(c.kind === 'client_error' ? undefined : c.retryAfterMs);
        expect(e.retryable).toBe(c.retryable);
        if (c.message) expect(e.message).toMatch(c.message);
      });
    }
  }

  it('keeps the upstream error body of a 4xx so it can be passed through', async () => {
    const errorBody = openAIError("Invalid value for 'temperature'.", 'invalid_request_error', 'temperature', 'invalid_value');
    fake.always(respond.error(400, errorBody));
    const e = await failure(new OpenAIUpstream(deployment()).complete(call(body())));
    expect(e.body).toEqual(errorBody);
  });

  it('a refused connection → network', async () => {
    const port = await closedPort();
    const e = await failure(new OpenAIUpstream(deployment({ apiBase: `http://127.0.0.1:${port}/v1` })).complete(call(body())));
    expect(e.kind).toBe('network');
    expect(e.status).toBeUndefined();
    expect(e.message).toMatch(/ECONNREFUSED/);
    expect(e.retryable).toBe(true);
  });

  it('a connection dropped before any answer → network', async () => {
    fake.always(respond.drop());
    const upstream = new OpenAIUpstream(deployment());
    expect((await failure(upstream.complete(call(body())))).kind).toBe('network');
    expect((await failure(collect(upstream.stream(call(body()))))).kind).toBe('network');
  });

  it('a 200 whose body is not JSON → network', async () => {
    fake.always((x) => {
      x.res.writeHead(200, { 'content-type': 'text/html' });
      x.res.end('<html>proxy error</html>');
    });
    const e = await failure(new OpenAIUpstream(deployment()).complete(call(body())));
    expect(e.kind).toBe('network');
    expect(e.message).toMatch(/unreadable body/);
  });

  it('a connection dropped mid-stream: the chunks before it arrive, then → network', async () => {
    const paced = new PacedStream(['one', 'two', 'three']);
    fake.always(paced.handler);
    paced.release();
    const it = new OpenAIUpstream(deployment()).stream(call(body()))[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.done).toBe(false);
    expect((first.value as ChatCompletionChunk).choices[0].delta.content).toBe('one');
    paced.drop();
    const e = await failure(it.next());
    expect(e.kind).toBe('network');
    expect(paced.sent).toBe(1);
  });

  it('a stream that ends without [DONE] → network', async () => {
    fake.always(respond.raw(['data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[]}\n\n']));
    const e = await failure(collect(new OpenAIUpstream(deployment()).stream(call(body()))));
    expect(e.kind).toBe('network');
    expect(e.message).toMatch(/ended before \[DONE\]/);
  });

  it('an unreadable stream event → network, and the upstream connection is closed rather than left open', async () => {
    fake.always(respond.raw(['data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[]}\n\n', 'data: {not json\n\n'], { end: 'hold' }));
    const e = await failure(collect(new OpenAIUpstream(deployment()).stream(call(body()))));
    expect(e.kind).toBe('network');
    expect(e.message).toMatch(/unreadable stream event/);
    // The fake still holds the response open: only the adapter giving the body up can end it.
    await fake.until((f) => f.abortedRequests === 1, 'the upstream request to be closed');
  });

  it('an event that is JSON but not an object (null, a number) → network, not a chunk', async () => {
    fake.next(respond.raw(['data: null\n\n', 'data: [DONE]\n\n']), respond.raw(['data: 42\n\n', 'data: [DONE]\n\n']));
    const upstream = new OpenAIUpstream(deployment());
    for (let i = 0; i < 2; i++) {
      const e = await failure(collect(upstream.stream(call(body()))));
      expect(e.kind).toBe('network');
      expect(e.message).toMatch(/unreadable stream event/);
    }
  });

  it('an error event inside a 200 stream is a failure, not a chunk', async () => {
    const errorEvent = { error: { message: 'The server had an error while processing your request.', type: 'server_error', param: null, code: null } };
    fake.always(respond.raw([`data: ${JSON.stringify(errorEvent)}\n\n`, 'data: [DONE]\n\n']));
    const seen: ChatCompletionChunk[] = [];
    const e = await failure(
      (async () => {
        for await (const c of new OpenAIUpstream(deployment()).stream(call(body()))) seen.push(c);
      })(),
    );
    expect(seen).toEqual([]);
    expect(e.kind).toBe('server_error');
    expect(e.message).toMatch(/The server had an error/);
    expect(e.body).toEqual(errorEvent);
  });

  it('an error event with a 4xx / 429 code is classified like that status', async () => {
    fake.next(
      respond.raw([`data: ${JSON.stringify({ error: { message: 'too long', type: 'BadRequestError', code: 400 } })}\n\n`]),
      respond.raw([`data: ${JSON.stringify({ error: { message: 'slow down', type: 'rate_limit_error', code: '429' } })}\n\n`]),
    );
    const upstream = new OpenAIUpstream(deployment());
    const bad = await failure(collect(upstream.stream(call(body()))));
    expect([bad.kind, bad.status]).toEqual(['client_error', 400]);
    const limited = await failure(collect(upstream.stream(call(body()))));
    expect([limited.kind, limited.status]).toEqual(['rate_limited', 429]);
  });
});

describe('OpenAIUpstream: cancellation', () => {
  it("the caller's abort ends a hanging call with the caller's own reason and closes the upstream request", async () => {
    fake.always(respond.hang());
    const controller = new AbortController();
    const reason = new Error('caller went away');
    const pending = new OpenAIUpstream(deployment()).complete(call(body(), controller.signal)).then(
      () => 'answered',
      (e: unknown) => e,
    );
    await fake.until((f) => f.requests.length === 1, 'the request to reach the fake');
    controller.abort(reason);
    expect(await pending).toBe(reason);
    await fake.until((f) => f.abortedRequests === 1, 'the upstream request to be aborted');
  });

  it("the caller's abort mid-stream ends the stream with its reason and closes the upstream request", async () => {
    const paced = new PacedStream(['a', 'b', 'c']);
    fake.always(paced.handler);
    paced.release();
    const controller = new AbortController();
    const reason = new Error('caller went away');
    const it = new OpenAIUpstream(deployment()).stream(call(body(), controller.signal))[Symbol.asyncIterator]();
    expect((await it.next()).done).toBe(false);
    const second = it.next().then(
      () => 'chunk',
      (e: unknown) => e,
    );
    controller.abort(reason);
    expect(await second).toBe(reason);
    await fake.until((f) => f.abortedRequests === 1, 'the upstream request to be aborted');
    expect(paced.sent).toBe(1);
  });
});

describe('through the gateway: what reaches the upstream', () => {
  async function gatewayFor(): Promise<RunningGateway> {
    const config = testConfig({}, { numRetries: 0 });
    config.modelGroups = [{ name: 'team-model', deployments: [deployment({ id: 'team-model#0', modelName: 'team-model', model: 'openai/gpt-upstream-7', upstreamModel: 'gpt-upstream-7' })] }];
    const g = await startGateway(config);
    gateways.push(g);
    return g;
  }

  it("forwards the upstream model name and the deployment's key, never priority, control fields or the caller's key", async () => {
    const g = await gatewayFor();
    const client = g.client('sk-caller-key');
    const completion = await client.chat.completions.create(
      chat('team-model', 'hello', 3, { temperature: 0.5, mock_response: 'steered', api_key: 'sk-attacker', api_base: 'http://attacker.invalid' }),
    );
    expect(completion.choices[0].message.content).toBe('Hello from the fake upstream.');
    expect(fake.requests).toHaveLength(1);
    const r = fake.requests[0];
    expect(r.path).toBe('/v1/chat/completions');
    expect(r.headers.authorization).toBe('Bearer sk-deployment-key');
    expect(r.body).toEqual({ model: 'gpt-upstream-7', messages: [{ role: 'user', content: 'hello' }], temperature: 0.5, stream: false });
    for (const field of ['priority', 'mock_response', 'api_key', 'api_base']) expect(r.body).not.toHaveProperty(field);
    const everything = JSON.stringify(r.headers) + r.rawBody;
    expect(everything).not.toContain('sk-caller-key');
    expect(everything).not.toContain('attacker');
  });

  it('forwards a streamed request the same way, asking the upstream for usage', async () => {
    const g = await gatewayFor();
    fake.always(respond.stream(['a', 'b']));
    const stream = await g.client('sk-caller-key').chat.completions.create({ ...chat('team-model', 'hello', 0, { mock_response: 'x' }), stream: true });
    let text = '';
    for await (const c of stream) text += c.choices[0]?.delta?.content ?? '';
    expect(text).toBe('ab');
    const r = fake.requests[0];
    expect(r.headers.authorization).toBe('Bearer sk-deployment-key');
    expect(r.body).toEqual({ model: 'gpt-upstream-7', messages: [{ role: 'user', content: 'hello' }], stream: true, stream_options: { include_usage: true } });
  });
});
