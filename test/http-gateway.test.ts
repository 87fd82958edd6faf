/**
 * The HTTP gateway through the official OpenAI client over real sockets on 127.0.0.1: completions
 * and streams with priority, priority order under contention, rpm waits and queue timeouts, and
 * cancellation when the caller goes away.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../src/core/clock.js';
import { chat, startGateway, waitFor, type RunningGateway } from './support/gateway.js';
import { testConfig } from './support/test-config.js';

let running: RunningGateway[] = [];
afterEach(async () => {
  await Promise.all(running.map((g) => g.stop()));
  running = [];
});

async function start(...args: Parameters<typeof startGateway>): Promise<RunningGateway> {
  const g = await startGateway(...args);
  running.push(g);
  return g;
}

interface StatusBody {
  models: Array<{ model: string; waiting: number; inFlight: number; depthByPriority: Record<string, number>; deployments: Array<{ id: string; inFlight: number; rpmUsed: number }> }>;
}

async function status(g: RunningGateway, model: string) {
  const body = (await (await fetch(`${g.url}/queue/status`)).json()) as StatusBody;
  return body.models.find((m) => m.model === model)!;
}

describe('chat completions through the OpenAI client', () => {
  it('answers a plain completion with the queue headers', async () => {
    const g = await start(testConfig({ m: [{ mockResponse: 'Hello from the mock.' }] }));
    const { data, response } = await g.client().chat.completions.create(chat('m', 'hi', 7)).withResponse();
    expect(data.object).toBe('chat.completion');
    expect(data.id).toMatch(/^chatcmpl-/);
    expect(data.choices[0].message.content).toBe('Hello from the mock.');
    expect(data.usage?.total_tokens).toBeGreaterThan(0);
    expect(response.headers.get('x-triage-priority')).toBe('7');
    expect(response.headers.get('x-triage-deployment')).toBe('m#0');
    expect(Number(response.headers.get('x-triage-queue-wait-ms'))).toBeGreaterThanOrEqual(0);
    expect(response.headers.get('x-triage-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('streams chunks ending with [DONE] and reassembles the content', async () => {
    const g = await start(testConfig({ m: [{ mockResponse: 'one two three four' }] }));
    const stream = await g.client().chat.completions.create({ ...chat('m', 'hi', 0), stream: true });
    let text = '';
    let chunks = 0;
    for await (const chunk of stream) {
      expect(chunk.object).toBe('chat.completion.chunk');
      text += chunk.choices[0]?.delta?.content ?? '';
      chunks += 1;
    }
    expect(text).toBe('one two three four');
    expect(chunks).toBeGreaterThan(3);
    // The raw stream ends with the [DONE] sentinel.
    const raw = await fetch(`${g.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...chat('m', 'hi'), stream: true }),
    });
    expect(raw.headers.get('content-type')).toMatch(/text\/event-stream/);
    expect((await raw.text()).trimEnd().endsWith('data: [DONE]')).toBe(true);
  });

  it('serves every path alias and ?model= override through the same scheduler', async () => {
    const g = await start(testConfig({ a: [{ mockResponse: 'A' }], b: [{ mockResponse: 'B' }] }));
    for (const path of ['/queue/chat/completions', '/chat/completions', '/v1/queue/chat/completions', '/v1/chat/completions']) {
      const r = await fetch(`${g.url}${path}?model=b`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(chat('a', 'x')) });
      expect(r.status).toBe(200);
      expect(((await r.json()) as { choices: Array<{ message: { content: string } }> }).choices[0].message.content).toBe('B');
    }
    const models = (await (await fetch(`${g.url}/v1/models`)).json()) as { data: Array<{ id: string }> };
    expect(models.data.map((m) => m.id)).toEqual(['a', 'b']);
  });

  it('serves waiting requests by priority, first come first served within a priority', async () => {
    // Fake time holds each mock call in flight until the test moves the clock: no race with the network.
    const clock = new FakeClock(Date.now());
    const g = await start(testConfig({ m: [{ maxParallelRequests: 1, mockDelayMs: 100 }] }), { clock });
    const client = g.client();
    const order: string[] = [];
    const send = (name: string, priority: number) => client.chat.completions.create(chat('m', name, priority)).then(() => order.push(name));
    const blocker = send('blocker', 9);
    await waitFor(async () => ((await status(g, 'm')).inFlight === 1 ? true : undefined), 'the blocker to be dispatched');
    const later = [send('p5-first', 5), send('p5-second', 5), send('p1', 1), send('p0', 0), send('p5-third', 5)];
    await waitFor(async () => ((await status(g, 'm')).waiting === 5 ? true : undefined), 'five waiters');
    for (let served = 1; served <= 6; served++) {
      clock.advance(100);
      await waitFor(() => (order.length === served ? true : undefined), `completion ${served}`);
    }
    await Promise.all([blocker, ...later]);
    expect(order).toEqual(['blocker', 'p0', 'p1', 'p5-first', 'p5-second', 'p5-third']);
  });

  it('makes requests wait at a deployment rpm limit, serves them when the window reopens, and answers at once (429 queue_timeout_certain) one whose deadline passes first', async () => {
    const clock = new FakeClock(Date.now());
    const g = await start(testConfig({ m: [{ rpm: 2 }] }), { clock });
    const client = g.client();
    await client.chat.completions.create(chat('m', '1'));
    await client.chat.completions.create(chat('m', '2'));
    let served = false;
    const third = client.chat.completions.create(chat('m', '3')).then((r) => {
      served = true;
      return r;
    });
    await waitFor(async () => ((await status(g, 'm')).waiting === 1 ? true : undefined), 'a waiter at the rpm limit');
    // Its 30 s deadline passes before the window reopens (60 s): told now, not with a 408 in 30 s.
    const doomed = (await client.chat.completions.create({ ...chat('m', '4'), timeout: 30 } as never).then(
      () => 'served',
      (e: unknown) => e,
    )) as { status: number; error: { code: string }; headers: Headers };
    expect(doomed.status).toBe(429);
    expect(doomed.error.code).toBe('queue_timeout_certain');
    expect(doomed.headers.get('retry-after')).toBe('60');
    expect(served).toBe(false);
    expect((await status(g, 'm')).deployments[0].rpmUsed).toBe(2);
    expect((await status(g, 'm')).waiting).toBe(1);
    clock.advance(60_000);
    const r = await third;
    expect(r.choices[0].message.content).toBe('ok');
    expect((await status(g, 'm')).waiting).toBe(0);
  });
});

describe('caller disconnects', () => {
  it('releases the queue entry when the caller goes away while queued', async () => {
    const g = await start(testConfig({ m: [{ maxParallelRequests: 1, mockDelayMs: 400 }] }));
    const client = g.client();
    const blocker = client.chat.completions.create(chat('m', 'blocker'));
    await waitFor(async () => ((await status(g, 'm')).inFlight === 1 ? true : undefined), 'blocker dispatched');
    const controller = new AbortController();
    const waiting = client.chat.completions.create(chat('m', 'gone'), { signal: controller.signal }).catch((e: Error) => e);
    await waitFor(async () => ((await status(g, 'm')).waiting === 1 ? true : undefined), 'one waiter');
    controller.abort();
    expect(await waiting).toBeInstanceOf(Error);
    await waitFor(async () => ((await status(g, 'm')).waiting === 0 ? true : undefined), 'the entry to leave the queue');
    await blocker;
    await waitFor(async () => ((await status(g, 'm')).inFlight === 0 ? true : undefined), 'the slot to be free');
  });

  it('releases the slot when the caller drops a stream mid-way', async () => {
    // A long answer streamed word by word; the mock's delay holds the slot long enough to drop it.
    const g = await start(testConfig({ m: [{ maxParallelRequests: 1, mockDelayMs: 50, mockResponse: 'word '.repeat(20000) }] }));
    const controller = new AbortController();
    const stream = await g.client().chat.completions.create({ ...chat('m', 'hi'), stream: true }, { signal: controller.signal });
    let seen = 0;
    try {
      for await (const _chunk of stream) {
        seen += 1;
        if (seen === 3) controller.abort();
      }
    } catch {
      // The client may end the aborted stream with an abort error or quietly; both are fine here.
    }
    expect(seen).toBeLessThan(100);
    await waitFor(async () => ((await status(g, 'm')).inFlight === 0 ? true : undefined), 'the slot to be released');
    expect(g.gateway.router.liveRequests).toBe(0);
  });
});
