/**
 * The access log (src/server/access-log.ts): one line per request when its answer ends, with what the
 * queue did for a chat completion; fastify's `incoming request` line only at debug.
 */
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { chat, startGateway, waitFor, type RunningGateway } from './support/gateway.js';
import { testConfig } from './support/test-config.js';

const KEY = 'sk-access-log-team-a-0123456789';

interface LogLine {
  level: number;
  msg: string;
  req?: { method: string; url: string };
  res?: { statusCode: number };
  responseTime?: number;
  queue?: Record<string, unknown>;
}

const running: RunningGateway[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((g) => g.stop()));
});

async function gatewayWithLog(level: string, loggerExtra: Record<string, unknown> = {}): Promise<{ g: RunningGateway; lines: LogLine[] }> {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const text of String(chunk).split('\n')) if (text.trim() !== '') lines.push(JSON.parse(text) as LogLine);
      done();
    },
  });
  const config = testConfig({ m: [{ id: 'm-east' }] }, {}, { keys: [{ key: KEY, name: 'team-a' }] });
  const g = await startGateway(config, { logger: { level, stream: sink, ...loggerExtra } });
  running.push(g);
  return { g, lines };
}

describe('the access log', () => {
  it('writes one line per chat completion at info, with the queue fields, and no incoming-request line', async () => {
    const { g, lines } = await gatewayWithLog('info');
    const { data, response } = await g.client(KEY).chat.completions.create(chat('m', 'hi', 3)).withResponse();
    expect(data.choices[0]?.message.content).toBe('ok');
    const line = await waitFor(() => lines.find((l) => l.msg === 'request completed'), 'the access log line');
    expect(line).toMatchObject({
      level: 30,
      req: { method: 'POST', url: '/chat/completions' },
      res: { statusCode: 200 },
      queue: { requestId: response.headers.get('x-triage-request-id'), model: 'm', priority: 3, tenant: 'team-a', deployment: 'm-east', attempts: 1 },
    });
    expect(typeof line.responseTime).toBe('number');
    expect(line.queue!.waitedMs).toBeGreaterThanOrEqual(0);
    expect(lines.filter((l) => l.msg === 'incoming request')).toEqual([]);
    expect(lines.filter((l) => l.msg === 'request completed')).toHaveLength(1);
    // The key itself is never written.
    expect(JSON.stringify(lines)).not.toContain(KEY);
  });

  it('logs a streamed completion once, after its last chunk, with the queue fields', async () => {
    const { g, lines } = await gatewayWithLog('info');
    const stream = await g.client(KEY).chat.completions.create({ ...chat('m', 'hi'), stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    expect(text).toBe('ok');
    const line = await waitFor(() => lines.find((l) => l.msg === 'request completed'), 'the access log line');
    expect(line).toMatchObject({ level: 30, res: { statusCode: 200 }, queue: { model: 'm', tenant: 'team-a', deployment: 'm-east', attempts: 1 } });
    expect(lines.filter((l) => l.msg === 'request completed')).toHaveLength(1);
  });

  it('logs a refused request with its status and no queue fields, and other routes too', async () => {
    const { g, lines } = await gatewayWithLog('info');
    const r = await fetch(`${g.url}/queue/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` }, body: JSON.stringify(chat('nope', 'hi')) });
    expect(r.status).toBe(404);
    await r.text();
    const refused = await waitFor(() => lines.find((l) => l.req?.url === '/queue/chat/completions'), 'the refused request line');
    expect(refused).toMatchObject({ level: 30, msg: 'request completed', res: { statusCode: 404 } });
    expect(refused.queue).toBeUndefined();
    const health = await fetch(`${g.url}/health/liveliness`);
    expect(health.status).toBe(200);
    await health.text();
    await waitFor(() => lines.find((l) => l.req?.url === '/health/liveliness' && l.res?.statusCode === 200), 'the health check line');
    expect(lines.filter((l) => l.msg === 'request completed')).toHaveLength(2);
  });

  it('keeps the incoming-request line at debug, before the answer', async () => {
    const { g, lines } = await gatewayWithLog('debug');
    await g.client(KEY).chat.completions.create(chat('m', 'hi'));
    await waitFor(() => lines.find((l) => l.msg === 'request completed'), 'the access log line');
    const incoming = lines.filter((l) => l.msg === 'incoming request');
    expect(incoming).toHaveLength(1);
    expect(incoming[0]).toMatchObject({ level: 20, req: { method: 'POST', url: '/chat/completions' } });
    expect(lines.indexOf(incoming[0]!)).toBeLessThan(lines.findIndex((l) => l.msg === 'request completed'));
  });
});

describe('the access line', () => {
  it('writes exactly one line per request when many are answered together', async () => {
    const { g, lines } = await gatewayWithLog('info');
    const client = g.client(KEY);
    const answers = await Promise.all(Array.from({ length: 60 }, (_, i) => client.chat.completions.create(chat('m', `hi ${i}`, i % 5)).withResponse()));
    const ids = answers.map((a) => a.response.headers.get('x-triage-request-id'));
    await waitFor(() => (lines.filter((l) => l.msg === 'request completed').length >= 60 ? true : undefined), 'sixty access lines');
    const completed = lines.filter((l) => l.msg === 'request completed');
    expect(completed.map((l) => l.queue?.requestId).sort()).toEqual(ids.sort());
    expect(new Set(completed.map((l) => (l as { reqId?: string }).reqId)).size).toBe(60);
  });

  it('redacts credential query values and configured secrets from the logged URL', async () => {
    const { g, lines } = await gatewayWithLog('info');
    const inQuery = await fetch(`${g.url}/health/liveliness?api_key=${KEY}&x=1`);
    await inQuery.text();
    const inPath = await fetch(`${g.url}/v1/models/${KEY}`, { headers: { authorization: `Bearer ${KEY}` } });
    expect(inPath.status).toBe(404);
    await inPath.text();
    const logged = await waitFor(() => {
      const completed = lines.filter((l) => l.msg === 'request completed');
      return completed.length >= 2 ? completed : undefined;
    }, 'two access lines');
    expect(logged.map((l) => l.req?.url)).toEqual(['/health/liveliness?api_key=[redacted]&x=1', '/v1/models/[redacted]']);
    expect(JSON.stringify(lines)).not.toContain(KEY);
  });

  it('goes through pino, with the same fields, when the logger is configured beyond a level and a stream', async () => {
    const { g, lines } = await gatewayWithLog('info', { base: { service: 'triage-test' } });
    await g.client(KEY).chat.completions.create(chat('m', 'hi', 2));
    const line = await waitFor(() => lines.find((l) => l.msg === 'request completed'), 'the access log line');
    expect(line).toMatchObject({ level: 30, service: 'triage-test', req: { method: 'POST', url: '/chat/completions' }, res: { statusCode: 200 }, queue: { model: 'm', priority: 2, tenant: 'team-a', deployment: 'm-east', attempts: 1 } });
    expect((line as { pid?: number }).pid).toBeUndefined();
  });
});

describe('the error log', () => {
  it("logs the gateway's own faults at error level with secrets redacted from the URL, and a caller's bad request not at all", async () => {
    const { buildApp } = await import('../src/server/app.js');
    const { createRouter } = await import('../src/router.js');
    const { TriageError } = await import('../src/errors.js');
    const lines: LogLine[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        for (const text of String(chunk).split('\n')) if (text.trim() !== '') lines.push(JSON.parse(text) as LogLine);
        done();
      },
    });
    const router = createRouter(testConfig({ m: [{}] }, {}, { keys: [{ key: KEY, name: 'team-a' }] }));
    const { app } = buildApp({ router, logger: { level: 'info', stream: sink } });
    app.get('/caller-fault', () => {
      throw new TriageError('invalid_request', 'bad input');
    });
    app.get('/own-fault', () => {
      throw new Error('a bug');
    });
    await app.ready();
    const headers = { authorization: `Bearer ${KEY}` };
    expect((await app.inject({ url: '/caller-fault', headers })).statusCode).toBe(400);
    expect((await app.inject({ url: `/own-fault?x=${KEY}`, headers })).statusCode).toBe(500);
    await app.close();
    await router.close(0);
    const errors = lines.filter((l) => l.msg === 'request failed');
    expect(errors).toHaveLength(1);
    expect(errors[0].level).toBe(50);
    expect(JSON.stringify(errors[0])).toContain('/own-fault');
    expect(JSON.stringify(lines)).not.toContain(KEY);
  });
});
