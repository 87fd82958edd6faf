/**
 * Assembles a running gateway from a config: the router (in-memory or Redis store), the fastify app
 * and its plugins, and an orderly shutdown. The CLI and the integration tests both start it this way.
 */
import type { FastifyServerOptions } from 'fastify';
import type { TriageConfig } from './core/config-types.js';
import { providerUpstreamFactory } from './adapters/provider-upstreams.js';
import type { UpstreamFactory } from './core/upstream.js';
import type { LogDestination } from './log-destination.js';
import type { Clock } from './core/clock.js';
import { createRouter, type Router, type StoreFactory } from './router.js';
import { buildApp, type AppOptions, type TriageApp } from './server/app.js';
import type { KeyRateCheck } from './core/key-rate.js';
import type { Readiness } from './server/status-routes.js';

export interface GatewayOptions {
  config: TriageConfig;
  logger?: FastifyServerOptions['logger'];
  /** Where the logger writes (src/log-destination.ts); close() waits until its last line is written. */
  logDestination?: LogDestination;
  clock?: Clock;
  upstreamFactory?: UpstreamFactory;
  eventStream?: AppOptions['eventStream'];
  /** Request, header and keep-alive timeouts for clients (defaults: DEFAULT_SERVER_TIMEOUTS in server/app.ts). */
  timeouts?: AppOptions['timeouts'];
  /** A shared store (Redis); when absent the queue lives in this process. Its `keyRate`, if any, counts virtual keys' rpm across instances. */
  store?: { storeFactory: StoreFactory; ready(): boolean; close(): Promise<void>; keyRate?: KeyRateCheck };
}

export interface Gateway extends TriageApp {
  router: Router;
  listen(port: number, host: string): Promise<string>;
  /** Drain: stop accepting, answer waiting requests 503, let dispatched calls finish within the grace period. */
  close(graceMs?: number): Promise<void>;
}

export async function createGateway(options: GatewayOptions): Promise<Gateway> {
  const { config } = options;
  const routerOptions: Parameters<typeof createRouter>[1] = { upstreamFactory: options.upstreamFactory ?? providerUpstreamFactory(config.router.defaultMaxTokens) };
  if (options.clock) routerOptions.clock = options.clock;
  if (options.store) routerOptions.storeFactory = options.store.storeFactory;
  const router = createRouter(config, routerOptions);
  const store = options.store;
  const readiness = (): Readiness =>
    store === undefined
      ? { ready: true, status: 'ready', store: 'memory' }
      : store.ready()
        ? { ready: true, status: 'ready', store: 'redis' }
        : { ready: false, status: 'store_unavailable', store: 'redis', detail: 'Redis is not connected; requests are answered 503 until it is back.' };
  const appOptions: Parameters<typeof buildApp>[0] = { router, readiness };
  if (options.logger !== undefined) appOptions.logger = withDestination(options.logger, options.logDestination);
  if (options.eventStream !== undefined) appOptions.eventStream = options.eventStream;
  if (options.timeouts !== undefined) appOptions.timeouts = options.timeouts;
  if (store?.keyRate !== undefined) appOptions.keyRate = store.keyRate;
  if (config.general.publicMetrics) appOptions.publicPaths = ['/metrics'];
  const triage = buildApp(appOptions);
  await triage.app.ready();

  let closing: Promise<void> | undefined;
  return {
    ...triage,
    get draining() {
      return triage.draining;
    },
    router,
    listen: (port, host) => triage.app.listen({ port, host }),
    close: (graceMs = config.general.shutdownGraceMs) =>
      (closing ??= (async () => {
        triage.startDraining();
        await router.close(graceMs);
        // Idle keep-alive sockets close at once; a connection still busy after a short flush is cut.
        const closed = triage.app.close();
        const flush = setTimeout(() => triage.app.server.closeAllConnections(), 500);
        await closed;
        clearTimeout(flush);
        await store?.close();
        await options.logDestination?.flush();
      })()),
  };
}

function withDestination(logger: FastifyServerOptions['logger'], destination: LogDestination | undefined): FastifyServerOptions['logger'] {
  if (destination === undefined || logger === false || logger === undefined) return logger;
  return { ...(logger === true ? {} : logger), stream: destination.stream } as FastifyServerOptions['logger'];
}
