/**
 * The fastify application: authentication, the chat endpoints, status and health, and the error
 * envelope for everything. Plugins for events, the debugger and metrics register on top of it.
 */
import websocket from '@fastify/websocket';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { hostname } from 'node:os';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import { ShuttingDownError, TriageError } from '../errors.js';
import type { Router } from '../router.js';
import { AccessLog, type DirectAccessLog } from './access-log.js';
import { loggerBindings } from './access-line.js';
import type { KeyRateCheck } from '../core/key-rate.js';
import { KeyRing, presentedKey, takeKeyRate, type Caller } from './auth.js';
import { registerChatRoutes } from './chat-routes.js';
import { DebugRecorder, type DebugRecorderOptions } from './debug/inspector.js';
import { DEBUG_PUBLIC_PATHS, registerDebugRoutes } from './debug/routes.js';
import { DEFAULT_EVENT_STREAM_OPTIONS, registerEventsRoute, type EventStreamOptions } from './events-route.js';
import { sendError, toHttpError } from './http-errors.js';
import { createMetrics, registerMetricsRoute } from './metrics.js';
import { requestLoggerFactory } from './request-logger.js';
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
  /** How long a client may take to send a request (see ServerTimeouts); over general_settings' timeouts and DEFAULT_SERVER_TIMEOUTS. */
  timeouts?: Partial<ServerTimeouts>;
  /** Bounds of the statechart debugger's history (`/debug`). */
  debug?: Partial<DebugRecorderOptions>;
  /** How virtual keys' rpm is counted (default: in this process; with Redis, across instances). */
  keyRate?: KeyRateCheck;
}

const ALWAYS_PUBLIC = ['/health/liveliness', '/health/liveness', '/health/readiness'];

/**
 * How long a client may take to send a request, and to read a streamed answer. Node enforces the first
 * two on a sweep every `checkIntervalMs`, so a client is cut between the timeout and the timeout plus
 * one interval. A request that is fully received and waits in the queue is not affected by any of them.
 */
export interface ServerTimeouts {
  /** Whole request (headers and body) must arrive within this (Node's `requestTimeout`); 408 after. */
  requestTimeoutMs: number;
  /** Headers must arrive within this from the first byte / the connection (Node's `headersTimeout`); 408 after. */
  headersTimeoutMs: number;
  /** An idle keep-alive connection is closed after this. */
  keepAliveTimeoutMs: number;
  /** How often Node checks the request and headers timeouts (its `connectionsCheckingInterval`, 30 s by default). */
  checkIntervalMs: number;
  /**
   * A streamed answer whose reader has stopped reading (the socket's buffers full) waits this long for
   * it to read again; then the connection is closed. Without it, such a reader held its socket and the
   * buffered rest of its answer for as long as it stayed connected.
   */
  streamStallMs: number;
}

export const DEFAULT_SERVER_TIMEOUTS: ServerTimeouts = { requestTimeoutMs: 30_000, headersTimeoutMs: 30_000, keepAliveTimeoutMs: 72_000, checkIntervalMs: 5_000, streamStallMs: 60_000 };

/** Query parameters whose values are masked in logged URLs wherever a key might be put by mistake. */
const CREDENTIAL_PARAMS = /([?&;](?:token|key|api[_-]?key|access[_-]?token|auth|authorization|password|secret)=)[^&;#]*/gi;

/** Masks credential-like query values in a logged URL (browsers pass keys as `token=` to WebSockets). */
export function redactUrl(url: string): string {
  // Every credential parameter has an '=': most URLs have none and skip the expression.
  return url.includes('=') ? url.replace(CREDENTIAL_PARAMS, '$1[redacted]') : url;
}

/** What the logger options given to fastify become: pino's options, and how the access line is written. */
interface LogSetup {
  logger: FastifyServerOptions['logger'];
  /** The access line without pino (access-log.ts), when the logger is one this app fully describes. */
  direct: DirectAccessLog | null;
}

/**
 * Request logs never carry keys: no headers, credential-like query values masked, and every configured
 * secret redacted from URLs and error messages (a key put in a path or a model name by mistake).
 * A logger given only a level and a stream (what the CLI, the bench and the tests give) writes
 * pino's default layout, so the access line can be written to that stream directly.
 */
function logSetup(logger: FastifyServerOptions['logger'], redact: (text: string) => string, logUrl: (url: string) => string): LogSetup {
  if (logger === false || logger === undefined) return { logger: false, direct: null };
  const base = logger === true ? {} : (logger as Record<string, unknown>);
  const stream = base.stream as DirectAccessLog['stream'] | undefined;
  const plain = stream !== undefined && Object.keys(base).every((k) => k === 'level' || k === 'stream');
  return {
    logger: {
      ...base,
      serializers: {
        req: (req: { method?: string; url?: string }) => ({ method: req.method, url: logUrl(req.url ?? '') }),
        err: (err: Error & { code?: unknown; statusCode?: unknown }) => ({
          type: err?.name,
          message: redact(String(err?.message ?? err)),
          stack: redact(String(err?.stack ?? '')),
          code: err?.code,
          statusCode: err?.statusCode,
        }),
        ...(base.serializers as Record<string, unknown> | undefined),
      },
    } as FastifyServerOptions['logger'],
    direct: plain ? { stream: stream!, bindings: loggerBindings(process.pid, hostname()) } : null,
  };
}

/**
 * Errors Node's HTTP parser raises before fastify sees a request (a request or its headers too slow,
 * headers too large, malformed HTTP), answered in the OpenAI envelope like every other error. The
 * raw packet Node attaches to parser errors (which can hold an Authorization header) is never logged.
 */
function clientErrorHandler(this: FastifyInstance, err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const error =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? new TriageError('invalid_request', 'The request was not received in time.', { status: 408 })
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? new TriageError('invalid_request', 'The request headers are too large.', { status: 431 })
        : new TriageError('invalid_request', 'Malformed HTTP request.');
  this.log.trace({ code: err.code, status: error.status }, 'client error');
  // Only when no response is under way on this socket: writing into one would corrupt it.
  const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (socket.writable && !inFlight?.headersSent) {
    const body = JSON.stringify(error.toJSON());
    socket.write(
      `HTTP/1.1 ${error.status} ${STATUS_CODES[error.status] ?? 'Error'}\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}

/**
 * A request that asked to upgrade and is answered over HTTP instead (refused, or a route that is not a
 * WebSocket) gets its answer, then its socket is closed: an unauthenticated client must not keep a
 * connection open by asking to upgrade, and Node's keep-alive handling does not cover a socket that
 * asked to upgrade. An accepted upgrade never finishes an HTTP answer, so it is not touched. Set up
 * here, for upgrade requests only: an app-wide onResponse hook made fastify add response listeners to
 * every request.
 */
function closeAfterHttpAnswer(request: FastifyRequest, reply: FastifyReply): void {
  reply.header('connection', 'close');
  reply.raw.once('finish', () => request.raw.socket?.destroySoon());
}

export interface TriageApp {
  app: FastifyInstance;
  keys: KeyRing;
  /** What the statechart debugger (`/debug`) records. */
  debug: DebugRecorder;
  /** Stop taking new work: later requests get 503 shutting_down. */
  startDraining(): void;
  readonly draining: boolean;
}

export function buildApp(options: AppOptions): TriageApp {
  const { router } = options;
  const general = router.config.general;
  // Defaults, then general_settings (YAML), then the programmatic option.
  const timeouts = { ...DEFAULT_SERVER_TIMEOUTS, ...router.config.general.clientTimeouts, ...options.timeouts };
  const eventStream = { ...DEFAULT_EVENT_STREAM_OPTIONS, ...options.eventStream };
  const redact = (text: string) => router.redact(text);
  const logUrl = (url: string) => redact(redactUrl(url));
  const log = logSetup(options.logger ?? false, redact, logUrl);
  const app = Fastify({
    logger: log.logger,
    bodyLimit: general.maxRequestBodyBytes,
    // Slow clients (headers or body trickling in) are cut off instead of holding a socket for ever.
    // No socket inactivity timeout: a streaming request waits in the queue with no bytes sent.
    requestTimeout: timeouts.requestTimeoutMs,
    connectionTimeout: 0,
    keepAliveTimeout: timeouts.keepAliveTimeoutMs,
    http: {
      requestTimeout: timeouts.requestTimeoutMs,
      headersTimeout: Math.min(timeouts.headersTimeoutMs, timeouts.requestTimeoutMs),
      connectionsCheckingInterval: timeouts.checkIntervalMs,
    },
    clientErrorHandler,
    // One line per request (access-log.ts) instead of fastify's two.
    logController: new AccessLog(logUrl, log.direct),
    // request.log is made when something logs through it (request-logger.ts); without a logger,
    // fastify's own shortcut (no child at all) stays.
    ...(log.logger === false ? {} : { childLoggerFactory: requestLoggerFactory }),
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
  });
  // Node answers an `Expect` other than 100-continue with a bare 417 unless asked: answer in the envelope.
  app.server.on('checkExpectation', (_req, res) => {
    const body = JSON.stringify(new TriageError('invalid_request', 'Only "Expect: 100-continue" is supported.', { status: 417 }).toJSON());
    res.writeHead(417, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close' });
    res.end(body);
  });
  // Error answers (and WebSocket error messages) echo what a caller sent: a key sent as a model name
  // or a path, or an upstream's message repeating its api key, is redacted before it leaves.
  app.decorate('redactSecrets', redact);
  app.removeContentTypeParser('text/plain');

  const keys = new KeyRing(general);
  const publicPaths = new Set([...ALWAYS_PUBLIC, ...DEBUG_PUBLIC_PATHS, ...(options.publicPaths ?? [])]);
  let draining = false;

  app.decorateRequest('caller', null as unknown as Caller);
  app.decorateRequest('queueMeta', null);
  // Callback-style hooks, not async ones: an async hook costs a promise per request on every route.
  // A hook that answers (reply.send) does not call done: fastify stops the lifecycle there.
  app.addHook('onRequest', (request: FastifyRequest, reply, done) => {
    if (request.raw.headers.upgrade !== undefined) closeAfterHttpAnswer(request, reply);
    const path = request.url.split('?')[0];
    if (publicPaths.has(path)) {
      request.caller = { kind: 'open', name: 'anonymous' };
      return done();
    }
    if (draining) return void sendError(reply, new ShuttingDownError());
    try {
      // `?token=` exists for browsers opening WebSockets and the debugger page: GET requests only.
      const queryToken = request.method === 'GET' ? (request.query as Record<string, unknown> | undefined)?.token : undefined;
      request.caller = keys.authenticate(presentedKey(request.headers, queryToken));
    } catch (e) {
      return void sendError(reply, e);
    }
    done();
  });

  app.setErrorHandler((error, request, reply) => {
    // Only the gateway's own faults are logged as errors: a caller's bad request is an answer, not a fault.
    const status = toHttpError(error).status;
    if (status >= 500) request.log.error({ err: error, url: logUrl(request.url) }, 'request failed');
    return sendError(reply, error);
  });
  app.setNotFoundHandler((request, reply) =>
    sendError(reply, new TriageError('not_found', `No route for ${request.method} ${redactUrl(request.url.split('?')[0]).slice(0, 200)}.`)),
  );

  registerChatRoutes(app, router, options.keyRate ?? takeKeyRate, { streamStallMs: timeouts.streamStallMs });
  if (general.metrics) registerMetricsRoute(app, createMetrics(router));
  const debug = new DebugRecorder(router, options.debug);
  // The WebSocket plugin and its two routes live in a scope of their own: the plugin adds an onRequest
  // and an onResponse hook, and a handler wrapper, to every route in its scope, and an onResponse hook
  // makes fastify add response listeners to each request. The chat routes stay outside.
  void app.register(async (scoped) => {
    await scoped.register(websocket, {
      // The configured limit (eventStream.maxMessageBytes), not the default: a larger message closes with 1009.
      options: { maxPayload: eventStream.maxMessageBytes },
      // On shutdown, say goodbye (1001 "going away"); a client that does not answer is cut shortly after.
      preClose(done) {
        for (const client of scoped.websocketServer.clients) {
          client.close(1001, 'gateway shutting down');
          setTimeout(() => client.terminate(), 500).unref();
        }
        scoped.websocketServer.close(() => undefined);
        done();
      },
    });
    registerEventsRoute(scoped, router, eventStream);
    registerDebugRoutes(scoped, router, debug);
  });
  app.addHook('onClose', async () => debug.close());
  const readiness = options.readiness ?? (() => ({ ready: !draining, status: draining ? 'draining' : 'ready', store: 'memory' }) as Readiness);
  registerStatusRoutes(app, router, () => {
    const r = readiness();
    return draining ? { ...r, ready: false, status: 'draining' } : r;
  });

  return {
    app,
    keys,
    debug,
    startDraining: () => {
      draining = true;
    },
    get draining() {
      return draining;
    },
  };
}
