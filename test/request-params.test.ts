/**
 * Fields checked by both the HTTP routes and the Router API are checked by one function, so a caller
 * gets the same message and `param` whichever layer refuses.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidRequestError } from '../src/errors.js';
import { checkModelParam } from '../src/request-params.js';
import { createRouter, type Router } from '../src/router.js';
import { buildApp } from '../src/server/app.js';
import { testConfig } from './support/test-config.js';

const routers: Router[] = [];
afterEach(async () => {
  while (routers.length > 0) await routers.pop()!.close(0);
});

const MESSAGE = 'model is required and must be a string.';

describe('checkModelParam', () => {
  it('accepts a non-empty string and refuses anything else with a 400 naming model', () => {
    expect(() => checkModelParam('m')).not.toThrow();
    for (const bad of [undefined, '', 5, null, ['m'], { name: 'm' }]) {
      expect(() => checkModelParam(bad)).toThrow(InvalidRequestError);
      expect(() => checkModelParam(bad)).toThrow(MESSAGE);
    }
  });

  it('the Router API and the HTTP route refuse a missing model alike', async () => {
    const router = createRouter(testConfig({ m: [{}] }));
    routers.push(router);
    await expect(router.schedule({ messages: [{ role: 'user', content: 'hi' }] } as never)).rejects.toMatchObject({ code: 'invalid_request', message: MESSAGE, param: 'model' });
    const { app } = buildApp({ router });
    await app.ready();
    const res = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: { model: 7, messages: [{ role: 'user', content: 'hi' }] } });
    await app.close();
    expect(res.statusCode).toBe(400);
    expect(res.json()).toEqual({ error: { message: MESSAGE, type: 'invalid_request_error', param: 'model', code: 'invalid_request' } });
  });
});
