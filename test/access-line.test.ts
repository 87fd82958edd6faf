/**
 * The access line serialized by hand (src/server/access-line.ts): valid JSON for any strings, the
 * same fields in the same order as pino writes for the same call, non-finite numbers as null, the
 * response time to the microsecond.
 */
import { hostname } from 'node:os';
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { accessLine, loggerBindings, millis, type AccessLineFields } from '../src/server/access-line.js';

const fields: AccessLineFields = {
  time: 1_764_900_000_123,
  reqId: 'req-1f',
  method: 'POST',
  url: '/queue/chat/completions',
  statusCode: 200,
  responseTime: 0.813,
  queue: { requestId: '8c1e0f5a-7d3b-4c2e-9a10-3b5d7e9f1a2c', model: 'gpt-4o', priority: 3, deployment: 'gpt-4o-east', waitedMs: 12.6, attempts: 1 },
  tenant: 'team-a',
};

/** What pino itself writes for the access line's call, with the same bindings and request id. */
function pinoLine(f: AccessLineFields): string {
  let out = '';
  const sink = new Writable({
    write(chunk, _enc, done) {
      out += String(chunk);
      done();
    },
  });
  const child = pino({ level: 'info', timestamp: () => `,"time":${f.time}` }, sink).child({ reqId: f.reqId });
  const q = f.queue;
  child.info(
    {
      req: { method: f.method, url: f.url },
      res: { statusCode: f.statusCode },
      responseTime: f.responseTime,
      queue: q === null ? undefined : { requestId: q.requestId, model: q.model, priority: q.priority, tenant: f.tenant, deployment: q.deployment, waitedMs: Math.round(q.waitedMs), attempts: q.attempts },
    },
    'request completed',
  );
  // pino writes synchronously into the Writable's buffer: the line is here.
  return out;
}

const bindings = loggerBindings(process.pid, hostname());

describe('accessLine', () => {
  it('writes the fields pino writes for the same call, in the same order, on one line', () => {
    const line = accessLine(bindings, fields);
    expect(line.endsWith('}\n')).toBe(true);
    expect(line.indexOf('\n')).toBe(line.length - 1);
    const ours = JSON.parse(line) as Record<string, unknown>;
    const theirs = JSON.parse(pinoLine(fields)) as Record<string, unknown>;
    expect(ours).toEqual(theirs);
    expect(Object.keys(ours)).toEqual(Object.keys(theirs));
    expect(Object.keys(ours.queue as object)).toEqual(Object.keys(theirs.queue as object));
    expect(ours).toMatchObject({ level: 30, pid: process.pid, hostname: hostname(), reqId: 'req-1f', msg: 'request completed', queue: { waitedMs: 13, tenant: 'team-a' } });
  });

  it('leaves out the queue for a request that did not queue, and the tenant when there is none', () => {
    const plain = { ...fields, queue: null };
    expect(JSON.parse(accessLine(bindings, plain))).toEqual(JSON.parse(pinoLine(plain)));
    expect(JSON.parse(accessLine(bindings, plain)).queue).toBeUndefined();
    const noTenant = { ...fields, tenant: undefined };
    const parsed = JSON.parse(accessLine(bindings, noTenant)) as { queue: Record<string, unknown> };
    expect(parsed).toEqual(JSON.parse(pinoLine(noTenant)));
    expect('tenant' in parsed.queue).toBe(false);
  });

  it('escapes every string: quotes, backslashes, newlines, control characters, non-ASCII and lone surrogates', () => {
    const nasty = 'a"b\\c\nd\re\tf\u0000g\u001fh\u2028i é 😀 \ud800 </script>';
    const f: AccessLineFields = { ...fields, url: `/x?q=${nasty}`, method: nasty, reqId: nasty, tenant: nasty, queue: { ...fields.queue!, model: nasty, deployment: nasty, requestId: nasty } };
    const line = accessLine(bindings, f);
    expect(line.indexOf('\n')).toBe(line.length - 1);
    const parsed = JSON.parse(line) as { req: { url: string; method: string }; reqId: string; queue: Record<string, unknown> };
    expect(parsed.req.url).toBe(`/x?q=${nasty}`);
    expect(parsed.req.method).toBe(nasty);
    expect(parsed.reqId).toBe(nasty);
    expect(parsed.queue).toMatchObject({ model: nasty, deployment: nasty, requestId: nasty, tenant: nasty });
    expect(parsed).toEqual(JSON.parse(pinoLine(f)));
  });

  it('writes a number that is not finite as null, as pino does', () => {
    const f: AccessLineFields = { ...fields, responseTime: Number.NaN, queue: { ...fields.queue!, priority: Number.POSITIVE_INFINITY } };
    const parsed = JSON.parse(accessLine(bindings, f)) as { responseTime: unknown; queue: { priority: unknown } };
    expect(parsed.responseTime).toBeNull();
    expect(parsed.queue.priority).toBeNull();
    expect(parsed).toEqual(JSON.parse(pinoLine(f)));
  });

  it('writes the response time in milliseconds rounded to the microsecond', () => {
    const cases: Array<[number, string]> = [
      [0.5123, '0.512'],
      [0.5125, '0.513'],
      [1, '1.000'],
      [12.0456, '12.046'],
      [0.0004, '0.000'],
      [0.0496, '0.050'],
      [999.9996, '1000.000'],
      [123_456.7891, '123456.789'],
      [-0.25, '-0.250'],
      [-0.0001, '0.000'],
    ];
    for (const [ms, text] of cases) {
      expect(millis(ms)).toBe(text);
      expect(Math.abs((JSON.parse(millis(ms)) as number) - ms)).toBeLessThanOrEqual(0.0005 + 1e-12);
    }
    expect(JSON.parse(accessLine(bindings, { ...fields, responseTime: 2.71828 })).responseTime).toBe(2.718);
  });

  it('escapes the host name in the bindings', () => {
    expect(JSON.parse(`{"level":30${loggerBindings(7, 'h"o\\st')}}`)).toEqual({ level: 30, pid: 7, hostname: 'h"o\\st' });
  });
});
