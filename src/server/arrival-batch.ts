/**
 * The HTTP layer hands requests to the router in batches: every chat completion that arrives in one
 * turn of the event loop is scheduled together, at the end of that turn (setImmediate), lowest
 * priority number first and in arrival order within a priority.
 *
 * Why: under load, one turn reads many requests. Scheduled one by one, each ran its whole path
 * (actor, grant, upstream, response write) between the reads of the next, so every response went out
 * alone and the queue's code ran cold between fastify's. Scheduled together, the queue's work for the
 * turn runs in one stretch and the responses leave back to back (docs/performance.md, "Arrivals
 * batched per turn"). With one request in a turn, the batch is that request, a few microseconds later.
 *
 * The priority order matters when a turn brings more requests than free slots: the free slots go to
 * the best priorities of the turn, not to whichever socket was read first.
 */
import type { Endpoint } from '../core/endpoints.js';
import type { CompletionParams, EndpointParams, Router, ScheduledResult } from '../router.js';

type Params = (CompletionParams | EndpointParams) & { priority: number };

interface Arrival {
  params: Params;
  endpoint: Endpoint;
  resolve: (result: ScheduledResult) => void;
  reject: (error: unknown) => void;
}

/** Stable: Array.prototype.sort keeps equal priorities in arrival order (ES2019). */
const byPriority = (a: Arrival, b: Arrival): number => a.params.priority - b.params.priority;

export class ArrivalBatch {
  private pending: Arrival[] = [];

  constructor(private readonly router: Pick<Router, 'schedule'>) {}

  /** Schedules `params` (its priority already resolved) with the rest of this turn's arrivals. */
  schedule(params: Params, endpoint: Endpoint = 'chat'): Promise<ScheduledResult> {
    return new Promise<ScheduledResult>((resolve, reject) => {
      if (this.pending.length === 0) setImmediate(this.flush);
      this.pending.push({ params, endpoint, resolve, reject });
    });
  }

  /** Requests waiting for the end of the turn (for tests). */
  get size(): number {
    return this.pending.length;
  }

  private readonly flush = (): void => {
    const batch = this.pending;
    this.pending = [];
    if (batch.length > 1) batch.sort(byPriority);
    for (const a of batch) {
      // schedule() reports its failures through its promise; a throw must still reach its caller and
      // not the rest of the batch.
      try {
        this.router.schedule(a.params, a.endpoint).then(a.resolve, a.reject);
      } catch (e) {
        a.reject(e);
      }
    }
  };
}
