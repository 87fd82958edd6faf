/**
 * One log line per request, written when its answer ends: method, path, status, response time, and for
 * a chat completion what the queue did (request id, model, priority, tenant, deployment, wait,
 * attempts). fastify's default is two lines per request at info, `incoming request` and `request
 * completed`; the first adds nothing the second does not say, and every line is serialized and
 * written. `incoming request` is kept at debug, for following a request that waits long.
 *
 * A LogController (fastify's hook for its own log lines), not an onResponse hook: such a hook makes
 * fastify add response listeners to every request, the chat routes included (docs/performance.md).
 */
import { LogController, type FastifyReply, type FastifyRequest } from 'fastify';
import type { QueueMeta } from '../router.js';
import type { Caller } from './auth.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** What the queue did, left by the chat routes for the access log line; null elsewhere. */
    queueMeta: QueueMeta | null;
  }
}

export class AccessLog extends LogController {
  override incomingRequest(request: FastifyRequest): void {
    if (this.isLogDisabled(request)) return;
    request.log.debug({ req: request }, 'incoming request');
  }

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (this.isLogDisabled(request)) return;
    const line: Record<string, unknown> = { req: request, res: reply, responseTime: reply.elapsedTime };
    const m = request.queueMeta;
    if (m !== null && m !== undefined) {
      const tenant = (request as FastifyRequest & { caller: Caller | null }).caller?.name;
      line.queue = { requestId: m.requestId, model: m.model, priority: m.priority, tenant, deployment: m.deployment, waitedMs: Math.round(m.waitedMs), attempts: m.attempts };
    }
    if (error) {
      line.err = error;
      reply.log.error(line, 'request errored');
    } else reply.log.info(line, 'request completed');
  }
}
