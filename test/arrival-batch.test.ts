/**
 * ArrivalBatch: the chat routes hand the router each event-loop turn's arrivals together, best
 * priority first. Alone against a recording router, then in front of a real Router with one slot.
 */
import { describe, it, expect, afterEach } from 'vitest';
import type { ChatCompletion } from '../src/core/openai-types.js';
import type { QueueEvent } from '../src/events.js';
import { createRouter, type CompletionParams, type Router, type ScheduledResult } from '../src/router.js';
import { ArrivalBatch } from '../src/server/arrival-batch.js';
import { ControlledUpstream } from './support/controlled-upstream.js';
import { settle } from './support/fake-time.js';
import { testConfig } from './support/test-config.js';

/** One event-loop turn: the batch's setImmediate, queued before this one, has run. */
const endOfTurn = () => settle(1);

const params = (priority: number, content: string) => ({ model: 'm', messages: [{ role: 'user', content }], priority });

const completion = (content: string): ChatCompletion => ({
  id: 'chatcmpl-test',
  object: 'chat.completion',
  created: 0,
  model: 'm',
  choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content } }],
});

/** A router stand-in that records what it was asked, in order, and answers with the message text. */
function recordingRouter(answer: (p: CompletionParams) => Promise<ScheduledResult> = (p) => Promise.resolve(result(p))) {
  const calls: string[] = [];
  return {
    calls,
    schedule(p: CompletionParams): Promise<ScheduledResult> {
      calls.push(String(p.messages[0]!.content));
      return answer(p);
    },
  };
}

function result(p: CompletionParams): ScheduledResult {
  const meta = { requestId: 'r', model: 'm', priority: p.priority as number, deployment: 'd', waitedMs: 0, attempts: 1 };
  return { kind: 'completion', meta, completion: completion(String(p.messages[0]!.content)) };
}

describe('ArrivalBatch', () => {
  it('schedules nothing until the turn ends, then the whole turn best priority first, arrival order within one', async () => {
    const router = recordingRouter();
    const batch = new ArrivalBatch(router);
    const answers = [params(5, 'low-1'), params(0, 'high-1'), params(5, 'low-2'), params(2, 'mid'), params(0, 'high-2')].map((p) => batch.schedule(p));
    expect(router.calls).toEqual([]);
    expect(batch.size).toBe(5);
    await endOfTurn();
    expect(router.calls).toEqual(['high-1', 'high-2', 'mid', 'low-1', 'low-2']);
    expect(batch.size).toBe(0);
    // Each caller gets its own answer.
    const contents = (await Promise.all(answers)).map((r) => (r.kind === 'completion' ? (r.completion as ChatCompletion).choices[0]!.message.content : null));
    expect(contents).toEqual(['low-1', 'high-1', 'low-2', 'mid', 'high-2']);
  });

  it('starts a new batch for requests that arrive after a turn was flushed', async () => {
    const router = recordingRouter();
    const batch = new ArrivalBatch(router);
    const first = batch.schedule(params(9, 'first'));
    await endOfTurn();
    expect(router.calls).toEqual(['first']);
    const second = batch.schedule(params(0, 'second'));
    expect(router.calls).toEqual(['first']);
    await endOfTurn();
    expect(router.calls).toEqual(['first', 'second']);
    await Promise.all([first, second]);
  });

  it("passes each request's rejection to its own caller, and a router that throws fails only that request", async () => {
    const router = recordingRouter((p) => {
      const text = String(p.messages[0]!.content);
      if (text === 'throws') throw new Error('thrown synchronously');
      if (text === 'rejects') return Promise.reject(new Error('rejected'));
      return Promise.resolve(result(p));
    });
    const batch = new ArrivalBatch(router);
    const outcomes = await Promise.allSettled([batch.schedule(params(0, 'throws')), batch.schedule(params(1, 'rejects')), batch.schedule(params(2, 'fine'))]);
    expect(router.calls).toEqual(['throws', 'rejects', 'fine']);
    expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'rejected', 'fulfilled']);
    expect((outcomes[0] as PromiseRejectedResult).reason.message).toBe('thrown synchronously');
    expect((outcomes[1] as PromiseRejectedResult).reason.message).toBe('rejected');
  });
});

describe('ArrivalBatch in front of a Router', () => {
  let router: Router | undefined;
  afterEach(async () => {
    await router?.close(0);
    router = undefined;
  });

  it('gives the one free slot to the best priority of the turn, not to the first arrival', async () => {
    const upstream = new ControlledUpstream();
    const config = testConfig({ m: [{ maxParallelRequests: 1 }] });
    // No mock response: the calls go to the upstream the test holds.
    delete config.modelGroups[0]!.deployments[0]!.mockResponse;
    router = createRouter(config, { upstreamFactory: () => upstream });
    const events: QueueEvent[] = [];
    router.events.subscribe((e) => events.push(e));
    const batch = new ArrivalBatch(router);
    const answers = [params(7, 'batch job'), params(3, 'report'), params(0, 'interactive')].map((p) => batch.schedule(p));
    await endOfTurn();
    const dispatched = () => events.filter((e) => e.type === 'request.dispatched').map((e) => (e as { priority?: number }).priority);
    expect(dispatched()).toEqual([0]);
    expect(upstream.calls).toHaveLength(1);
    expect(upstream.calls[0]!.call.body.messages[0]!.content).toBe('interactive');
    // The rest follow in priority order as the slot frees.
    for (let i = 0; i < 3; i++) {
      const deadline = Date.now() + 5_000;
      while (upstream.calls.length <= i && Date.now() < deadline) await endOfTurn();
      upstream.calls[i]!.release();
      await answers[2 - i];
    }
    expect(dispatched()).toEqual([0, 3, 7]);
  });
});
