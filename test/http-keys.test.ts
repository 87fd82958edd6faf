/** Virtual keys: round-robin between keys at equal priority, and keys never leaking into any output. */
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../src/core/clock.js';
import { chat, startGateway, waitFor, type RunningGateway } from './support/gateway.js';
import { testConfig } from './support/test-config.js';

let running: RunningGateway[] = [];
afterEach(async () => {
  await Promise.all(running.map((g) => g.stop()));
  running = [];
});

const MASTER = 'sk-master-key-a1b2c3';
const NOISY = 'sk-noisy-key-d4e5f6';
const QUIET = 'sk-quiet-key-g7h8i9';
const UPSTREAM = 'sk-upstream-secret-j0k1';

describe('virtual keys', () => {
  it('serves equal priorities round-robin between keys, so a noisy key cannot starve a quiet one', async () => {
    const clock = new FakeClock(Date.now());
    const config = testConfig({ m: [{ maxParallelRequests: 1, mockDelayMs: 100 }] }, {}, {
      masterKey: MASTER,
      keys: [
        { key: NOISY, name: 'noisy' },
        { key: QUIET, name: 'quiet' },
      ],
    });
    const g = await startGateway(config, { clock });
    running.push(g);
    const order: string[] = [];
    const send = (key: string, name: string, priority: number) =>
      g.client(key).chat.completions.create(chat('m', name, priority)).then(() => order.push(name));
    const blocker = send(MASTER, 'blocker', 9);
    await waitFor(() => (g.gateway.router.liveRequests === 1 ? true : undefined), 'blocker');
    const noisy = [send(NOISY, 'noisy-1', 5), send(NOISY, 'noisy-2', 5), send(NOISY, 'noisy-3', 5)];
    await waitFor(() => (g.gateway.router.liveRequests === 4 ? true : undefined), 'noisy waiters');
    const quiet = send(QUIET, 'quiet-1', 5);
    await waitFor(() => (g.gateway.router.liveRequests === 5 ? true : undefined), 'quiet waiter');
    for (let served = 1; served <= 5; served++) {
      clock.advance(100);
      await waitFor(() => (order.length === served ? true : undefined), `completion ${served}`);
    }
    await Promise.all([blocker, ...noisy, quiet]);
    expect(order).toEqual(['blocker', 'noisy-1', 'quiet-1', 'noisy-2', 'noisy-3']);
  });

  it('never writes a key into logs, headers, events or error messages', async () => {
    let logs = '';
    const sink = new Writable({
      write(chunk, _enc, done) {
        logs += chunk.toString();
        done();
      },
    });
    const config = testConfig({ m: [{}] }, {}, { masterKey: MASTER, keys: [{ key: NOISY, name: 'noisy', models: ['m'] }] });
    config.modelGroups[0].deployments[0].apiKey = UPSTREAM;
    const g = await startGateway(config, { logger: { level: 'trace', stream: sink } });
    running.push(g);
    const events: string[] = [];
    g.gateway.router.events.subscribe((e) => events.push(JSON.stringify(e)));

    const outputs: string[] = [];
    const record = async (r: Response) => {
      outputs.push(JSON.stringify([...r.headers]), await r.text());
    };
    for (const key of [MASTER, NOISY, `${MASTER}x`, QUIET]) {
      await record(await fetch(`${g.url}/queue/chat/completions?token=${key}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body: JSON.stringify(chat('m', 'x')) }));
      // (A POST takes no `token` query parameter: the one above is refused with 400, naming the parameter, never its value.)
      await record(await fetch(`${g.url}/queue/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body: JSON.stringify(chat('m', 'x')) }));
      await record(await fetch(`${g.url}/queue/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': key }, body: JSON.stringify(chat('nope', 'x')) }));
      await record(await fetch(`${g.url}/queue/status?token=${key}`));
      await record(await fetch(`${g.url}/missing?token=${key}`));
    }
    expect(events.length).toBeGreaterThan(0);
    expect(logs.length).toBeGreaterThan(0);
    const everything = [logs, ...events, ...outputs].join('\n');
    for (const secret of [MASTER, NOISY, QUIET, UPSTREAM, 'sk-master-key', 'sk-noisy']) expect(everything).not.toContain(secret);
    // The key's name is what shows.
    expect(events.join('\n')).toContain('"tenant":"noisy"');
  });
});
