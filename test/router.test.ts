/**
 * The Router API (Triage embedded in a program, LiteLLM's schedule_acompletion) on fake time.
 */
import { describe, it, expect, afterEach, vi } from 'vitest';
import { parseConfig } from '../src/adapters/config-loader.js';
import type { RouterSettings, TriageConfig } from '../src/core/config-types.js';
import type { ChatCompletion, ChatCompletionChunk } from '../src/core/openai-types.js';
import { TriageError } from '../src/errors.js';
import type { QueueEvent } from '../src/events.js';
import { FakeClock } from '../src/core/clock.js';
import { createRouter, type CompletionParams, type Router, type RouterOptions } from '../src/router.js';
import { testConfig, type TestDeployment } from './support/test-config.js';
import { settle, step } from './support/fake-time.js';
import { ControlledUpstream } from './support/controlled-upstream.js';

const msg = (content = 'hi') => [{ role: 'user', content }];

const routers: Router[] = [];
afterEach(async () => {
  for (const r of routers.splice(0)) await r.close(0);
});

function make(c: TriageConfig, options: RouterOptions = {}): { router: Router; clock: FakeClock; events: QueueEvent[] } {
  const clock = (options.clock as FakeClock | undefined) ?? new FakeClock();
  const router = createRouter(c, { ...options, clock });
  routers.push(router);
  const events: QueueEvent[] = [];
  router.events.subscribe((e) => events.push(e));
  return { router, clock, events };
}

function simple(deployments: TestDeployment[], settings: Partial<RouterSettings> = {}) {
  return make(testConfig({ m: deployments }, settings));
}

interface Outcome<T = ChatCompletion> {
  ok?: T;
  error?: TriageError;
}

function track<T>(p: Promise<T>): Outcome<T> {
  const o: Outcome<T> = {};
  p.then(
    (v) => (o.ok = v),
    (e: TriageError) => (o.error = e),
  );
  return o;
}

/** The error a rejected promise carries (fails the test if it resolves). */
async function errorOf(p: Promise<unknown>): Promise<TriageError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(TriageError);
    return e as TriageError;
  }
  throw new Error('expected a rejection');
}

const dispatchedIds = (events: QueueEvent[]) => events.filter((e) => e.type === 'request.dispatched').map((e) => e.id);

function controlled(deployments: TestDeployment[], settings: Partial<RouterSettings> = {}) {
  const upstream = new ControlledUpstream();
  const c = testConfig({ m: deployments }, settings);
  for (const d of c.modelGroups[0].deployments) delete d.mockResponse;
  return { upstream, ...make(c, { upstreamFactory: () => upstream }) };
}

// ------------------------------------------------------------------------------------------------

describe('scheduleCompletion', () => {
  const yaml = `
model_list:
  - model_name: gpt-mock
    litellm_params:
      model: openai/gpt-4o-mini
      mock_response: "Hello from the mock, streamed word by word."
      rpm: 60
router_settings:
  default_priority: 5
`;

  it('returns an OpenAI-shaped chat completion (LiteLLM config, mock_response)', async () => {
    const { config, warnings } = parseConfig(yaml, { env: {} });
    expect(warnings).toEqual([]);
    const { router, clock } = make(config);
    const completion = await router.scheduleCompletion({ model: 'gpt-mock', messages: msg('Hello?'), priority: 0 });
    expect(completion.id).toMatch(/^chatcmpl-[A-Za-z0-9]+$/);
    expect(completion.object).toBe('chat.completion');
    expect(completion.created).toBe(Math.floor(clock.now() / 1000));
    expect(completion.model).toBe('gpt-4o-mini');
    expect(completion.choices).toEqual([
      { index: 0, finish_reason: 'stop', message: { role: 'assistant', content: 'Hello from the mock, streamed word by word.' } },
    ]);
    expect(completion.usage).toEqual({
      prompt_tokens: expect.any(Number),
      completion_tokens: expect.any(Number),
      total_tokens: completion.usage!.prompt_tokens + completion.usage!.completion_tokens,
    });
    expect(completion.usage!.prompt_tokens).toBeGreaterThan(0);
  });

  it('stream: true yields chat.completion.chunk objects; the content reassembles and usage comes last, in a chunk with no choices, when asked for', async () => {
    const { config } = parseConfig(yaml, { env: {} });
    const { router } = make(config);
    const stream = await router.scheduleCompletion({ model: 'gpt-mock', messages: msg(), stream: true, stream_options: { include_usage: true } });
    const chunks: ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.length).toBeGreaterThan(3);
    for (const c of chunks) {
      expect(c.object).toBe('chat.completion.chunk');
      expect(c.id).toBe(chunks[0].id);
      expect(c.id).toMatch(/^chatcmpl-/);
    }
    expect(chunks[0].choices[0].delta.role).toBe('assistant');
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Hello from the mock, streamed word by word.');
    const last = chunks.at(-1)!;
    expect(chunks.at(-2)!.choices[0].finish_reason).toBe('stop');
    expect(last.choices).toEqual([]);
    expect(last.usage).toMatchObject({ prompt_tokens: expect.any(Number), completion_tokens: expect.any(Number), total_tokens: expect.any(Number) });
    expect(chunks.slice(0, -1).every((c) => c.usage === undefined)).toBe(true);
    // Not asked for: no usage chunk at all (the gateway still reconciles tpm with it).
    const plain: ChatCompletionChunk[] = [];
    for await (const chunk of await router.scheduleCompletion({ model: 'gpt-mock', messages: msg(), stream: true })) plain.push(chunk);
    expect(plain.at(-1)!.choices[0].finish_reason).toBe('stop');
    expect(plain.every((c) => c.usage === undefined)).toBe(true);
  });

  it('schedule() reports what the queue did (deployment, priority, wait, attempts)', async () => {
    const { router, clock } = simple([{ id: 'only', rpm: 1 }], { defaultPriority: 3 });
    await router.scheduleCompletion({ model: 'm', messages: msg() });
    const pending = track(router.schedule({ model: 'm', messages: msg() }));
    await settle();
    await step(clock);
    expect(pending.ok).toMatchObject({ kind: 'completion', meta: { model: 'm', priority: 3, deployment: 'only', waitedMs: 60_000, attempts: 1 } });
  });

  it('forwards OpenAI fields upstream but not Triage fields', async () => {
    const { router, upstream } = controlled([{ id: 'd' }]);
    const abort = new AbortController();
    const p = track(router.scheduleCompletion({ model: 'm', messages: msg(), priority: 2, timeout: 30, tenant: 'team', signal: abort.signal, temperature: 0.2, max_tokens: 64 }));
    await settle();
    expect(upstream.calls[0].call.body).toEqual({ model: 'm', messages: msg(), temperature: 0.2, max_tokens: 64 });
    upstream.calls[0].release();
    await settle();
    expect(p.ok?.choices[0].message.content).toBe('done');
  });
});

describe('cancellation', () => {
  it('breaking out of a stream cancels the request and releases its slot', async () => {
    const { router, upstream, events } = controlled([{ id: 'd', maxParallelRequests: 1 }]);
    const stream = await router.scheduleCompletion({ model: 'm', messages: msg('streamer'), stream: true });
    const next = track(router.scheduleCompletion({ model: 'm', messages: msg('next') }));
    await settle();
    expect((await router.queueStatus())[0]).toMatchObject({ waiting: 1, inFlight: 1 });
    for await (const chunk of stream) {
      expect(chunk.choices[0].delta.content).toBe('first ');
      break;
    }
    await settle();
    expect(upstream.calls[0].call.signal.aborted).toBe(true);
    expect(events.find((e) => e.type === 'request.cancelled')).toMatchObject({ stage: 'dispatched' });
    // The freed slot went to the next waiter.
    expect(upstream.calls).toHaveLength(2);
    expect(upstream.calls[1].call.body.messages[0].content).toBe('next');
    upstream.calls[1].release();
    await settle();
    expect(next.ok).toBeDefined();
    expect((await router.queueStatus())[0]).toMatchObject({ waiting: 0, inFlight: 0 });
  });

  it('a stream read to the end completes the request normally', async () => {
    const { router, upstream, events } = controlled([{ id: 'd' }]);
    const stream = await router.scheduleCompletion({ model: 'm', messages: msg(), stream: true });
    const parts: string[] = [];
    const reading = (async () => {
      for await (const c of stream) parts.push(c.choices[0].delta.content ?? '');
    })();
    await settle();
    upstream.calls[0].release();
    await reading;
    expect(parts.join('')).toBe('first second');
    expect(events.some((e) => e.type === 'request.done')).toBe(true);
  });

  it('an AbortSignal cancels a waiting request: its queue entry goes at once, error client_closed 499', async () => {
    const { router, upstream } = controlled([{ id: 'd', maxParallelRequests: 1 }]);
    track(router.scheduleCompletion({ model: 'm', messages: msg('holder') }));
    const abort = new AbortController();
    const waiting = track(router.schedule({ model: 'm', messages: msg('waiter'), signal: abort.signal }));
    await settle();
    expect((await router.queueStatus())[0].waiting).toBe(1);
    abort.abort();
    await settle();
    expect(waiting.error).toMatchObject({ code: 'client_closed', status: 499 });
    const [status] = await router.queueStatus();
    expect(status).toMatchObject({ waiting: 0, inFlight: 1, depthByPriority: {} });
    // The cancelled request never reaches the upstream: once the slot frees, it goes to a request sent
    // after the cancelled one (which, still in line, would have come first).
    upstream.calls[0].release();
    const after = router.scheduleCompletion({ model: 'm', messages: msg('after') });
    await vi.waitFor(() => expect(upstream.calls).toHaveLength(2));
    expect(upstream.calls.map((c) => c.call.body.messages[0].content)).toEqual(['holder', 'after']);
    upstream.calls[1].release();
    await after;
    expect(router.liveRequests).toBe(0);
  });

  it('an AbortSignal cancels a dispatched request: the call is aborted and the slot released', async () => {
    const { router, upstream } = controlled([{ id: 'd', maxParallelRequests: 1 }]);
    const abort = new AbortController();
    const first = track(router.scheduleCompletion({ model: 'm', messages: msg('first'), signal: abort.signal }));
    const second = track(router.scheduleCompletion({ model: 'm', messages: msg('second') }));
    await settle();
    expect((await router.queueStatus())[0]).toMatchObject({ waiting: 1, inFlight: 1 });
    abort.abort();
    await settle();
    expect(first.error).toMatchObject({ code: 'client_closed', status: 499 });
    expect(upstream.calls[0].call.signal.aborted).toBe(true);
    expect(upstream.calls[1].call.body.messages[0].content).toBe('second');
    expect((await router.queueStatus())[0]).toMatchObject({ waiting: 0, inFlight: 1 });
    upstream.calls[1].release();
    await settle();
    expect(second.ok).toBeDefined();
    expect((await router.queueStatus())[0]).toMatchObject({ waiting: 0, inFlight: 0 });
  });

  it('an already aborted signal is refused at once', async () => {
    const { router } = simple([{}]);
    const abort = new AbortController();
    abort.abort();
    expect(await errorOf(router.scheduleCompletion({ model: 'm', messages: msg(), signal: abort.signal }))).toMatchObject({ code: 'client_closed' });
    expect(router.liveRequests).toBe(0);
    expect((await router.queueStatus())[0].waiting).toBe(0);
  });
});

describe('priorities', () => {
  /** One rpm slot, used up, so the requests under test all wait and are served one per window. */
  async function blocked(settings: Partial<RouterSettings>) {
    const made = simple([{ id: 'd', rpm: 1 }], { queueTimeoutMs: 3_600_000, ...settings });
    await made.router.scheduleCompletion({ model: 'm', messages: msg('warm') });
    return made;
  }

  async function serveAll(router: Router, clock: FakeClock, events: QueueEvent[], n: number) {
    await settle();
    for (let i = 0; i < 10 * n && dispatchedIds(events).length < n + 1; i++) await step(clock);
  }

  it('a missing priority takes default_priority', async () => {
    const { router, events } = simple([{}], { defaultPriority: 7 });
    const result = await router.schedule({ model: 'm', messages: msg() });
    expect(result.meta.priority).toBe(7);
    expect(events.find((e) => e.type === 'request.queued')).toMatchObject({ priority: 7 });
  });

  it('priority 0 is a real priority: served before 1, and distinct from a missing priority', async () => {
    const { router, clock, events } = await blocked({ defaultPriority: 5 });
    const ids: Record<string, string> = {};
    const order = ['missing', 'p1', 'p0', 'p3'] as const;
    const prio: Record<string, number | undefined> = { missing: undefined, p1: 1, p0: 0, p3: 3 };
    const results = order.map((name) => track(router.schedule({ model: 'm', messages: msg(name), priority: prio[name] })));
    await settle();
    for (const e of events) if (e.type === 'request.queued') ids[e.id] = order[e.arrivalSeq - 2];
    const [status] = await router.queueStatus();
    expect(status.depthByPriority).toEqual({ '0': 1, '1': 1, '3': 1, '5': 1 });
    await serveAll(router, clock, events, 4);
    expect(dispatchedIds(events).slice(1).map((id) => ids[id])).toEqual(['p0', 'p1', 'p3', 'missing']);
    expect(results.map((r) => r.ok?.meta.priority)).toEqual([5, 1, 0, 3]);
  });

  it.each([
    ['a string', 'high'],
    ['a fraction', 1.5],
    ['negative', -1],
    ['above max_priority', 11],
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['a boolean', true],
    ['an object', { level: 1 }],
  ])('an invalid priority (%s) → invalid_priority 400 with param "priority"', async (_, priority) => {
    const { router } = simple([{}], { maxPriority: 10 });
    const e = await errorOf(router.scheduleCompletion({ model: 'm', messages: msg(), priority: priority as number }));
    expect(e).toMatchObject({ code: 'invalid_priority', status: 400, param: 'priority', type: 'invalid_request_error' });
    expect(e.toJSON().error.param).toBe('priority');
    expect(router.liveRequests).toBe(0);
  });

  it('the configured range bounds are valid priorities', async () => {
    const { router } = simple([{}], { minPriority: 2, maxPriority: 10, defaultPriority: 4 });
    expect((await router.schedule({ model: 'm', messages: msg(), priority: 2 })).meta.priority).toBe(2);
    expect((await router.schedule({ model: 'm', messages: msg(), priority: 10 })).meta.priority).toBe(10);
    expect((await errorOf(router.schedule({ model: 'm', messages: msg(), priority: 1 }))).code).toBe('invalid_priority');
    // null is "not given", as JSON clients send it.
    expect((await router.schedule({ model: 'm', messages: msg(), priority: null as unknown as number })).meta.priority).toBe(4);
  });

  it('equal priorities are served first come, first served (ties are FIFO, not random)', async () => {
    const { router, clock, events } = await blocked({});
    const names = Array.from({ length: 12 }, (_, i) => `r${i}`);
    const idToName = new Map<string, string>();
    for (const name of names) track(router.scheduleCompletion({ model: 'm', messages: msg(name), priority: 2 }));
    await settle();
    for (const e of events) if (e.type === 'request.queued') idToName.set(e.id, names[e.arrivalSeq - 2]);
    await serveAll(router, clock, events, names.length);
    expect(dispatchedIds(events).slice(1).map((id) => idToName.get(id))).toEqual(names);
  });

  it('tenants at equal priority are served round-robin', async () => {
    const { router, clock, events } = await blocked({});
    const plan = ['A', 'A', 'A', 'A', 'B', 'C'];
    const byId = new Map<string, string>();
    for (const tenant of plan) track(router.scheduleCompletion({ model: 'm', messages: msg(), priority: 1, tenant }));
    await settle();
    for (const e of events) if (e.type === 'request.queued') byId.set(e.id, e.tenant);
    await serveAll(router, clock, events, plan.length);
    expect(dispatchedIds(events).slice(1).map((id) => byId.get(id))).toEqual(['A', 'B', 'C', 'A', 'A', 'A']);
  });
});

describe('errors', () => {
  it('an unknown model → model_not_found 404', async () => {
    const { router } = simple([{}]);
    const e = await errorOf(router.scheduleCompletion({ model: 'gpt-nope', messages: msg() }));
    expect(e).toMatchObject({ code: 'model_not_found', status: 404, param: 'model' });
    expect(e.message).toContain('gpt-nope');
  });

  it('malformed requests → invalid_request 400 naming the field', async () => {
    const { router } = simple([{}]);
    const cases: [Partial<CompletionParams>, string][] = [
      [{ model: 'm', messages: [] }, 'messages'],
      [{ model: 'm', messages: [null as never] }, 'messages[0]'],
      [{ model: 'm', messages: msg(), timeout: -1 }, 'timeout'],
      [{ model: 'm', messages: msg(), max_tokens: 0 }, 'max_tokens'],
      [{ model: 'm', messages: msg(), stream: 'yes' as never }, 'stream'],
      [{ model: 42 as never, messages: msg() }, 'model'],
    ];
    for (const [params, param] of cases) {
      const e = await errorOf(router.scheduleCompletion(params as CompletionParams));
      expect(e).toMatchObject({ code: 'invalid_request', status: 400, param });
    }
  });

  it('a full queue → queue_full 429 with a Retry-After computed from the queue and the rpm limits', async () => {
    async function fullQueueError(rpm: number, depth: number): Promise<TriageError> {
      const { router } = simple([{ rpm }], { maxQueueSize: depth });
      // The first `rpm` go through at once (in batches: waiters are counted until the pump grants
      // them, so one synchronous burst larger than max_queue_size would be refused); the next `depth`
      // fill the queue.
      for (let i = 0; i < rpm; i++) {
        track(router.scheduleCompletion({ model: 'm', messages: msg() }));
        if (i % depth === depth - 1) await settle();
      }
      await settle();
      for (let i = 0; i < depth; i++) track(router.scheduleCompletion({ model: 'm', messages: msg() }));
      await settle();
      expect((await router.queueStatus())[0].waiting).toBe(depth);
      return errorOf(router.scheduleCompletion({ model: 'm', messages: msg() }));
    }
    const slow = await fullQueueError(2, 10);
    const fast = await fullQueueError(120, 10);
    const deep = await fullQueueError(2, 40);
    for (const e of [slow, fast, deep]) {
      expect(e).toMatchObject({ code: 'queue_full', status: 429, type: 'rate_limit_error' });
      expect(e.retryAfterSeconds).toBeGreaterThanOrEqual(1);
      expect(Number.isInteger(e.retryAfterSeconds)).toBe(true);
    }
    // When a newcomer could be granted: behind 10 waiters at 2/min, the window reopens at 60 s and
    // grants 2 per minute after: the 11th at 60 + 5 × 60 = 360 s; at 120/min all 11 fit when the window
    // reopens at 60 s. Behind 40 at 2/min it would be 60 + 20 × 60 = 1260 s, but their deadlines (the
    // 600 s default timeout) pass first: a newcomer then finds nobody ahead, at 600 s. Not a constant.
    expect(slow.retryAfterSeconds).toBe(360);
    expect(fast.retryAfterSeconds).toBe(60);
    expect(deep.retryAfterSeconds).toBe(600);
  });

  it('the rejected request is reported with its Retry-After in the events', async () => {
    const { router, events } = simple([{ rpm: 1 }], { maxQueueSize: 1 });
    for (let i = 0; i < 3; i++) track(router.scheduleCompletion({ model: 'm', messages: msg() }));
    await settle();
    expect(events.find((e) => e.type === 'request.rejected')).toMatchObject({ code: 'queue_full', retryAfterSeconds: 120 });
  });

  it('router.close() answers waiting requests with shutting_down 503 and refuses new ones', async () => {
    const { router, clock } = simple([{ rpm: 1 }]);
    await router.scheduleCompletion({ model: 'm', messages: msg() });
    const waiting = Array.from({ length: 5 }, () => track(router.scheduleCompletion({ model: 'm', messages: msg() })));
    await settle();
    expect((await router.queueStatus())[0].waiting).toBe(5);
    expect(clock.pendingTimers).toBeGreaterThan(0);
    await router.close(0);
    await settle();
    for (const w of waiting) expect(w.error).toMatchObject({ code: 'shutting_down', status: 503 });
    expect(router.liveRequests).toBe(0);
    expect(await errorOf(router.scheduleCompletion({ model: 'm', messages: msg() }))).toMatchObject({ code: 'shutting_down' });
    // Nothing is dispatched afterwards, whatever the clock does: no timer is left on the router clock
    // (the group's wake-up at the window's end went with the queue).
    expect(clock.pendingTimers).toBe(0);
  });

  it('close() lets dispatched calls finish within the grace period', async () => {
    const { router, upstream } = controlled([{ id: 'd', maxParallelRequests: 1 }]);
    const running = track(router.scheduleCompletion({ model: 'm', messages: msg('running') }));
    const waiting = track(router.scheduleCompletion({ model: 'm', messages: msg('waiting') }));
    await settle();
    const closing = router.close(60_000);
    await settle();
    expect(waiting.error?.code).toBe('shutting_down');
    expect(running.ok).toBeUndefined();
    upstream.calls[0].release();
    await closing;
    expect(running.ok?.choices[0].message.content).toBe('done');
    expect(upstream.calls).toHaveLength(1);
  });

  it('close() cancels the calls still running when the grace period ends, on the router clock', async () => {
    const { router, upstream, clock } = controlled([{ id: 'd', maxParallelRequests: 1 }]);
    const running = track(router.scheduleCompletion({ model: 'm', messages: msg('running') }));
    await settle();
    let closed = false;
    const closing = router.close(30_000).then(() => (closed = true));
    clock.advance(29_999);
    await settle();
    expect(closed).toBe(false);
    expect(running.ok ?? running.error).toBeUndefined();
    expect(upstream.calls[0].call.signal.aborted).toBe(false);
    clock.advance(1);
    await closing;
    expect(upstream.calls[0].call.signal.aborted).toBe(true);
    expect(running.error).toMatchObject({ code: 'shutting_down', status: 503 });
    expect(router.liveRequests).toBe(0);
  });
});

describe("LiteLLM's faults, which Triage must not have", () => {
  it('a single deployment at its rpm makes requests wait (not fail, not pass) and serves them when the window reopens', async () => {
    const { router, clock, events } = simple([{ id: 'd', rpm: 2 }]);
    const t0 = clock.now();
    const results = Array.from({ length: 5 }, (_, i) => track(router.scheduleCompletion({ model: 'm', messages: msg(`r${i}`) })));
    await settle();
    expect(results.map((r) => (r.ok ? 'done' : r.error ? 'error' : 'waiting'))).toEqual(['done', 'done', 'waiting', 'waiting', 'waiting']);
    // Still waiting just before the window reopens.
    clock.advance(59_999);
    await settle();
    expect(results.filter((r) => r.ok)).toHaveLength(2);
    expect(results.some((r) => r.error)).toBe(false);
    await step(clock);
    expect(clock.now()).toBe(t0 + 60_000);
    expect(results.filter((r) => r.ok)).toHaveLength(4);
    await step(clock);
    expect(clock.now()).toBe(t0 + 120_000);
    expect(results.every((r) => r.ok)).toBe(true);
    const at = events.filter((e) => e.type === 'request.dispatched').map((e) => e.at - t0);
    expect(at).toEqual([0, 0, 60_000, 60_000, 120_000]);
  });

  it('rpm is shared across deployments of a group; each deployment keeps its own window', async () => {
    const { router, clock, events } = simple([
      { id: 'a', rpm: 1 },
      { id: 'b', rpm: 1 },
    ]);
    const results = Array.from({ length: 3 }, () => track(router.scheduleCompletion({ model: 'm', messages: msg() })));
    await settle();
    expect(results.filter((r) => r.ok)).toHaveLength(2);
    expect(events.filter((e) => e.type === 'request.dispatched').map((e) => e.deployment).sort()).toEqual(['a', 'b']);
    await step(clock);
    expect(results.every((r) => r.ok)).toBe(true);
  });

  it('a timed-out request leaves the queue at its deadline: depth drops at once, error queue_timeout 408', async () => {
    // Held by max_parallel_requests, whose calls end at unknown times, the deadline is not certain to
    // pass, so the request waits (an rpm-bound wait would be answered 429 queue_timeout_certain at once).
    const { router, clock, events } = simple([{ maxParallelRequests: 1, mockDelayMs: 60_000 }]);
    const first = track(router.scheduleCompletion({ model: 'm', messages: msg() }));
    await settle();
    const t0 = clock.now();
    const short = track(router.scheduleCompletion({ model: 'm', messages: msg(), timeout: 5 }));
    const long = track(router.scheduleCompletion({ model: 'm', messages: msg(), timeout: 600 }));
    await settle();
    expect((await router.queueStatus())[0].waiting).toBe(2);
    // The group's one timer fires at the short request's deadline; nothing else is needed.
    expect(clock.nextTimerAt()).toBe(t0 + 5_000);
    await step(clock);
    expect(short.error).toBeInstanceOf(TriageError);
    expect(short.error).toMatchObject({ code: 'queue_timeout', status: 408, type: 'timeout_error' });
    expect(short.error!.message).not.toMatch(/auth/i);
    const [status] = await router.queueStatus();
    expect(status.waiting).toBe(1);
    expect(events.find((e) => e.type === 'request.timeout')).toMatchObject({ waitedMs: 5_000 });
    // The other one is still served when the first call ends.
    await step(clock);
    expect(first.ok).toBeDefined();
    await step(clock);
    expect(long.ok).toBeDefined();
    expect((await router.queueStatus())[0].waiting).toBe(0);
  });

  it('the router timeout setting is the default queue deadline', async () => {
    const { router, clock } = simple([{ maxParallelRequests: 1, mockDelayMs: 60_000 }], { queueTimeoutMs: 2_000 });
    track(router.scheduleCompletion({ model: 'm', messages: msg() }));
    await settle();
    const t0 = clock.now();
    const r = track(router.scheduleCompletion({ model: 'm', messages: msg() }));
    await settle();
    await step(clock);
    expect(clock.now()).toBe(t0 + 2_000);
    expect(r.error?.code).toBe('queue_timeout');
  });
});

describe('request actors', () => {
  it('share one actor system (not one each), apart from the schedulers, and end without an observer of their own', async () => {
    const { router, upstream, events } = controlled([{ maxParallelRequests: 2 }]);
    const a = track(router.scheduleCompletion({ model: 'm', messages: msg('a') }));
    const b = track(router.scheduleCompletion({ model: 'm', messages: msg('b') }));
    await settle();
    expect(upstream.calls).toHaveLength(2);
    const [idA, idB] = dispatchedIds(events);
    const actorA = router.requestActor(idA!)!;
    const actorB = router.requestActor(idB!)!;
    expect(actorA.system).toBe(actorB.system);
    expect(actorA.system).not.toBe(router.schedulerOf('m')!.system);
    // The actor's id is the request id: its end reaches the router through XState's done event.
    expect(actorA.id).toBe(idA);
    upstream.calls[0].release();
    upstream.calls[1].release();
    await settle();
    expect(a.ok?.choices[0].message.content).toBe('done');
    expect(b.ok?.choices[0].message.content).toBe('done');
    expect(router.liveRequests).toBe(0);
  });
});

describe('queue status and events', () => {
  it('queueStatus and positionOf describe the waiting requests', async () => {
    const { router, clock, events } = simple([{ id: 'd', rpm: 1 }]);
    await router.scheduleCompletion({ model: 'm', messages: msg() });
    track(router.scheduleCompletion({ model: 'm', messages: msg(), priority: 4 }));
    clock.advance(1_000);
    track(router.scheduleCompletion({ model: 'm', messages: msg(), priority: 1 }));
    await settle();
    clock.advance(500);
    const [status] = await router.queueStatus();
    expect(status).toMatchObject({ model: 'm', waiting: 2, inFlight: 0, depthByPriority: { '1': 1, '4': 1 }, oldestWaitMs: 1_500 });
    expect(status.deployments).toEqual([
      { id: 'd', inFlight: 0, maxParallelRequests: null, rpmUsed: 1, rpm: 1, tpmUsed: 0, tpm: null, coolingDownUntil: null, upstreamBlockedUntil: null, headroom: 0 },
    ]);
    expect(status.waiters.map((w) => [w.priority, w.position, w.waitedMs])).toEqual([
      [1, 0, 500],
      [4, 1, 1_500],
    ]);
    const queued = events.filter((e) => e.type === 'request.queued');
    expect(await router.positionOf(queued[1].id)).toBe(1);
    expect(await router.positionOf(queued[2].id)).toBe(0);
    expect(await router.positionOf(queued[0].id)).toBeNull();
    expect(await router.positionOf('nope')).toBeNull();
    expect(router.models).toEqual(['m']);
  });

  it('the events bus delivers request.queued → request.dispatched → request.done in order for a request', async () => {
    const { router, clock, events } = simple([{ id: 'd', mockDelayMs: 250 }]);
    const p = track(router.schedule({ model: 'm', messages: msg(), priority: 3, tenant: 'team-a' }));
    await settle();
    await step(clock);
    expect(p.ok).toBeDefined();
    const id = p.ok!.meta.requestId;
    const mine = events.filter((e) => 'id' in e && e.id === id);
    expect(mine.map((e) => e.type)).toEqual(['request.queued', 'request.dispatched', 'request.done']);
    expect(mine[0]).toMatchObject({ model: 'm', priority: 3, tenant: 'team-a', position: 0, arrivalSeq: 1, attempt: 0 });
    expect(mine[1]).toMatchObject({ deployment: 'd', waitedMs: 0 });
    expect(mine[2]).toMatchObject({ deployment: 'd', durationMs: 250, totalMs: 250, tokens: { total_tokens: expect.any(Number) } });
    // Stamped with increasing bus sequence numbers and the clock's time.
    expect(mine[0].seq).toBeLessThan(mine[1].seq);
    expect(mine[1].seq).toBeLessThan(mine[2].seq);
    expect(mine[2].at - mine[0].at).toBe(250);
  });

  it('an event subscriber that throws does not disturb the request', async () => {
    const { router } = simple([{}]);
    router.events.subscribe(() => {
      throw new Error('bad subscriber');
    });
    const c = await router.scheduleCompletion({ model: 'm', messages: msg() });
    expect(c.choices[0].message.content).toBe('ok');
  });
});
