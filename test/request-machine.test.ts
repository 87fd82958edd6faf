/**
 * The request statechart: each transition on a real actor (with a stub scheduler and an upstream the
 * test controls), then model-based paths from `xstate/graph` over the real machine, replayed both on
 * an actor and through the Router.
 */
import { describe, it, expect, afterEach } from 'vitest';
import { createActor, createEmptyActor, fromCallback, type Actor, type AnyActorRef } from 'xstate';
import { getShortestPaths, getSimplePaths, type StatePath } from 'xstate/graph';
import type { ChatCompletion, ChatCompletionChunk } from '../src/core/openai-types.js';
import { UpstreamError, type Upstream, type UpstreamCall } from '../src/core/upstream.js';
import { TriageError } from '../src/errors.js';
import { FakeClock } from '../src/core/clock.js';
import { requestMachine, type RequestEmitted, type RequestInput } from '../src/machines/request-machine.js';
import type { SchedulerEvent } from '../src/machines/scheduler-machine.js';
import type { Grant } from '../src/machines/scheduler-store.js';
import { createRouter, type Router } from '../src/router.js';
import { testConfig } from './support/test-config.js';
import { settle } from './support/fake-time.js';

const completion = (content = 'ok'): ChatCompletion => ({
  id: 'chatcmpl-x',
  object: 'chat.completion',
  created: 0,
  model: 'up',
  choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content } }],
  usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 },
});

/** An upstream whose calls end only when the test says so. */
class ControlledUpstream implements Upstream {
  readonly calls: { call: UpstreamCall; resolve: (c: ChatCompletion) => void; reject: (e: unknown) => void; settled: boolean }[] = [];

  complete(call: UpstreamCall): Promise<ChatCompletion> {
    return new Promise((resolve, reject) => {
      const entry = {
        call,
        settled: false,
        resolve: (c: ChatCompletion) => ((entry.settled = true), resolve(c)),
        reject: (e: unknown) => ((entry.settled = true), reject(e)),
      };
      call.signal.addEventListener('abort', () => entry.reject(call.signal.reason), { once: true });
      this.calls.push(entry);
    });
  }

  async *stream(call: UpstreamCall): AsyncIterable<ChatCompletionChunk> {
    const c = await this.complete(call);
    const chunk = (delta: { role?: string; content?: string }, finish: string | null): ChatCompletionChunk => ({
      id: c.id,
      object: 'chat.completion.chunk',
      created: 0,
      model: c.model,
      choices: [{ index: 0, finish_reason: finish, delta }],
    });
    yield chunk({ role: 'assistant', content: '' }, null);
    yield chunk({ content: c.choices[0].message.content ?? '' }, null);
    yield { ...chunk({}, 'stop'), usage: c.usage };
  }

  /** The newest call that has not ended (optionally: whose first message has this content). */
  pending(content?: string) {
    for (let i = this.calls.length - 1; i >= 0; i--) {
      const c = this.calls[i];
      if (!c.settled && (content === undefined || c.call.body.messages[0].content === content)) return c;
    }
    return undefined;
  }
}

/** A stand-in scheduler that records what the request actor sends it. */
function stubScheduler(): { ref: AnyActorRef; received: SchedulerEvent[] } {
  const received: SchedulerEvent[] = [];
  const ref = createActor(
    fromCallback<SchedulerEvent>(({ receive }) => {
      receive((e) => received.push(e));
    }),
  );
  ref.start();
  return { ref, received };
}

const grantFor = (id: string, at: number, seq = 1): Grant => ({
  grantId: `g-${id}-${at}`,
  requestId: id,
  deploymentId: 'd',
  tokens: 10,
  grantedAt: at,
  waitedMs: 0,
  priority: 3,
  seq,
});

interface Harness {
  actor: Actor<typeof requestMachine>;
  received: SchedulerEvent[];
  emitted: RequestEmitted[];
  upstream: ControlledUpstream;
  clock: FakeClock;
}

function startRequest(overrides: Partial<RequestInput> = {}): Harness {
  const clock = new FakeClock();
  const upstream = new ControlledUpstream();
  const { ref, received } = stubScheduler();
  const input: RequestInput = {
    id: 'r1',
    model: 'm',
    priority: 3,
    tenant: 'team-a',
    endpoint: 'chat',
    body: { model: 'm', messages: [{ role: 'user', content: 'hello' }] },
    stream: false,
    tokens: 10,
    queueTimeoutMs: 5_000,
    maxRetries: 1,
    scheduler: ref,
    clock,
    upstreamFor: () => ({ upstream, requestTimeoutMs: 30_000, upstreamModel: 'up' }),
    ...overrides,
  };
  const actor = createActor(requestMachine, { input, clock });
  const emitted: RequestEmitted[] = [];
  actor.on('*', (e) => emitted.push(e as RequestEmitted));
  actor.start();
  return { actor, received, emitted, upstream, clock };
}

const state = (h: Harness) => h.actor.getSnapshot().value;

describe('request machine transitions', () => {
  it('queued → polling → dispatched → done: enqueues, runs the call, releases ok with the real usage', async () => {
    const h = startRequest();
    expect(state(h)).toBe('queued');
    expect(h.received).toHaveLength(1);
    const enqueue = h.received[0];
    expect(enqueue).toMatchObject({
      type: 'enqueue',
      entry: { id: 'r1', priority: 3, tenant: 'team-a', enqueuedAt: 1_000_000, deadline: 1_005_000, tokens: 10 },
    });
    if (enqueue.type !== 'enqueue') throw new Error('unreachable');
    expect(enqueue.entry.seq).toBeUndefined();
    expect(enqueue.ref).toBe(h.actor);

    h.actor.send({ type: 'queue.accepted', seq: 17, round: 2, position: 4 });
    expect(state(h)).toBe('polling');
    expect(h.emitted).toEqual([
      { type: 'request.queued', id: 'r1', model: 'm', priority: 3, tenant: 'team-a', position: 4, arrivalSeq: 17, round: 2, etaMs: null, attempt: 0 },
    ]);

    h.clock.advance(250);
    h.actor.send({ type: 'grant', grant: { ...grantFor('r1', h.clock.now(), 17), waitedMs: 250 } });
    expect(state(h)).toBe('dispatched');
    await settle();
    // The call goes upstream with the deployment's own model name.
    expect(h.upstream.calls).toHaveLength(1);
    expect(h.upstream.calls[0].call.body).toEqual({ model: 'up', messages: [{ role: 'user', content: 'hello' }] });
    h.clock.advance(100);
    h.upstream.calls[0].resolve(completion('hi there'));
    await settle();
    expect(state(h)).toBe('done');
    expect(h.actor.getSnapshot().status).toBe('done');
    // The result is the actor's output, taken from the event that ended the call (not from the context).
    expect((h.actor.getSnapshot().output?.completion as { choices: Array<{ message: { content: string } }> } | undefined)?.choices[0].message.content).toBe('hi there');
    expect(h.actor.getSnapshot().output?.usage).toMatchObject({ total_tokens: 7 });
    expect(h.received.map((e) => e.type)).toEqual(['enqueue', 'release']);
    expect(h.received[1]).toMatchObject({ type: 'release', grant: { grantId: 'g-r1-1000250' }, outcome: { kind: 'ok', tokensUsed: 7 } });
    expect(h.emitted.map((e) => e.type)).toEqual(['request.queued', 'request.dispatched', 'request.done']);
    expect(h.emitted[1]).toMatchObject({ deployment: 'd', waitedMs: 250, attempt: 0 });
    expect(h.emitted[2]).toMatchObject({ durationMs: 100, totalMs: 350, tokens: { total_tokens: 7 } });
    // The upstream call's timeout timer is gone.
    expect(h.clock.pendingTimers).toBe(0);
  });

  it('a grant that arrives before the acceptance (shared store) dispatches from queued', async () => {
    const h = startRequest();
    h.actor.send({ type: 'grant', grant: grantFor('r1', h.clock.now()) });
    expect(state(h)).toBe('dispatched');
    await settle();
    expect(h.upstream.calls).toHaveLength(1);
  });

  it('queue.timeout → timeout with queue_timeout 408; nothing is sent back (the store already dropped it)', () => {
    const h = startRequest();
    h.actor.send({ type: 'queue.accepted', seq: 1, round: 0, position: 0 });
    h.clock.advance(5_000);
    h.actor.send({ type: 'queue.timeout' });
    expect(state(h)).toBe('timeout');
    const error = h.actor.getSnapshot().context.error!;
    expect(error).toBeInstanceOf(TriageError);
    expect(error).toMatchObject({ code: 'queue_timeout', status: 408 });
    expect(h.received.map((e) => e.type)).toEqual(['enqueue']);
    expect(h.emitted.at(-1)).toMatchObject({ type: 'request.timeout', waitedMs: 5_000 });
  });

  it.each(['queued', 'polling'] as const)('cancel while %s → cancelled, withdraws the queue entry', (at) => {
    const h = startRequest();
    if (at === 'polling') h.actor.send({ type: 'queue.accepted', seq: 1, round: 0, position: 0 });
    expect(state(h)).toBe(at);
    h.actor.send({ type: 'cancel' });
    expect(state(h)).toBe('cancelled');
    expect(h.actor.getSnapshot().context.error).toMatchObject({ code: 'client_closed', status: 499 });
    expect(h.received.map((e) => e.type)).toEqual(['enqueue', 'withdraw']);
    expect(h.received[1]).toEqual({ type: 'withdraw', id: 'r1' });
    expect(h.emitted.at(-1)).toMatchObject({ type: 'request.cancelled', stage: 'queued' });
  });

  it('cancel while dispatched → cancelled, aborts the upstream call and releases the slot once', async () => {
    const h = startRequest();
    h.actor.send({ type: 'queue.accepted', seq: 1, round: 0, position: 0 });
    h.actor.send({ type: 'grant', grant: grantFor('r1', h.clock.now()) });
    await settle();
    const call = h.upstream.calls[0];
    h.actor.send({ type: 'cancel' });
    await settle();
    expect(state(h)).toBe('cancelled');
    expect(call.call.signal.aborted).toBe(true);
    expect(h.received.map((e) => e.type)).toEqual(['enqueue', 'release']);
    expect(h.received[1]).toMatchObject({ type: 'release', outcome: { kind: 'cancelled' } });
    expect(h.emitted.at(-1)).toMatchObject({ type: 'request.cancelled', stage: 'dispatched' });
    // The aborted call's own failure (it rejected on the abort, before the turns above) does not
    // release a second time.
    expect(call.settled).toBe(true);
    expect(h.received).toHaveLength(2);
  });

  it('an upstream 4xx → failed at once (no retry), the status passes through, the slot is released as failed', async () => {
    const h = startRequest({ maxRetries: 3 });
    h.actor.send({ type: 'queue.accepted', seq: 1, round: 0, position: 0 });
    h.actor.send({ type: 'grant', grant: grantFor('r1', h.clock.now()) });
    await settle();
    h.upstream.calls[0].reject(new UpstreamError('client_error', 'bad', 422));
    await settle();
    expect(state(h)).toBe('failed');
    expect(h.actor.getSnapshot().context.error).toMatchObject({ code: 'upstream_error', status: 422 });
    expect(h.received.at(-1)).toMatchObject({ type: 'release', outcome: { kind: 'failed', failure: 'client_error' } });
    expect(h.emitted.at(-1)).toMatchObject({ type: 'request.failed', status: 422 });
  });

  it('retry → queued keeps its arrival sequence, round and enqueue time, with a fresh deadline', async () => {
    const h = startRequest({ maxRetries: 1 });
    h.actor.send({ type: 'queue.accepted', seq: 42, round: 3, position: 0 });
    h.clock.advance(1_000);
    h.actor.send({ type: 'grant', grant: grantFor('r1', h.clock.now(), 42) });
    await settle();
    h.clock.advance(2_000);
    h.upstream.calls[0].reject(new UpstreamError('rate_limited', '429', 429, 1_500));
    await settle();
    expect(state(h)).toBe('queued');
    expect(h.actor.getSnapshot().context.attempt).toBe(1);
    // The slot is released (with the upstream's Retry-After for the cooldown) before re-entering the queue.
    expect(h.received.map((e) => e.type)).toEqual(['enqueue', 'release', 'enqueue']);
    expect(h.received[1]).toMatchObject({ outcome: { kind: 'failed', failure: 'rate_limited', retryAfterMs: 1_500 } });
    expect(h.received[2]).toMatchObject({
      type: 'enqueue',
      entry: { id: 'r1', seq: 42, round: 3, enqueuedAt: 1_000_000, deadline: 1_003_000 + 5_000 },
    });
    expect(h.emitted.map((e) => e.type)).toEqual(['request.queued', 'request.dispatched', 'request.retry']);
    expect(h.emitted[2]).toMatchObject({ attempt: 1, deployment: 'd' });

    // The second attempt fails too: retries are used up.
    h.actor.send({ type: 'queue.accepted', seq: 42, round: 3, position: 0 });
    expect(h.emitted.at(-1)).toMatchObject({ type: 'request.queued', arrivalSeq: 42, attempt: 1 });
    h.actor.send({ type: 'grant', grant: grantFor('r1', h.clock.now(), 42) });
    await settle();
    h.upstream.calls[1].reject(new UpstreamError('server_error', '500', 500));
    await settle();
    expect(state(h)).toBe('failed');
    expect(h.actor.getSnapshot().context.error).toMatchObject({ code: 'upstream_error', status: 502 });
  });

  it('no retry once a streamed chunk reached the caller', async () => {
    const chunks: ChatCompletionChunk[] = [];
    const sink = {
      push: (c: ChatCompletionChunk) => chunks.push(c),
      get started() {
        return chunks.length > 0;
      },
    };
    const h = startRequest({ stream: true, sink, maxRetries: 3 });
    h.actor.send({ type: 'queue.accepted', seq: 1, round: 0, position: 0 });
    h.actor.send({ type: 'grant', grant: grantFor('r1', h.clock.now()) });
    await settle();
    sink.push({ id: 'x', object: 'chat.completion.chunk', created: 0, model: 'up', choices: [] });
    h.upstream.calls[0].reject(new UpstreamError('server_error', 'midway', 500));
    await settle();
    expect(state(h)).toBe('failed');
  });

  it('a streaming request pushes the chunks to its sink and reconciles with the final usage', async () => {
    const chunks: ChatCompletionChunk[] = [];
    const sink = { push: (c: ChatCompletionChunk) => chunks.push(c), started: false };
    const h = startRequest({ stream: true, sink });
    h.actor.send({ type: 'queue.accepted', seq: 1, round: 0, position: 0 });
    h.actor.send({ type: 'grant', grant: grantFor('r1', h.clock.now()) });
    await settle();
    h.upstream.calls[0].resolve(completion('streamed'));
    await settle();
    expect(state(h)).toBe('done');
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('streamed');
    expect(h.received.at(-1)).toMatchObject({ type: 'release', outcome: { kind: 'ok', tokensUsed: 7 } });
  });

  it('an upstream that does not answer within request_timeout → upstream_timeout 504', async () => {
    const h = startRequest({ maxRetries: 0 });
    h.actor.send({ type: 'queue.accepted', seq: 1, round: 0, position: 0 });
    h.actor.send({ type: 'grant', grant: grantFor('r1', h.clock.now()) });
    await settle();
    expect(h.clock.nextTimerAt()).toBe(h.clock.now() + 30_000);
    h.clock.advance(30_000);
    await settle();
    expect(state(h)).toBe('failed');
    expect(h.actor.getSnapshot().context.error).toMatchObject({ code: 'upstream_timeout', status: 504 });
    expect(h.upstream.calls[0].call.signal.aborted).toBe(true);
    expect(h.received.at(-1)).toMatchObject({ type: 'release', outcome: { kind: 'failed', failure: 'timeout' } });
  });

  it('an upstream that ignores its signal still times out, and its late answer changes nothing', async () => {
    let answer: ((c: ChatCompletion) => void) | undefined;
    const deaf: Upstream = {
      // Never looks at its signal, and answers only when the test says so.
      complete: () => new Promise<ChatCompletion>((resolve) => (answer = resolve)),
      stream: () => {
        throw new Error('not streamed');
      },
    };
    const h = startRequest({ maxRetries: 0, upstreamFor: () => ({ upstream: deaf, requestTimeoutMs: 1_000, upstreamModel: 'up' }) });
    h.actor.send({ type: 'queue.accepted', seq: 1, round: 0, position: 0 });
    h.actor.send({ type: 'grant', grant: grantFor('r1', h.clock.now()) });
    await settle();
    expect(state(h)).toBe('dispatched');
    h.clock.advance(1_000);
    await settle();
    expect(state(h)).toBe('failed');
    expect(h.actor.getSnapshot().context.error).toMatchObject({ code: 'upstream_timeout', status: 504 });
    answer!(completion('too late'));
    await settle();
    expect(state(h)).toBe('failed');
    expect(h.received.filter((e) => e.type === 'release')).toHaveLength(1);
  });

  it('a grant for a deployment this instance does not know fails the attempt (retried, then 502) and releases the slot', async () => {
    const h = startRequest({ maxRetries: 0, upstreamFor: () => undefined });
    h.actor.send({ type: 'queue.accepted', seq: 1, round: 0, position: 0 });
    h.actor.send({ type: 'grant', grant: grantFor('r1', h.clock.now()) });
    await settle();
    expect(state(h)).toBe('failed');
    expect(h.actor.getSnapshot().context.error).toMatchObject({ code: 'upstream_error', status: 502, message: expect.stringContaining('deployment d is not configured in this instance') });
    expect(h.received.filter((e) => e.type === 'release')).toHaveLength(1);
    expect(h.received.at(-1)).toMatchObject({ type: 'release', outcome: { kind: 'failed', failure: 'network' } });
  });

  it('queue.rejected (queue full) → rejected, carrying the computed Retry-After', () => {
    const h = startRequest();
    h.actor.send({ type: 'queue.rejected', error: new TriageError('queue_full', 'full', { retryAfterSeconds: 7 }) });
    expect(state(h)).toBe('rejected');
    expect(h.actor.getSnapshot().context.error).toMatchObject({ code: 'queue_full', status: 429, retryAfterSeconds: 7 });
    expect(h.emitted.at(-1)).toEqual({ type: 'request.rejected', id: 'r1', model: 'm', tenant: 'team-a', code: 'queue_full', retryAfterSeconds: 7, attempt: 0 });
    expect(h.received.map((e) => e.type)).toEqual(['enqueue']);
    // Only `done` has a result.
    expect(h.actor.getSnapshot().output).toBeNull();
  });

  it.each(['queued', 'polling'] as const)('shutdown while %s → rejected shutting_down 503, withdraws the entry', (at) => {
    const h = startRequest();
    if (at === 'polling') h.actor.send({ type: 'queue.accepted', seq: 1, round: 0, position: 0 });
    h.actor.send({ type: 'shutdown' });
    expect(state(h)).toBe('rejected');
    expect(h.actor.getSnapshot().context.error).toMatchObject({ code: 'shutting_down', status: 503 });
    expect(h.received.map((e) => e.type)).toEqual(['enqueue', 'withdraw']);
    expect(h.emitted.at(-1)).toMatchObject({ type: 'request.rejected', code: 'shutting_down', retryAfterSeconds: 1 });
  });

  it('shutdown while dispatched lets the call finish', async () => {
    const h = startRequest();
    h.actor.send({ type: 'queue.accepted', seq: 1, round: 0, position: 0 });
    h.actor.send({ type: 'grant', grant: grantFor('r1', h.clock.now()) });
    h.actor.send({ type: 'shutdown' });
    expect(state(h)).toBe('dispatched');
    await settle();
    h.upstream.calls[0].resolve(completion());
    await settle();
    expect(state(h)).toBe('done');
  });
});

// ------------------------------------------------------------------------------------------------
// Model-based paths over the real machine.

const MAX_RETRIES = 1;
type PathEvent = { type: string; [k: string]: unknown };

const graphEvents: PathEvent[] = [
  { type: 'queue.accepted', seq: 1, round: 0, position: 0 },
  { type: 'queue.rejected', error: new TriageError('queue_full', undefined, { retryAfterSeconds: 3 }) },
  { type: 'grant', grant: grantFor('r1', 1_000_000) },
  { type: 'queue.timeout' },
  { type: 'cancel' },
  { type: 'shutdown' },
  { type: 'upstream.done', output: { completion: completion(), usage: completion().usage }, upstreamBlock: undefined },
  { type: 'upstream.failed', error: new UpstreamError('server_error', 'boom', 500), upstreamBlock: undefined },
];

function graphInput(): RequestInput {
  return {
    id: 'r1',
    model: 'm',
    priority: 5,
    tenant: '',
    endpoint: 'chat',
    body: { model: 'm', messages: [{ role: 'user', content: 'R' }] },
    stream: false,
    tokens: 10,
    queueTimeoutMs: 10_000,
    maxRetries: MAX_RETRIES,
    scheduler: createEmptyActor(),
    clock: new FakeClock(),
    upstreamFor: () => {
      throw new Error('not called during traversal');
    },
  };
}

type Snap = ReturnType<typeof requestMachine.getInitialSnapshot>;
const traversal = {
  input: graphInput(),
  events: graphEvents as never[],
  serializeState: (s: Snap) => `${JSON.stringify(s.value)}@${s.context.attempt}`,
  serializeEvent: (e: PathEvent) => e.type,
};

/** Paths start with a step for the initial state (event `xstate.init`); only the events after it are replayed. */
const withoutInit = (paths: StatePath<Snap, PathEvent>[]) =>
  paths.map((p) => ({ ...p, steps: p.steps.filter((s) => s.event.type !== 'xstate.init') }));
const shortest = withoutInit(getShortestPaths(requestMachine, traversal) as StatePath<Snap, PathEvent>[]);
const simple = withoutInit(getSimplePaths(requestMachine, traversal) as StatePath<Snap, PathEvent>[]);
const FINAL = ['done', 'timeout', 'cancelled', 'failed', 'rejected'];
const describePath = (p: StatePath<Snap, PathEvent>) => p.steps.map((s) => s.event.type).join(' → ') || '(initial)';

/** Queued and polling differ only in whether the scheduler's acceptance arrived yet: one "waiting". */
function collapse(values: string[]): string[] {
  const out: string[] = [];
  for (const v of values) {
    const w = v === 'queued' || v === 'polling' ? 'waiting' : v;
    if (out.at(-1) !== w) out.push(w);
  }
  return out;
}

function expectedError(path: StatePath<Snap, PathEvent>): { code: string; status: number } | null {
  switch (path.state.value) {
    case 'done':
      return null;
    case 'timeout':
      return { code: 'queue_timeout', status: 408 };
    case 'cancelled':
      return { code: 'client_closed', status: 499 };
    case 'failed':
      return { code: 'upstream_error', status: 502 };
    default:
      return path.steps.some((s) => s.event.type === 'queue.rejected') ? { code: 'queue_full', status: 429 } : { code: 'shutting_down', status: 503 };
  }
}

/** Plays a path's events on a real actor (stub scheduler, controlled upstream). */
async function replayOnActor(path: StatePath<Snap, PathEvent>): Promise<Harness> {
  const h = startRequest({ maxRetries: MAX_RETRIES, queueTimeoutMs: 10_000 });
  for (const { event } of path.steps) {
    if (event.type === 'upstream.done') h.upstream.pending()!.resolve(completion());
    else if (event.type === 'upstream.failed') h.upstream.pending()!.reject(event.error);
    else h.actor.send(event as never);
    await settle();
  }
  return h;
}

/**
 * Plays a path through the Router: one deployment with one slot, held by other requests so the
 * request under test ("R", priority 5) waits; each abstract event becomes what causes it for real.
 */
async function replayOnRouter(path: StatePath<Snap, PathEvent>): Promise<{ values: string[]; result: { ok?: ChatCompletion; error?: TriageError }; router: Router; upstream: ControlledUpstream }> {
  const clock = new FakeClock();
  const upstream = new ControlledUpstream();
  const rejectsFirst = path.steps[0]?.event.type === 'queue.rejected';
  const c = testConfig({ m: [{ id: 'd', maxParallelRequests: 1 }] }, { numRetries: MAX_RETRIES, maxQueueSize: rejectsFirst ? 1 : 100, allowedFails: 100 });
  delete c.modelGroups[0].deployments[0].mockResponse;
  const router = createRouter(c, { clock, upstreamFactory: () => upstream });
  routers.push(router);
  const values: string[] = [];
  router.setInspector((e) => {
    if (e.type !== '@xstate.snapshot') return;
    const snap = e.snapshot as Snap;
    if (snap.machine?.id !== 'request' || snap.context.req.body.messages[0].content !== 'R') return;
    if (values.at(-1) !== snap.value) values.push(snap.value as string);
  });
  const quiet = (p: Promise<unknown>) => p.catch(() => {});
  // The holder takes the one slot; with a full queue a filler takes the one queue place.
  void quiet(router.scheduleCompletion({ model: 'm', messages: [{ role: 'user', content: 'holder' }], priority: 0 }));
  await settle();
  if (rejectsFirst) void quiet(router.scheduleCompletion({ model: 'm', messages: [{ role: 'user', content: 'filler' }], priority: 0 }));
  await settle();

  const abort = new AbortController();
  const result: { ok?: ChatCompletion; error?: TriageError } = {};
  router.scheduleCompletion({ model: 'm', messages: [{ role: 'user', content: 'R' }], priority: 5, timeout: 10, signal: abort.signal }).then(
    (ok) => (result.ok = ok),
    (error: TriageError) => (result.error = error),
  );
  for (const { event } of path.steps) {
    await settle();
    switch (event.type) {
      case 'queue.accepted':
      case 'queue.rejected':
        break; // the scheduler answers by itself
      case 'grant': {
        // The slot frees (the current holder finishes) and R is next; a standby then queues behind R,
        // so that if R gives its slot back for a retry, R has to wait again.
        const holder = upstream.calls.find((x) => !x.settled && x.call.body.messages[0].content !== 'R');
        holder!.resolve(completion());
        await settle();
        void quiet(router.scheduleCompletion({ model: 'm', messages: [{ role: 'user', content: 'standby' }], priority: 0 }));
        break;
      }
      case 'queue.timeout':
        clock.advance(10_000);
        break;
      case 'cancel':
        abort.abort();
        break;
      case 'shutdown':
        void router.close(0);
        break;
      default:
        if (event.type === 'upstream.done') upstream.pending('R')!.resolve(completion('for R'));
        else upstream.pending('R')!.reject(new UpstreamError('server_error', 'boom', 500));
    }
  }
  await settle();
  return { values, result, router, upstream };
}

const routers: Router[] = [];
afterEach(async () => {
  for (const r of routers.splice(0)) await r.close(0);
});

describe('model-based paths (xstate/graph over the real request machine)', () => {
  it('every state of the machine is reachable', () => {
    const all = Object.keys(requestMachine.root.states).sort();
    expect(all).toEqual(['cancelled', 'dispatched', 'done', 'failed', 'polling', 'queued', 'rejected', 'timeout']);
    const reached = new Set(shortest.map((p) => p.state.value as string));
    expect([...reached].sort()).toEqual(all);
    // ...on the first attempt and after a retry.
    const retried = new Set(shortest.filter((p) => p.state.context.attempt === MAX_RETRIES).map((p) => p.state.value as string));
    expect([...retried].sort()).toEqual(all);
    // No path leaves a final state, and the retry loop is bounded by num_retries.
    for (const p of simple) {
      const values = p.steps.map((s) => s.state.value as string);
      const firstFinal = values.findIndex((v) => FINAL.includes(v));
      if (firstFinal >= 0) expect(firstFinal).toBe(values.length - 1);
      expect(p.state.context.attempt).toBeLessThanOrEqual(MAX_RETRIES);
    }
  });

  const finalPaths = [...shortest, ...simple].filter((p) => FINAL.includes(p.state.value as string));
  const unique = [...new Map(finalPaths.map((p) => [describePath(p), p])).values()];

  it('there are paths to every final state, through retries and not', () => {
    expect(unique.length).toBeGreaterThan(20);
    for (const v of FINAL) expect(unique.some((p) => p.state.value === v)).toBe(true);
  });

  it.each(unique.map((p) => [describePath(p), p] as const))('actor: %s', async (_, path) => {
    const h = await replayOnActor(path);
    expect(h.actor.getSnapshot().value).toBe(path.state.value);
    expect(h.actor.getSnapshot().context.attempt).toBe(path.state.context.attempt);
    const e = expectedError(path);
    if (e === null) expect(h.actor.getSnapshot().context.error).toBeUndefined();
    else expect(h.actor.getSnapshot().context.error).toMatchObject(e);
  });

  // The memory store admits a retry even when the queue is full, so "rejected after a retry" exists
  // only with a store that can fail (Redis down → store_unavailable); those paths are played above.
  const routerPaths = unique.filter((p) => p.steps.every((s, i) => s.event.type !== 'queue.rejected' || i === 0));

  it('most paths can be played through the Router', () => {
    expect(routerPaths.length).toBeGreaterThan(unique.length / 2);
  });

  it.each(routerPaths.map((p) => [describePath(p), p] as const))('router: %s', async (_, path) => {
    const { values, result, router, upstream } = await replayOnRouter(path);
    // The states the Router's request actor went through are the path's states.
    const expected = collapse(['queued', ...path.steps.map((s) => s.state.value as string)]);
    expect(collapse(values)).toEqual(expected);
    // What the Router reports matches the final state.
    const e = expectedError(path);
    if (e === null) {
      expect(result.ok?.choices[0].message.content).toBe('for R');
      expect(result.error).toBeUndefined();
    } else {
      expect(result.ok).toBeUndefined();
      expect(result.error).toBeInstanceOf(TriageError);
      expect(result.error).toMatchObject(e);
    }
    // Whatever the path, R holds no queue entry and no slot afterwards: what is in flight is exactly
    // the other requests' calls still running.
    const [status] = await router.queueStatus();
    expect(status.waiters.some((w) => w.priority === 5)).toBe(false);
    expect(upstream.pending('R')).toBeUndefined();
    expect(status.inFlight).toBe(upstream.calls.filter((x) => !x.settled).length);
    expect(router.liveRequests).toBe(status.waiting + status.inFlight);
  });
});
