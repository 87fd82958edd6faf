/**
 * One log line per request, written when its answer ends: method, path, status, response time, and for
 * a chat completion what the queue did (request id, model, priority, tenant, deployment, wait,
 * attempts). fastify's default is two lines per request at info, `incoming request` and `request
 * completed`; the first adds nothing the second does not say, and every line is serialized and
 * written. `incoming request` is kept at debug, for following a request that waits long.
 *
 * A LogController (fastify's hook for its own log lines), not an onResponse hook: such a hook makes
 * fastify add response listeners to every request, the chat routes included (docs/performance.md).
 *
 * The line of a request that ended without an error is serialized here (access-line.ts) and written
 * straight to the logger's destination, when the logger writes pino's default layout; a request
 * that ended with an error, or a logger configured otherwise, goes through pino.
 */
import { LogController, type FastifyReply, type FastifyRequest } from 'fastify';
import type { QueueMeta } from '../router.js';
import { accessLine } from './access-line.js';
import type { Caller } from './auth.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** What the queue did, left by the chat routes for the access log line; null elsewhere. */
    queueMeta: QueueMeta | null;
  }
}

/** Where the line goes when written without pino: the destination pino writes to, and its bindings. */
export interface DirectAccessLog {
  stream: { write(line: string): unknown };
  /** The logger's own fields in pino's layout (access-line.ts's loggerBindings). */
  bindings: string;
}

export class AccessLog extends LogController {
  /**
   * `logUrl`: the URL as it may be logged (secrets redacted). `direct`: write successful requests'
   * lines without pino (null: every line through pino).
   */
  constructor(
    private readonly logUrl: (url: string) => string,
    private readonly direct: DirectAccessLog | null,
  ) {
    super();
  }

  override incomingRequest(request: FastifyRequest): void {
    if (this.isLogDisabled(request)) return;
    request.log.debug({ req: request }, 'incoming request');
  }

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (this.isLogDisabled(request)) return;
    const m = request.queueMeta ?? null;
    const tenant = (request as FastifyRequest & { caller: Caller | null }).caller?.name;
    const direct = this.direct;
    if (direct !== null && !error) {
      if (!(request.server.log as unknown as { isLevelEnabled(level: string): boolean }).isLevelEnabled('info')) return;
      direct.stream.write(
        accessLine(direct.bindings, {
          time: Date.now(),
          reqId: request.id,
          method: request.method,
          url: this.logUrl(request.url),
          statusCode: reply.statusCode,
          responseTime: reply.elapsedTime,
          queue: m,
          tenant,
        }),
      );
      return;
    }
    const line: Record<string, unknown> = { req: request, res: reply, responseTime: reply.elapsedTime };
    if (m !== null) line.queue = { requestId: m.requestId, model: m.model, priority: m.priority, tenant, deployment: m.deployment, waitedMs: Math.round(m.waitedMs), attempts: m.attempts };
    if (error) {
      line.err = error;
      reply.log.error(line, 'request errored');
    } else reply.log.info(line, 'request completed');
  }
}
