/**
 * End to end over real sockets on 127.0.0.1: the official OpenAI client calls the gateway, whose
 * deployments are HTTP upstreams served by the scripted fake. Streams pass through chunk by chunk,
 * 429s cool a deployment down and the request moves to another, exhausted retries and upstream
 * errors come back in the OpenAI envelope, timeouts answer 504, and a dropped upstream or a caller who
 * goes away both release the slot and close the other side.
 */
import OpenAI, { APIError, BadRequestError } from 'openai';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DeploymentConfig, RouterSettings, TriageConfig } from '../src/core/config-types.js';
import { FakeOpenAI, openAIError, PacedStream, respond } from './support/fake-openai.js';
import { chat, startGateway, waitFor, type RunningGateway } from './support/gateway.js';
import { openAIDeployment, singleGroupConfig } from './support/test-config.js';

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

/** An `openai/<name>` deployment of group `m` served by the fake. */
const httpDeployment = (name: string, over: Partial<DeploymentConfig> = {}) => openAIDeployment(fake.url, 'm', name, over);
const httpConfig = (deployments: DeploymentConfig[], router: Partial<RouterSettings> = {}) => singleGroupConfig('m', deployments, router);

async function start(config: TriageConfig): Promise<RunningGateway> {
  const g = await startGateway(config);
  gateways.push(g);
  return g;
}

interface GroupStatus {
  model: string;
  waiting: number;
  inFlight: number;
  deployments: Array<{ id: string; inFlight: number; coolingDownUntil: number | null }>;
}

async function status(g: RunningGateway): Promise<GroupStatus> {
  const body = (await (await fetch(`${g.url}/queue/status`)).json()) as { models: GroupStatus[] };
  return body.models.find((m) => m.model === 'm')!;
}

const slotReleased = (g: RunningGateway) =>
  waitFor(async () => {
    const s = await status(g);
    return s.inFlight === 0 && s.waiting === 0 ? true : undefined;
  }, 'the slot to be released (inFlight 0)');

/** Rejects when `work` does not settle within `ms`: a buffering gateway fails fast instead of at the test timeout. */
function within<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

/** The error a call fails with. */
async function rejection(work: Promise<unknown>): Promise<APIError> {
  const e = await work.then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(e).toBeInstanceOf(APIError);
  return e as APIError;
}

type Chunk = OpenAI.Chat.Completions.ChatCompletionChunk;
const textOf = (chunk: Chunk | undefined) => chunk?.choices[0]?.delta?.content ?? '';

describe('HTTP upstream through the gateway', () => {
  it('answers a plain completion from the upstream with the queue headers', async () => {
    fake.always(respond.completion('Hello over HTTP.'));
    const g = await start(httpConfig([httpDeployment('a')]));
    const { data, response } = await g.client().chat.completions.create(chat('m', 'hi', 4)).withResponse();
    expect(data.object).toBe('chat.completion');
    expect(data.choices[0].message.content).toBe('Hello over HTTP.');
    expect(data.model).toBe('up-a');
    expect(data.usage?.total_tokens).toBe(8);
    expect(response.headers.get('x-triage-deployment')).toBe('m-a');
    expect(response.headers.get('x-triage-priority')).toBe('4');
    expect(response.headers.get('x-triage-attempts')).toBe('1');
    expect(fake.requests).toHaveLength(1);
    expect(fake.requests[0].body).toMatchObject({ model: 'up-a', stream: false });
    await slotReleased(g);
  });

  it('passes a stream through chunk by chunk: the caller has chunk 1 before the upstream sends chunk 2', async () => {
    const paced = new PacedStream(['Hel', 'lo', ', world']);
    fake.always(paced.handler);
    const g = await start(httpConfig([httpDeployment('a')]));
    paced.release(); // chunk 1 only
    const stream = await within(g.client().chat.completions.create({ ...chat('m', 'hi'), stream: true }), 5_000, 'stream response');
    const it = stream[Symbol.asyncIterator]();

    const first = await within(it.next(), 5_000, 'first chunk');
    expect(textOf(first.value as Chunk)).toBe('Hel');
    // The upstream has not been allowed to send chunk 2 yet, so nothing was buffered on the way.
    expect(paced.sent).toBe(1);

    paced.release();
    const second = await within(it.next(), 5_000, 'second chunk');
    expect(textOf(second.value as Chunk)).toBe('lo');
    expect(paced.sent).toBe(2);

    paced.releaseAll();
    const rest: Chunk[] = [];
    for (let r = await it.next(); !r.done; r = await it.next()) rest.push(r.value as Chunk);
    expect(rest.map(textOf).join('')).toBe(', world');
    expect(rest[rest.length - 1].choices[0].finish_reason).toBe('stop');
    // The gateway asked for usage (for tpm accounting) but the caller did not: no usage-only chunk.
    expect(fake.requests[0].body).toMatchObject({ model: 'up-a', stream: true, stream_options: { include_usage: true } });
    expect(rest.some((c) => c.choices.length === 0)).toBe(false);
    await slotReleased(g);
  });

  it('a 429 with Retry-After: 2 cools the deployment down and the request is retried on the other one', async () => {
    fake.always((x) => (x.request.body?.model === 'up-a' ? respond.rateLimited({ retryAfter: '2' })(x) : respond.completion('from b')(x)));
    const g = await start(httpConfig([httpDeployment('a'), httpDeployment('b')], { numRetries: 2, cooldownTimeMs: 60_000 }));
    const before = Date.now();
    const { data, response } = await g.client().chat.completions.create(chat('m', 'hi')).withResponse();
    expect(data.choices[0].message.content).toBe('from b');
    expect(response.headers.get('x-triage-deployment')).toBe('m-b');
    expect(response.headers.get('x-triage-attempts')).toBe('2');
    // The fake saw the first call on deployment a (its model and key), then the retry on b.
    expect(fake.requests.map((r) => [r.body?.model, r.headers.authorization])).toEqual([
      ['up-a', 'Bearer sk-a'],
      ['up-b', 'Bearer sk-b'],
    ]);
    // Cooled down for the upstream's 2 s, not the configured 60 s.
    const a = (await status(g)).deployments.find((d) => d.id === 'm-a')!;
    expect(a.coolingDownUntil).not.toBeNull();
    expect(a.coolingDownUntil!).toBeGreaterThanOrEqual(before + 2_000);
    expect(a.coolingDownUntil!).toBeLessThanOrEqual(Date.now() + 2_000);
    // While a cools down, the next request goes straight to b.
    const next = await g.client().chat.completions.create(chat('m', 'again')).withResponse();
    expect(next.response.headers.get('x-triage-deployment')).toBe('m-b');
    expect(next.response.headers.get('x-triage-attempts')).toBe('1');
    expect(fake.requests.filter((r) => r.body?.model === 'up-a')).toHaveLength(1);
  });

  it('a storm of 500s exhausts num_retries: 502 in the OpenAI error envelope', async () => {
    fake.always(respond.error(500, openAIError('The server had an error while processing your request.', 'server_error')));
    const g = await start(httpConfig([httpDeployment('a')], { numRetries: 2, allowedFails: 10 }));
    const e = await rejection(g.client().chat.completions.create(chat('m', 'hi')));
    expect(e.status).toBe(502);
    expect(e.error).toEqual({ message: expect.stringMatching(/HTTP 500: The server had an error/), type: 'upstream_error', param: null, code: 'upstream_error' });
    expect(fake.requests).toHaveLength(3); // the first try and num_retries: 2
    await slotReleased(g);
  });

  it('an upstream 400 passes through as 400 in the envelope, without retries or cooldown', async () => {
    fake.always(respond.error(400, openAIError("Invalid value for 'temperature': 9 is above the maximum of 2.", 'invalid_request_error', 'temperature', 'invalid_value')));
    const g = await start(httpConfig([httpDeployment('a')], { numRetries: 2 }));
    const e = await rejection(g.client().chat.completions.create(chat('m', 'hi', 0, { temperature: 9 })));
    expect(e).toBeInstanceOf(BadRequestError);
    expect(e.status).toBe(400);
    expect(e.error).toEqual({ message: expect.stringContaining("Invalid value for 'temperature'"), type: 'upstream_error', param: 'temperature', code: 'upstream_error' });
    expect(fake.requests[0].body?.temperature).toBe(9);
    expect((await status(g)).deployments[0].coolingDownUntil).toBeNull();
    // Not retried: once the request has ended (nothing waits or runs), the upstream has had one call.
    await slotReleased(g);
    expect(fake.requests).toHaveLength(1);
  });

  it("an upstream 401 (the deployment's key refused) is retried on the other deployment, which cools the first down at once; alone, the caller gets 502, never the 401", async () => {
    fake.always((x) => (x.request.body?.model === 'up-a' ? respond.error(401, openAIError('Incorrect API key provided: sk-a', 'invalid_request_error', null, 'invalid_api_key'))(x) : respond.completion('from b')(x)));
    const g = await start(httpConfig([httpDeployment('a'), httpDeployment('b')], { numRetries: 2, allowedFails: 5, cooldownTimeMs: 60_000 }));
    const { data, response } = await g.client().chat.completions.create(chat('m', 'hi')).withResponse();
    expect(data.choices[0].message.content).toBe('from b');
    expect(response.headers.get('x-triage-attempts')).toBe('2');
    // One refusal is enough (allowed_fails is 5): a wrong key does not fix itself.
    expect((await status(g)).deployments.find((d) => d.id === 'm-a')!.coolingDownUntil).not.toBeNull();

    // Alone, its refusal cools the only deployment down: the retry finds nothing that is not failing and
    // is told so, with the upstream's error, and when to come back (never the 401 itself).
    const alone = await start(httpConfig([httpDeployment('a')], { numRetries: 1, allowedFails: 5, cooldownTimeMs: 1_000 }));
    const e = await rejection(alone.client().chat.completions.create(chat('m', 'hi')));
    expect(e.status).toBe(503);
    expect(e.error).toEqual({ message: expect.stringMatching(/cooling down after failing.*HTTP 401/), type: 'service_unavailable', param: null, code: 'upstream_unavailable' });
    expect(e.headers?.get('retry-after')).toBe('1');
    await slotReleased(alone);
  });

  it("an upstream that hangs → 504 upstream_timeout after the deployment's request timeout, each try closed upstream", async () => {
    fake.always(respond.hang());
    const g = await start(httpConfig([httpDeployment('a', { requestTimeoutMs: 300 })], { numRetries: 1, requestTimeoutMs: 600_000 }));
    const started = Date.now();
    const e = await rejection(g.client().chat.completions.create(chat('m', 'hi')));
    const elapsed = Date.now() - started;
    expect(e.status).toBe(504);
    expect(e.error).toMatchObject({ type: 'timeout_error', code: 'upstream_timeout' });
    // Two tries of 300 ms each (num_retries: 1), far below the router-wide 600 s.
    expect(elapsed).toBeGreaterThanOrEqual(590);
    expect(elapsed).toBeLessThan(10_000);
    expect(fake.requests).toHaveLength(2);
    await fake.until((f) => f.abortedRequests === 2, 'both hung upstream requests to be aborted');
    await slotReleased(g);
  });

  it("a connection dropped mid-stream ends the caller's stream with an error and releases the slot", async () => {
    const paced = new PacedStream(['one ', 'two ', 'three']);
    fake.always(paced.handler);
    const g = await start(httpConfig([httpDeployment('a')], { numRetries: 2 }));
    paced.release();
    const stream = await g.client().chat.completions.create({ ...chat('m', 'hi'), stream: true });
    const it = stream[Symbol.asyncIterator]();
    expect(textOf((await within(it.next(), 5_000, 'first chunk')).value as Chunk)).toBe('one ');

    paced.drop();
    const e = await rejection(within(it.next(), 5_000, 'the stream to fail'));
    expect(e.error).toMatchObject({ type: 'upstream_error', code: 'upstream_error' });
    expect(e.message).toMatch(/upstream/);
    // Content was already sent, so the request is not retried (that would repeat it): once it has
    // ended (nothing waits or runs), the upstream has had one call.
    await slotReleased(g);
    expect(fake.requests).toHaveLength(1);
  });

  it('a caller who aborts a slow stream makes the gateway close the upstream request and release the slot', async () => {
    const paced = new PacedStream(['slow ', 'stream ', 'here']);
    fake.always(paced.handler);
    const g = await start(httpConfig([httpDeployment('a')]));
    paced.release();
    const controller = new AbortController();
    const stream = await g.client().chat.completions.create({ ...chat('m', 'hi'), stream: true }, { signal: controller.signal });
    const it = stream[Symbol.asyncIterator]();
    expect(textOf((await within(it.next(), 5_000, 'first chunk')).value as Chunk)).toBe('slow ');
    expect((await status(g)).inFlight).toBe(1);

    controller.abort();
    // The client ends the aborted stream quietly or with an abort error; either way it is over.
    const end = await it.next().then(
      (r) => r,
      (error: unknown) => error,
    );
    expect(end instanceof Error || (end as IteratorResult<Chunk>).done === true).toBe(true);

    await fake.until((f) => f.abortedRequests === 1, 'the upstream request to be aborted');
    expect(fake.exchanges[0].end).toBe('aborted');
    expect(paced.sent).toBe(1);
    await slotReleased(g);
    expect((await status(g)).deployments[0].coolingDownUntil).toBeNull();
  });
});
