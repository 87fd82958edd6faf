/** Read-only endpoints: the model list, the queue's state, and health probes. */
import type { FastifyInstance } from 'fastify';
import { endpointsOfMode } from '../core/endpoints.js';
import type { Router } from '../router.js';
import type { Caller } from './auth.js';
import { sendError } from './http-errors.js';
import { checkQueryParams } from './query-params.js';

/** `/queue/status` takes how many waiters to list, and `token` as every GET does. */
const STATUS_PARAMS: ReadonlySet<string> = new Set(['waiters', 'token']);

export interface Readiness {
  ready: boolean;
  status: 'ready' | 'draining' | 'store_unavailable';
  store: 'memory' | 'redis';
  detail?: string;
}

export function registerStatusRoutes(app: FastifyInstance, router: Router, readiness: () => Readiness): void {
  const started = Math.floor(Date.now() / 1000);
  const models = async () => ({
    object: 'list',
    // `mode` as LiteLLM names it, and the endpoints (their /v1 paths' names) the group answers on.
    data: router.listedModels.map((id) => {
      const mode = router.modeOf(id) ?? 'chat';
      return { id, object: 'model', created: started, owned_by: 'triage', mode, endpoints: endpointsOfMode(mode) };
    }),
  });
  app.get('/v1/models', models);
  app.get('/models', models);

  app.get('/queue/status', async (request, reply) => {
    // Answered here, not thrown: the app's error handler logs a thrown error as a failure.
    try {
      checkQueryParams(request.query, STATUS_PARAMS);
    } catch (e) {
      return sendError(reply, e);
    }
    const q = request.query as { waiters?: string };
    const limit = q.waiters !== undefined && /^\d{1,4}$/.test(q.waiters) ? Number(q.waiters) : 50;
    const models = await router.queueStatus(limit);
    // As in the event stream's snapshot: a key that is not the master sees only its own waiters.
    const caller = (request as unknown as { caller?: Caller }).caller;
    if (caller?.kind !== 'key') return { models };
    return { models: models.map((m) => ({ ...m, waiters: m.waiters.filter((w) => w.tenant === caller.name) })) };
  });

  // Probes carry no secret and stay open, so orchestrators need no key.
  app.get('/health/liveliness', async () => ({ status: 'alive' }));
  app.get('/health/liveness', async () => ({ status: 'alive' }));
  app.get('/health/readiness', async (_request, reply) => {
    const r = readiness();
    return reply.code(r.ready ? 200 : 503).send(r);
  });
}
