/**
 * A benchmark child serving one HTTP target on 127.0.0.1: the whole Triage gateway (auth with a master
 * key, the mock deployment, metrics on or off), or a bare fastify server answering the same JSON
 * body, the ceiling any gateway path on this machine is measured against.
 */
import Fastify from 'fastify';
import { createGateway, type Gateway } from '../src/gateway.js';
import { benchConfig } from './bench-config.js';
import { serveCommands } from './child-rpc.js';

let close: (() => Promise<void>) | undefined;

/** The body Triage's mock deployment answers (same fields and sizes; the id is fixed here). */
function mockCompletionBody(model: string): Record<string, unknown> {
  return {
    id: 'chatcmpl-0123456789abcdef01234567',
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: 'ok' } }],
    usage: { prompt_tokens: 9, completion_tokens: 1, total_tokens: 10 },
  };
}

serveCommands({
  async start(a) {
    if (a.mode === 'bare') {
      const app = Fastify({ logger: false });
      const body = mockCompletionBody(String(a.model));
      app.post('/queue/chat/completions', async () => body);
      const url = await app.listen({ port: 0, host: '127.0.0.1' });
      close = () => app.close();
      return { url };
    }
    const config = benchConfig({
      groups: { [String(a.model)]: [{ mockResponse: 'ok', mockDelayMs: 0 }] },
      masterKey: String(a.masterKey),
      metrics: a.metrics === true,
      maxQueueSize: 100_000,
    });
    const gateway: Gateway = await createGateway({ config, logger: false });
    const url = await gateway.listen(0, '127.0.0.1');
    close = () => gateway.close(500);
    return { url };
  },
  async close() {
    await close?.();
  },
});
