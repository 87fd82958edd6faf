/**
 * The fastify application: authentication, the chat endpoints, status and health, and the error
 * envelope for everything. Plugins for events, the debugger and metrics register on top of it.
 */
import websocket from '@fastify/websocket';
import Fastify, { type FastifyInstance, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import { TriageError } from '../errors.js';
import type { Router } from '../router.js';
import { KeyRing, presentedKey, type Caller } from './auth.js';
import { registerChatRoutes } from './chat-routes.js';
import { DEFAULT_EVENT_STREAM_OPTIONS, registerEventsRoute, type EventStreamOptions } from './events-route.js';
import { sendError } from './http-errors.js';
import { createMetrics, registerMetricsRoute } from './metrics.js';
import { registerStatusRoutes, type Readiness } from './status-routes.js';

declare module 'fastify' {
  interface FastifyRequest {
    caller: Caller;
  }
}

export interface AppOptions {
  router: Router;
  logger?: FastifyServerOptions['logger'];
  readiness?: () => Readiness;
  /** Paths served without a key even when keys are configured. */
  publicPaths?: string[];
  eventStream?: Partial<EventStreamOptions>;
}

const ALWAYS_PUBLIC = ['/health/liveliness', '/health/liveness', '/health/readiness'];

/** Removes `token=` values from logged URLs (browsers pass keys that way to WebSockets). */
export function redactUrl(url: string): string {
  return url.replace(/([?&]token=)[^&]*/gi, '$1[redacted]');
}

/** Request logs never carry keys: no headers, and `token=` values masked in URLs. */
function withRedaction(logger: FastifyServerOptions['logger']): FastifyServerOptions['logger'] {
  if (logger === false || logger === undefined) return false;
  const base = logger === true ? {} : (logger as Record<string, unknown>);
  return {
    ...base,
    serializers: {
      req: (req: { method?: string; url?: string }) => ({ method: req.method, url: redactUrl(req.url ?? '') }),
      ...(base.serializers as Record<string, unknown> | undefined),
    },
  } as FastifyServerOptions['logger'];
}

export interface TriageApp {
  app: FastifyInstance;
  keys: KeyRing;
  /** Stop taking new work: later requests get 503 shutting_down. */
  startDraining(): void;
  readonly draining: boolean;
}

export function buildApp(options: AppOptions): TriageApp {
  const { router } = options;
  const general = router.config.general;
  const app = Fastify({
    logger: withRedaction(options.logger ?? false),
    bodyLimit: general.maxRequestBodyBytes,
    // Slow clients (headers or body trickling in) are cut off instead of holding a socket for ever.
    requestTimeout: 30_000,
    connectionTimeout: 0,
    keepAliveTimeout: 72_000,
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
  });
  app.removeContentTypeParser('text/plain');

  const keys = new KeyRing(general);
  const publicPaths = new Set([...ALWAYS_PUBLIC, ...(options.publicPaths ?? [])]);
  let draining = false;

  app.decorateRequest('caller', null as unknown as Caller);
  app.addHook('onRequest', async (request: FastifyRequest, reply) => {
    const path = request.url.split('?')[0];
    if (draining && !publicPaths.has(path)) return sendError(reply, new TriageError('shutting_down'));
    if (publicPaths.has(path)) {
      request.caller = { kind: 'open', name: 'anonymous' };
      return;
    }
    try {
      request.caller = keys.authenticate(presentedKey(request.headers, (request.query as Record<string, unknown> | undefined)?.token));
    } catch (e) {
      return sendError(reply, e);
    }
  });

  // A refused WebSocket upgrade gets its HTTP answer, then the socket is closed: an unauthenticated
  // client must not keep a connection open by asking to upgrade.
  app.addHook('onResponse', async (request, reply) => {
    if (request.raw.headers.upgrade !== undefined && reply.statusCode >= 400) request.raw.socket?.destroySoon();
  });
  app.addHook('onRequest', async (request, reply) => {
    if (request.raw.headers.upgrade !== undefined) reply.header('connection', 'close');
  });

  app.setErrorHandler((error, request, reply) => {
    if ((error as { statusCode?: number }).statusCode === undefined || (error as { statusCode?: number }).statusCode! >= 500) {
      request.log.error({ err: error, url: redactUrl(request.url) }, 'request failed');
    }
    return sendError(reply, error);
  });
  app.setNotFoundHandler((request, reply) =>
    sendError(reply, new TriageError('not_found', `No route for ${request.method} ${redactUrl(request.url.split('?')[0]).slice(0, 200)}.`)),
  );

  registerChatRoutes(app, router);
  if (general.metrics) registerMetricsRoute(app, createMetrics(router));
  void app.register(websocket, {
    options: { maxPayload: DEFAULT_EVENT_STREAM_OPTIONS.maxMessageBytes },
    // On shutdown, say goodbye (1001 "going away"); a client that does not answer is cut shortly after.
    preClose(done) {
      for (const client of app.websocketServer.clients) {
        client.close(1001, 'gateway shutting down');
        setTimeout(() => client.terminate(), 500).unref();
      }
      app.websocketServer.close(() => undefined);
      done();
    },
  });
  const eventStream = { ...DEFAULT_EVENT_STREAM_OPTIONS, ...options.eventStream };
  void app.register(async (scoped) => registerEventsRoute(scoped, router, eventStream));
  const readiness = options.readiness ?? (() => ({ ready: !draining, status: draining ? 'draining' : 'ready', store: 'memory' }) as Readiness);
  registerStatusRoutes(app, router, () => {
    const r = readiness();
    return draining ? { ...r, ready: false, status: 'draining' } : r;
  });

  return {
    app,
    keys,
    startDraining: () => {
      draining = true;
    },
    get draining() {
      return draining;
    },
  };
}
