/**
 * request.log made on demand (src/server/request-logger.ts): no child logger for a request that logs
 * nothing at an enabled level; the same line as pino's child once something does.
 */
import { Writable } from 'node:stream';
import Fastify, { LogController } from 'fastify';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { RequestLogger, requestLoggerFactory } from '../src/server/request-logger.js';

function capture(): { sink: Writable; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const text of String(chunk).split('\n')) if (text !== '') lines.push(JSON.parse(text) as Record<string, unknown>);
      done();
    },
  });
  return { sink, lines };
}

describe('RequestLogger', () => {
  it('makes no child for lines below the level, and the real child, with its bindings, for the first line at it', () => {
    const { sink, lines } = capture();
    const root = pino({ level: 'info' }, sink);
    const log = new RequestLogger(root, { reqId: 'req-7' });
    log.debug({ a: 1 }, 'dropped');
    log.trace('dropped too');
    expect(log.materialized).toBe(false);
    expect(log.level).toBe('info');
    log.warn({ b: 2 }, 'kept');
    log.info('and this');
    expect(log.materialized).toBe(true);
    expect(lines).toMatchObject([
      { level: 40, reqId: 'req-7', b: 2, msg: 'kept' },
      { level: 30, reqId: 'req-7', msg: 'and this' },
    ]);
  });

  it('sets its own level on the child only, and then writes what that level lets through', () => {
    const { sink, lines } = capture();
    const root = pino({ level: 'info' }, sink);
    const log = new RequestLogger(root, { reqId: 'req-8' });
    log.level = 'debug';
    expect(log.materialized).toBe(true);
    expect(log.level).toBe('debug');
    expect(root.level).toBe('info');
    log.debug('now written');
    root.debug('not by the root');
    expect(lines).toMatchObject([{ level: 20, reqId: 'req-8', msg: 'now written' }]);
  });

  it('gives children that carry its bindings and their own', () => {
    const { sink, lines } = capture();
    const log = new RequestLogger(pino({ level: 'info' }, sink), { reqId: 'req-9' });
    log.child({ part: 'upstream' }).error('failed');
    expect(lines).toMatchObject([{ level: 50, reqId: 'req-9', part: 'upstream', msg: 'failed' }]);
  });

  it('leaves a logger that cannot say which levels are enabled to its own child (fastify without a logger)', async () => {
    const calls: string[] = [];
    const nullish = { level: 'silent', info: () => calls.push('info'), error: () => undefined, warn: () => undefined, debug: () => calls.push('debug'), fatal: () => undefined, trace: () => undefined, silent: () => undefined, child: () => nullish };
    const child = requestLoggerFactory(nullish, { reqId: 'req-1' }, {});
    expect(child).toBe(nullish);
    child.debug('dropped');
    expect(calls).toEqual(['debug']);
    const app = Fastify({ logger: false, childLoggerFactory: requestLoggerFactory });
    app.get('/x', (request) => {
      request.log.info('nowhere');
      return { ok: true };
    });
    expect((await app.inject({ url: '/x' })).statusCode).toBe(200);
    await app.close();
  });

  it("is fastify's request.log: a handler's line carries the request id; a route with a level of its own gets the real child", async () => {
    const { sink, lines } = capture();
    const app = Fastify({ logger: { level: 'info', stream: sink }, childLoggerFactory: requestLoggerFactory, logController: new LogController({ disableRequestLogging: true }) });
    const seen: Array<{ lazy: boolean; materialized: boolean }> = [];
    app.get('/quiet', (request) => {
      seen.push({ lazy: request.log instanceof RequestLogger, materialized: (request.log as RequestLogger).materialized });
      return { ok: true };
    });
    app.get('/loud', (request) => {
      request.log.info({ n: 1 }, 'handler line');
      return { ok: true };
    });
    app.get('/own-level', { logLevel: 'debug' }, (request) => {
      seen.push({ lazy: request.log instanceof RequestLogger, materialized: false });
      request.log.debug('route debug line');
      return { ok: true };
    });
    const quiet = await app.inject({ url: '/quiet' });
    await app.inject({ url: '/loud' });
    await app.inject({ url: '/own-level' });
    await app.close();
    expect(seen).toEqual([
      { lazy: true, materialized: false },
      { lazy: false, materialized: false },
    ]);
    expect(lines).toMatchObject([
      { level: 30, reqId: 'req-2', n: 1, msg: 'handler line' },
      { level: 20, reqId: 'req-3', msg: 'route debug line' },
    ]);
    expect(quiet.statusCode).toBe(200);
  });
});
