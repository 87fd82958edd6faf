/**
 * What the clients people use do with Triage's overload answers, on their DEFAULT retry settings: the
 * official `openai` client, the Vercel AI SDK (`generateText` over `createOpenAI({ baseURL }).chat`) and
 * LangChain (`ChatOpenAI` with `configuration.baseURL`). Each test counts the HTTP requests a client
 * makes to the gateway (through the client's own `fetch` option), the upstream calls (dispatches), and
 * the time it takes on the test's own clock.
 *
 * What each does (read from their code: openai 6, ai 6, @langchain/core 1): openai retries 408/409/429/5xx
 * twice, sleeping for Retry-After (any value) else 0.5 s, 1 s, and obeys `x-should-retry`; the AI SDK
 * retries 408/409/429/5xx twice, sleeping for Retry-After when under 60 s else 2 s, 4 s, and ignores
 * `x-should-retry`; LangChain retries anything but 400-407/409/413 up to six times with 1-64 s back-off
 * and ignores `x-should-retry`, but a 429 with Retry-After over 60 s ends it at once.
 *
 * LangChain's six retries of a 408, a 503 or a 502 sleep 63-126 s of back-off (p-retry: 1-2 s, doubling,
 * Retry-After ignored but on a 429), longer than a test may run: those cases skip only that sleep
 * (`skipLangChainBackoff`), record the delays it asked for, and assert them. (README: give it
 * `maxRetries` for requests to a queue.)
 */
import { afterEach, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { generateText } from 'ai';
import { createOpenAI } from '@ai-sdk/openai';
import { ChatOpenAI } from '@langchain/openai';
import type { TriageConfig } from '../src/core/config-types.js';
import type { QueueEvent } from '../src/events.js';
import { FakeClock } from '../src/core/clock.js';
import { startGateway, waitFor, type RunningGateway } from './support/gateway.js';
import { testConfig, type TestDeployment } from './support/test-config.js';

const MODEL = 'm';
let running: RunningGateway[] = [];
afterEach(async () => {
  await Promise.all(running.map((g) => g.stop()));
  running = [];
});

type ClientName = 'openai' | 'ai-sdk' | 'langchain';

interface Setup {
  g: RunningGateway;
  events: QueueEvent[];
  /** Requests the client sent to the gateway. */
  requests: number[];
  /** Called as each request leaves the client (1-based), before it is sent. */
  onRequest?: (n: number) => void;
}

async function setup(deployments: TestDeployment[], router: Partial<TriageConfig['router']>, clock?: FakeClock): Promise<Setup> {
  const g = await startGateway(testConfig({ [MODEL]: deployments }, router), clock ? { clock } : {});
  running.push(g);
  const events: QueueEvent[] = [];
  g.gateway.router.events.subscribe((e) => events.push(e));
  return { g, events, requests: [] };
}

/** The client's fetch: counts each request, then sends it. */
function countingFetch(s: Setup): typeof fetch {
  return (input, init) => {
    s.requests.push(Date.now());
    s.onRequest?.(s.requests.length);
    return fetch(input, init);
  };
}

/** One chat completion through `client` on its default settings; resolves with how it ended and how long it took. */
async function call(client: ClientName, s: Setup): Promise<{ ok: boolean; ms: number; status?: number }> {
  const started = Date.now();
  const fetchFn = countingFetch(s);
  try {
    if (client === 'openai') {
      await new OpenAI({ apiKey: 'sk-none', baseURL: s.g.url, fetch: fetchFn }).chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] });
    } else if (client === 'ai-sdk') {
      await generateText({ model: createOpenAI({ apiKey: 'sk-none', baseURL: s.g.url, fetch: fetchFn }).chat(MODEL), prompt: 'hi' });
    } else {
      await new ChatOpenAI({ model: MODEL, apiKey: 'sk-none', configuration: { baseURL: s.g.url, fetch: fetchFn } }).invoke('hi');
    }
    return { ok: true, ms: Date.now() - started };
  } catch (e) {
    const err = e as { status?: number; statusCode?: number; lastError?: { statusCode?: number } };
    return { ok: false, ms: Date.now() - started, status: err.status ?? err.statusCode ?? err.lastError?.statusCode };
  }
}

const dispatches = (events: QueueEvent[]) => events.filter((e) => e.type === 'request.dispatched').length;

/**
 * LangChain's back-off, skipped: @langchain/core's p-retry sleeps between attempts with the global
 * setTimeout. While installed, a setTimeout called directly from that file fires at once and its delay is
 * recorded (the back-off the real LangChain would have waited); every other timer, the gateway's queue
 * timeouts among them, keeps real time. (Vitest's fake timers cannot be limited to one caller: they would
 * also move the in-process gateway's timers.)
 */
function skipLangChainBackoff(): { delays: number[]; restore(): void } {
  const realSetTimeout = globalThis.setTimeout;
  const delays: number[] = [];
  const fromPRetry = /@langchain[\\/]core[\\/]dist[\\/]utils[\\/]p-retry[\\/]/;
  globalThis.setTimeout = ((fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) => {
    // Frame 0 is "Error", 1 this wrapper, 2 the caller.
    const caller = new Error().stack?.split('\n')[2] ?? '';
    if (!fromPRetry.test(caller)) return realSetTimeout(fn, ms, ...args);
    delays.push(ms ?? 0);
    return realSetTimeout(fn, 0, ...args);
  }) as typeof setTimeout;
  return { delays, restore: () => void (globalThis.setTimeout = realSetTimeout) };
}

let backoff: ReturnType<typeof skipLangChainBackoff> | undefined;
afterEach(() => {
  backoff?.restore();
  backoff = undefined;
});

/** LangChain's default call, its back-off skipped: how it ended, and the delays it slept between attempts. */
async function callLangChainSkippingBackoff(s: Setup): Promise<{ ok: boolean; ms: number; status?: number; delays: number[] }> {
  backoff = skipLangChainBackoff();
  try {
    const r = await call('langchain', s);
    return { ...r, delays: backoff.delays };
  } finally {
    backoff.restore();
  }
}

/**
 * p-retry's default schedule as LangChain configures it (minTimeout 1 s, factor 2, randomize): the k-th
 * retry waits round(r * 1 s * 2^(k-1)) with r in [1, 2); six retries, 63-126 s in all.
 */
function expectLangChainDefaultBackoff(delays: number[]): void {
  expect(delays).toHaveLength(6);
  delays.forEach((d, k) => {
    expect(d).toBeGreaterThanOrEqual(1_000 * 2 ** k);
    expect(d).toBeLessThanOrEqual(2_000 * 2 ** k);
  });
  const total = delays.reduce((a, b) => a + b, 0);
  expect(total).toBeGreaterThanOrEqual(63_000);
  expect(total).toBeLessThanOrEqual(126_000);
}

describe('408 queue timeout (x-should-retry: false)', () => {
  // One slot, held by a call that lasts minutes: a waiter can only time out (max_parallel_requests is
  // never a certain bound, so it waits for its deadline: 300 ms).
  async function blocked(): Promise<Setup> {
    const s = await setup([{ maxParallelRequests: 1, mockDelayMs: 600_000 }], { queueTimeoutMs: 300 });
    void s.g.gateway.router.scheduleCompletion({ model: MODEL, messages: [{ role: 'user', content: 'blocker' }] }).catch(() => {});
    await waitFor(() => (s.events.some((e) => e.type === 'request.dispatched') ? true : undefined), 'the blocker dispatched');
    return s;
  }

  it('openai: one request, answered at the deadline', async () => {
    const s = await blocked();
    const r = await call('openai', s);
    expect(r).toMatchObject({ ok: false, status: 408 });
    expect(s.requests).toHaveLength(1);
    expect(r.ms).toBeLessThan(5_000);
  });

  it('AI SDK: ignores the header, three requests over its 2 s + 4 s back-off', async () => {
    const s = await blocked();
    const r = await call('ai-sdk', s);
    expect(r.ok).toBe(false);
    expect(s.requests).toHaveLength(3);
    expect(r.ms).toBeGreaterThanOrEqual(6_000);
    expect(r.ms).toBeLessThan(20_000);
    // Nothing reached the upstream but the blocker.
    expect(dispatches(s.events)).toBe(1);
  });

  it('LangChain: ignores the header, seven requests over 63-126 s of back-off', async () => {
    const s = await blocked();
    const r = await callLangChainSkippingBackoff(s);
    expect(r).toMatchObject({ ok: false, status: 408 });
    // 408 is not in LangChain's no-retry list (400-407, 409, 413), and x-should-retry is not read.
    expect(s.requests).toHaveLength(7);
    expectLangChainDefaultBackoff(r.delays);
    // Seven queue timeouts of 300 ms in real time; the back-off was skipped.
    expect(r.ms).toBeGreaterThanOrEqual(7 * 300);
    expect(r.ms).toBeLessThan(30_000);
    expect(dispatches(s.events)).toBe(1);
  });
});

describe('429 queue_full, with an honest Retry-After', () => {
  // rpm 2, both grants made at t0, one waiter, max_queue_size 1: a newcomer could be granted when the two
  // lanes reopen at t0 + 60 s. At t0 + 58 s that is Retry-After: 2. The clock moves on (2 s) when the
  // client comes back, as it would have by then.
  async function full(): Promise<{ s: Setup; clock: FakeClock }> {
    const clock = new FakeClock(Date.now());
    const s = await setup([{ rpm: 2 }], { maxQueueSize: 1 }, clock);
    const router = s.g.gateway.router;
    for (let i = 0; i < 2; i++) await router.scheduleCompletion({ model: MODEL, messages: [{ role: 'user', content: 'x' }] });
    void router.scheduleCompletion({ model: MODEL, messages: [{ role: 'user', content: 'waiter' }] }).catch(() => {});
    await waitFor(async () => ((await router.queueStatus())[0].waiting === 1 ? true : undefined), 'one waiter');
    clock.advance(58_000);
    s.onRequest = (n) => {
      if (n === 2) clock.advance(2_000);
    };
    return { s, clock };
  }

  it.each<ClientName>(['openai', 'ai-sdk', 'langchain'])('%s: comes back once, after the Retry-After, and is served', async (client) => {
    const { s } = await full();
    const r = await call(client, s);
    expect(r.ok).toBe(true);
    expect(s.requests).toHaveLength(2);
    // openai and the AI SDK slept the Retry-After (2 s); LangChain its own 1-2 s back-off.
    expect(s.requests[1] - s.requests[0]).toBeGreaterThanOrEqual(client === 'langchain' ? 1_000 : 2_000);
    expect(r.ms).toBeLessThan(10_000);
    // The two first grants, the waiter, and this one: one upstream call each.
    expect(dispatches(s.events)).toBe(4);
  });

  it('LangChain gives up at once when the honest Retry-After is over a minute', async () => {
    // No time passes: behind the waiter, the newcomer's turn is at t0 + 60 s (the second lane cycle would be t0 + 120 s).
    const clock = new FakeClock(Date.now());
    const s = await setup([{ rpm: 1 }], { maxQueueSize: 1 }, clock);
    const router = s.g.gateway.router;
    await router.scheduleCompletion({ model: MODEL, messages: [{ role: 'user', content: 'x' }] });
    void router.scheduleCompletion({ model: MODEL, messages: [{ role: 'user', content: 'waiter' }] }).catch(() => {});
    await waitFor(async () => ((await router.queueStatus())[0].waiting === 1 ? true : undefined), 'one waiter');
    const r = await call('langchain', s);
    expect(r.ok).toBe(false);
    expect(s.requests).toHaveLength(1);
    expect(r.ms).toBeLessThan(5_000);
  });
});

describe('429 queue_timeout_certain', () => {
  // rpm 1, its grant at t0, a 2 s queue timeout: at t0 + 57 s the window reopens in 3 s, past the
  // deadline: answered at once with Retry-After: 3. The clock moves on 3 s when the client comes back.
  it.each<ClientName>(['openai', 'ai-sdk', 'langchain'])('%s: comes back once, after the Retry-After, and is served', async (client) => {
    const clock = new FakeClock(Date.now());
    const s = await setup([{ rpm: 1 }], { queueTimeoutMs: 2_000 }, clock);
    await s.g.gateway.router.scheduleCompletion({ model: MODEL, messages: [{ role: 'user', content: 'x' }] });
    clock.advance(57_000);
    s.onRequest = (n) => {
      if (n === 2) clock.advance(3_000);
    };
    const r = await call(client, s);
    expect(r.ok).toBe(true);
    expect(s.requests).toHaveLength(2);
    expect(s.requests[1] - s.requests[0]).toBeGreaterThanOrEqual(client === 'langchain' ? 1_000 : 3_000);
    expect(r.ms).toBeLessThan(10_000);
    expect(s.events.filter((e) => e.type === 'request.rejected' && e.code === 'queue_timeout_certain')).toHaveLength(1);
    expect(dispatches(s.events)).toBe(2);
  });
});

describe('503 shutting_down (Retry-After: 1, Connection: close)', () => {
  it.each<ClientName>(['openai', 'ai-sdk'])('%s: three requests a second apart, then gives up', async (client) => {
    const s = await setup([{}], {});
    s.g.gateway.startDraining();
    const r = await call(client, s);
    expect(r.ok).toBe(false);
    expect(s.requests).toHaveLength(3);
    expect(s.requests[1] - s.requests[0]).toBeGreaterThanOrEqual(1_000);
    expect(r.ms).toBeGreaterThanOrEqual(2_000);
    expect(r.ms).toBeLessThan(10_000);
    expect(dispatches(s.events)).toBe(0);
  });

  it('LangChain: seven requests, its own back-off of 63-126 s instead of the Retry-After: 1', async () => {
    const s = await setup([{}], {});
    s.g.gateway.startDraining();
    const r = await callLangChainSkippingBackoff(s);
    expect(r).toMatchObject({ ok: false, status: 503 });
    expect(s.requests).toHaveLength(7);
    // LangChain reads Retry-After on a 429 only.
    expectLangChainDefaultBackoff(r.delays);
    expect(r.ms).toBeLessThan(30_000);
    expect(dispatches(s.events)).toBe(0);
  });
});

describe('an upstream that always fails (502 after the gateway retried, x-should-retry: false)', () => {
  const failing = () => setup([{ mockResponse: 'litellm.InternalServerError' }], { numRetries: 1, allowedFails: 1_000, cooldownTimeMs: 0 });

  it('openai: one request, num_retries + 1 upstream calls', async () => {
    const s = await failing();
    const r = await call('openai', s);
    expect(r).toMatchObject({ ok: false, status: 502 });
    expect(s.requests).toHaveLength(1);
    expect(dispatches(s.events)).toBe(2);
    expect(r.ms).toBeLessThan(5_000);
  });

  it('AI SDK: ignores the header: three requests, each with num_retries + 1 upstream calls', async () => {
    const s = await failing();
    const r = await call('ai-sdk', s);
    expect(r.ok).toBe(false);
    expect(s.requests).toHaveLength(3);
    expect(dispatches(s.events)).toBe(6);
    expect(r.ms).toBeGreaterThanOrEqual(6_000);
    expect(r.ms).toBeLessThan(20_000);
  });

  it('LangChain: ignores the header: seven requests, each with num_retries + 1 upstream calls, over 63-126 s of back-off', async () => {
    const s = await failing();
    const r = await callLangChainSkippingBackoff(s);
    expect(r).toMatchObject({ ok: false, status: 502 });
    expect(s.requests).toHaveLength(7);
    expect(dispatches(s.events)).toBe(14);
    expectLangChainDefaultBackoff(r.delays);
    expect(r.ms).toBeLessThan(30_000);
  });
});
