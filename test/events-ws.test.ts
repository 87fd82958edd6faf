/** `GET /queue/events` with a real `ws` client over a real socket. */
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { FakeClock } from '../src/core/clock.js';
import { chat, startGateway, waitFor, type RunningGateway } from './support/gateway.js';
import { testConfig } from './support/test-config.js';

let running: RunningGateway[] = [];
const sockets: WebSocket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) if (s.readyState === WebSocket.OPEN) s.terminate();
  await Promise.all(running.map((g) => g.stop()));
  running = [];
});

interface Message {
  type: string;
  [k: string]: unknown;
}

/** Opens a subscriber and collects its messages. */
async function subscribe(g: RunningGateway, query = '', headers: Record<string, string> = {}) {
  const messages: Message[] = [];
  const socket = new WebSocket(`${g.url.replace('http', 'ws')}/queue/events${query}`, { headers });
  sockets.push(socket);
  socket.on('message', (data) => messages.push(JSON.parse(String(data)) as Message));
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
  });
  await waitFor(() => (messages.some((m) => m.type === 'snapshot') ? true : undefined), 'the snapshot');
  return { socket, messages };
}

/**
 * Resolves once the gateway has answered a ping sent now. Its messages to one socket arrive in order,
 * so everything it sent this subscriber before the ping is in `messages`: what is absent was not sent.
 */
async function caughtUp(s: { socket: WebSocket; messages: Message[] }): Promise<void> {
  const pongs = s.messages.filter((m) => m.type === 'pong').length;
  s.socket.send(JSON.stringify({ type: 'ping' }));
  await waitFor(() => (s.messages.filter((m) => m.type === 'pong').length > pongs ? true : undefined), 'the pong');
}

async function start(...args: Parameters<typeof startGateway>) {
  const g = await startGateway(...args);
  running.push(g);
  return g;
}

const MASTER = 'sk-master-ws-1';
const KEY_A = 'sk-key-a-ws-2';
const KEY_B = 'sk-key-b-ws-3';

describe('queue event stream', () => {
  it('sends a snapshot, then queued → dispatched → done for a request, in order', async () => {
    const g = await start(testConfig({ m: [{ maxParallelRequests: 2 }], other: [{}] }));
    const { messages } = await subscribe(g);
    expect(messages[0].type).toBe('snapshot');
    expect((messages[0].models as Array<{ model: string }>).map((m) => m.model)).toEqual(['m', 'other']);
    const { response } = await g.client().chat.completions.create(chat('m', 'x', 3)).withResponse();
    const id = response.headers.get('x-triage-request-id');
    await waitFor(() => (messages.some((m) => m.type === 'request.done') ? true : undefined), 'done');
    const mine = messages.filter((m) => m.id === id);
    expect(mine.map((m) => m.type)).toEqual(['request.queued', 'request.dispatched', 'request.done']);
    expect(mine[0]).toMatchObject({ model: 'm', priority: 3, position: 0 });
    expect(mine[1]).toMatchObject({ deployment: 'm#0' });
    expect(mine[2]).toMatchObject({ deployment: 'm#0' });
    expect((mine[2].tokens as { total_tokens: number }).total_tokens).toBeGreaterThan(0);
    const seqs = messages.slice(1).map((m) => m.seq as number);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
  });

  it('filters by model, type, request id, and by a subscribe message', async () => {
    const g = await start(testConfig({ a: [{}], b: [{}] }));
    const byModel = await subscribe(g, '?models=b');
    const byType = await subscribe(g, '?types=request.done');
    const client = g.client();
    await client.chat.completions.create(chat('a', 'x'));
    const { response } = await client.chat.completions.create(chat('b', 'x')).withResponse();
    const id = response.headers.get('x-triage-request-id')!;
    const byId = await subscribe(g, `?request=${id}`);
    await waitFor(() => (byType.messages.filter((m) => m.type === 'request.done').length === 2 ? true : undefined), 'two done');
    await waitFor(() => (byModel.messages.some((m) => m.type === 'request.done') ? true : undefined), 'b done');
    expect(byModel.messages.slice(1).every((m) => m.model === 'b')).toBe(true);
    expect(byType.messages.slice(1).every((m) => m.type === 'request.done')).toBe(true);
    // Subscribed after its request ended: nothing of it is replayed.
    await caughtUp(byId);
    expect(byId.messages.slice(1).map((m) => m.type)).toEqual(['pong']);

    byModel.socket.send(JSON.stringify({ type: 'subscribe', models: ['a'], types: ['request.queued'] }));
    await waitFor(() => (byModel.messages.some((m) => m.type === 'subscribed') ? true : undefined), 'subscribed');
    await client.chat.completions.create(chat('a', 'again'));
    await client.chat.completions.create(chat('b', 'again'));
    await waitFor(() => (byType.messages.filter((m) => m.type === 'request.done').length === 4 ? true : undefined), 'four done');
    await caughtUp(byModel);
    const after = byModel.messages.slice(byModel.messages.findIndex((m) => m.type === 'subscribed') + 1);
    expect(after.map((m) => [m.type, m.model])).toEqual([['request.queued', 'a'], ['pong', undefined]]);

    byModel.socket.send('not json');
    byModel.socket.send(JSON.stringify({ type: 'subscribe', models: ['nope'] }));
    await waitFor(() => (byModel.messages.filter((m) => m.type === 'error').length === 2 ? true : undefined), 'two errors');
    const errors = byModel.messages.filter((m) => m.type === 'error') as unknown as Array<{ error: { code: string } }>;
    expect(errors.map((e) => e.error.code)).toEqual(['invalid_request', 'model_not_found']);
  });

  it('refuses an unauthenticated client and shows a key only its own requests', async () => {
    const g = await start(testConfig({ m: [{}] }, {}, { masterKey: MASTER, keys: [{ key: KEY_A, name: 'a' }, { key: KEY_B, name: 'b' }] }));
    const refused = new WebSocket(`${g.url.replace('http', 'ws')}/queue/events`);
    sockets.push(refused);
    const refusedWith = (ws: WebSocket) =>
      new Promise<number>((resolve) =>
        ws.on('unexpected-response', (req, res) => {
          resolve(res.statusCode!);
          req.destroy();
        }),
      );
    const status = await refusedWith(refused);
    expect(status).toBe(401);
    const wrong = new WebSocket(`${g.url.replace('http', 'ws')}/queue/events?token=sk-wrong`);
    sockets.push(wrong);
    expect(await refusedWith(wrong)).toBe(401);

    const master = await subscribe(g, '', { authorization: `Bearer ${MASTER}` });
    const a = await subscribe(g, `?token=${KEY_A}`);
    const aMine = await subscribe(g, '?mine=1', { authorization: `Bearer ${MASTER}` });
    await g.client(KEY_A).chat.completions.create(chat('m', 'from a'));
    await g.client(KEY_B).chat.completions.create(chat('m', 'from b'));
    await waitFor(() => (master.messages.filter((m) => m.type === 'request.done').length === 2 ? true : undefined), 'both done');
    await caughtUp(a);
    await caughtUp(aMine);
    expect(new Set(master.messages.slice(1).map((m) => m.tenant))).toEqual(new Set(['a', 'b']));
    expect(a.messages.slice(1).filter((m) => m.type === 'request.done')).toHaveLength(1);
    expect(new Set(a.messages.slice(1).filter((m) => m.type !== 'pong').map((m) => m.tenant))).toEqual(new Set(['a']));
    // mine=1 for the master: only the master's own requests (none here).
    expect(aMine.messages.slice(1).map((m) => m.type)).toEqual(['pong']);
  });

  it('a stalled subscriber does not delay requests and is told how many events it missed', async () => {
    const g = await start(testConfig({ m: [{}] }), { eventStream: { maxBufferedBytes: 16 * 1024 } });
    const stalled = await subscribe(g);
    // Stop reading at the TCP level: the kernel buffers fill, then the server's send buffer.
    const raw = (stalled.socket as unknown as { _socket: import('node:net').Socket })._socket;
    raw.pause();
    const healthy = await subscribe(g, '?types=request.done');
    // Many requests through the Router API (in process, so the load is events, not HTTP).
    const router = g.gateway.router;
    const total = 8_000;
    for (let sent = 0; sent < total; sent += 500) {
      await Promise.all(Array.from({ length: 500 }, () => router.scheduleCompletion({ model: 'm', messages: [{ role: 'user', content: 'x' }] })));
    }
    // Every request completed and the healthy subscriber saw each one while the other read nothing.
    await waitFor(() => (healthy.messages.filter((m) => m.type === 'request.done').length === total ? true : undefined), 'every done event', 20_000);
    raw.resume();
    const lagged = await waitFor(() => stalled.messages.find((m) => m.type === 'lagged'), 'a lagged message', 20_000);
    expect(lagged.dropped as number).toBeGreaterThan(0);
    // What was delivered plus what was reported dropped accounts for every event after the snapshot.
    const delivered = stalled.messages.filter((m) => m.type.startsWith('request.')).length;
    expect(delivered + (lagged.dropped as number)).toBeGreaterThanOrEqual(total * 3);
  });
});
