/**
 * The debugger's routes refuse query parameters they do not know (400 naming the parameter), as every
 * other endpoint does, and take `token`, the key the page and its WebSocket carry in their address.
 */
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createRouter, type Router } from '../src/router.js';
import { buildApp } from '../src/server/app.js';
import { testConfig } from './support/test-config.js';

const MASTER = 'sk-debug-query-master';
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function app() {
  const router: Router = createRouter(testConfig({ m: [{}] }, {}, { masterKey: MASTER }));
  const built = buildApp({ router });
  cleanups.push(() => router.close(0));
  cleanups.push(() => built.app.close());
  await built.app.ready();
  return built.app;
}

describe('/debug query parameters', () => {
  it('an unknown parameter is a 400 naming it, on the public page and assets and on the keyed routes', async () => {
    const a = await app();
    for (const path of ['/debug', '/debug/assets/debug.js', '/debug/assets/debug.css', '/debug/machines', '/debug/machines/request.svg', '/debug/requests/r1']) {
      const res = await a.inject({ url: `${path}?token=${MASTER}&verbose=1` });
      expect(res.statusCode, path).toBe(400);
      expect(res.json(), path).toEqual({ error: { message: "Unknown query parameter 'verbose'. Accepted here: token.", type: 'invalid_request_error', param: 'verbose', code: 'invalid_request' } });
    }
  });

  it('token alone is accepted (the page passes its own on), and still authenticates', async () => {
    const a = await app();
    expect((await a.inject({ url: `/debug?token=${MASTER}` })).statusCode).toBe(200);
    expect((await a.inject({ url: `/debug/assets/debug.js?token=${MASTER}` })).statusCode).toBe(200);
    const machines = await a.inject({ url: `/debug/machines?token=${MASTER}` });
    expect(machines.statusCode).toBe(200);
    expect(machines.json().map((m: { id: string }) => m.id)).toEqual(['request', 'scheduler']);
    expect((await a.inject({ url: '/debug/machines?token=wrong' })).statusCode).toBe(401);
    expect((await a.inject({ url: '/debug/machines' })).statusCode).toBe(401);
  });

  it('the live WebSocket is refused with a 400 before the upgrade when the address has an unknown parameter', async () => {
    const a = await app();
    const address = await a.listen({ host: '127.0.0.1', port: 0 });
    const url = address.replace(/^http/, 'ws');
    const status = (query: string) =>
      new Promise<number>((resolve, reject) => {
        const ws = new WebSocket(`${url}/debug/live${query}`);
        ws.on('unexpected-response', (_req, res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        ws.on('open', () => {
          ws.close();
          resolve(101);
        });
        ws.on('error', reject);
      });
    expect(await status(`?token=${MASTER}&x=1`)).toBe(400);
    expect(await status(`?token=${MASTER}`)).toBe(101);
  });
});
