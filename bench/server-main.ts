/**
 * A benchmark child serving one HTTP target on 127.0.0.1: the whole Triage gateway as `npm start`
 * runs it (auth with a master key, the mock deployment, metrics on or off, the access log at info
 * through the CLI's asynchronous destination into /dev/null, or off), or a bare fastify server answering the same JSON
 * body, the ceiling any gateway path on this machine is measured against. Mode `http-only` is the
 * gateway with its router's `schedule` answering at once: what the HTTP layer costs without the queue.
 * Mode `router-api` serves no HTTP: its `schedule` command runs requests through the Router API in
 * this process (the instruction counts of bench/instructions.ts).
 * It also measures the XState floor (bench/xstate-floor.ts) on request, in a process of its own, and,
 * started with `timeRequests`, times each request inside the process (bench/in-process-timer.ts).
 */
import Fastify from 'fastify';
import type { ChatCompletion } from '../src/core/openai-types.js';
import { createGateway, type Gateway, type GatewayOptions } from '../src/gateway.js';
import { createLogDestination } from '../src/log-destination.js';
import { createRouter, type QueueMeta, type Router } from '../src/router.js';
import { benchConfig } from './bench-config.js';
import { serveCommands } from './child-rpc.js';
import { InProcessTimer } from './in-process-timer.js';
import { xstateFloorMicros } from './xstate-floor.js';

let close: (() => Promise<void>) | undefined;
/** Mode `router-api`: the Router its `schedule` command uses. */
let router: Router | undefined;
/** Set when started with `timeRequests`: each request timed inside this process. */
let timer: InProcessTimer | undefined;

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
      if (a.timeRequests === true) (timer = new InProcessTimer()).attach(app.server);
      return { url };
    }
    const config = benchConfig({
      groups: { [String(a.model)]: [{ mockResponse: 'ok', mockDelayMs: 0 }] },
      masterKey: String(a.masterKey),
      metrics: a.metrics === true,
      maxQueueSize: 100_000,
    });
    if (a.mode === 'router-api') {
      const r = createRouter(config);
      router = r;
      close = () => r.close(500);
      return { url: '' };
    }
    // The access log as the CLI writes it (src/cli.ts), into a sink: what it costs is the serializing
    // and the writes, not a disk or a terminal on this machine.
    const log: Pick<GatewayOptions, 'logger' | 'logDestination'> = a.logs === true ? { logger: { level: 'info' }, logDestination: createLogDestination('/dev/null') } : { logger: false };
    const gateway: Gateway = await createGateway({ config, ...log });
    if (a.mode === 'http-only') {
      const completion = mockCompletionBody(String(a.model)) as unknown as ChatCompletion;
      const meta: QueueMeta = { requestId: 'req-http-only', model: String(a.model), priority: 0, deployment: 'bench-mock-0', waitedMs: 0, attempts: 1 };
      gateway.router.schedule = () => Promise.resolve({ kind: 'completion', meta, completion });
    }
    const url = await gateway.listen(0, '127.0.0.1');
    close = () => gateway.close(500);
    if (a.timeRequests === true) (timer = new InProcessTimer()).attach(gateway.app.server);
    return { url };
  },
  /** The in-process times of the requests finished since the last call (started with `timeRequests`). */
  inProcessTimes() {
    if (timer === undefined) throw new Error('this server was not started with timeRequests');
    return timer.take();
  },
  /** Mode `router-api`: `requests` completions through the Router, `connections` at a time; answers how many succeeded. */
  async schedule(a) {
    const r = router;
    if (r === undefined) throw new Error('this child was not started in mode router-api');
    const total = Number(a.requests);
    let next = 0;
    let ok = 0;
    const model = String(a.model);
    const worker = async () => {
      while (next++ < total) {
        await r.scheduleCompletion({ model, messages: [{ role: 'user', content: 'Say ok.' }], priority: 0 });
        ok += 1;
      }
    };
    await Promise.all(Array.from({ length: Number(a.connections) }, worker));
    return { ok };
  },
  xstateFloor(a) {
    return Promise.resolve({ micros: xstateFloorMicros(Number(a.actors), Number(a.rounds)) });
  },
  async close() {
    await close?.();
  },
});
