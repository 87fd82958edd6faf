/**
 * `GET /metrics`: Prometheus text format (prom-client), names after the field's conventions
 * (queue depth, queue wait seconds, admissions by outcome, running/waiting, promotions).
 *
 * Counters and histograms are fed by the actors' own events, counted in cells (metric-cells.ts);
 * gauges (depth, in-flight, rpm/tpm use) are read from the stores at scrape time, so nothing is kept
 * twice. Each app has its own registry.
 */
import type { FastifyInstance } from 'fastify';
import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { QueueEvent } from '../events.js';
import type { Router } from '../router.js';
import { CounterFamily, HistogramFamily, type CounterCell, type HistogramCell } from './metric-cells.js';

const WAIT_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

export interface TriageMetrics {
  registry: Registry;
  /** Stops listening to the router's events. */
  close(): void;
}

export function createMetrics(router: Router, options: { defaultMetrics?: boolean } = {}): TriageMetrics {
  const registry = new Registry();
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'triage_' });
  const agingMs = router.config.router.priorityAgingMs;

  const admit = new CounterFamily(registry, {
    name: 'triage_admit_total',
    help: 'Requests leaving the queue the first time, by outcome: granted, timeout, cancelled, rejected_full, rejected_deadline (queue_timeout_certain), rejected_unavailable (upstream_unavailable), rejected_shutdown, rejected_store (a retry is not admitted twice).',
    labelNames: ['model', 'outcome'],
  });
  const finished = new CounterFamily(registry, {
    name: 'triage_requests_total',
    help: 'Requests that ended, by final state: done, failed, timeout, cancelled, rejected.',
    labelNames: ['model', 'outcome'],
  });
  const wait = new HistogramFamily(registry, { name: 'triage_queue_wait_seconds', help: 'Time from enqueue to grant.', labelNames: ['model'], buckets: WAIT_BUCKETS });
  const upstream = new HistogramFamily(registry, {
    name: 'triage_upstream_latency_seconds',
    help: 'Duration of the upstream call of completed requests, from dispatch to the end of the response.',
    labelNames: ['model', 'deployment'],
    buckets: LATENCY_BUCKETS,
  });
  const retries = new CounterFamily(registry, { name: 'triage_upstream_retries_total', help: 'Upstream calls retried after a 429, a refused deployment key (401/403), a 5xx, a network error or a timeout.', labelNames: ['model', 'deployment'] });
  const upstreamLimited = new CounterFamily(registry, {
    name: 'triage_deployment_upstream_limited_total',
    help: "Times the provider's rate-limit headers blocked a deployment until their reset.",
    labelNames: ['model', 'deployment', 'reason'],
  });
  const cooldowns = new CounterFamily(registry, { name: 'triage_deployment_cooldowns_total', help: 'Times a deployment entered cooldown.', labelNames: ['model', 'deployment', 'reason'] });
  const promotions = new CounterFamily(registry, {
    name: 'triage_starvation_promotion_total',
    help: 'Grants of requests whose effective priority had improved by aging (router_settings.priority_aging_seconds).',
    labelNames: ['model'],
  });

  /** A model's cells, found by one lookup per event; each label set still appears on its first use. */
  class ModelCells {
    private readonly admitted = new Map<string, CounterCell>();
    private readonly ended = new Map<string, CounterCell>();
    private readonly upstreams = new Map<string, HistogramCell>();
    readonly wait: HistogramCell;
    constructor(readonly model: string) {
      this.wait = wait.cell({ model });
    }
    admit(outcome: string): CounterCell {
      let c = this.admitted.get(outcome);
      if (c === undefined) this.admitted.set(outcome, (c = admit.cell({ model: this.model, outcome })));
      return c;
    }
    finished(outcome: string): CounterCell {
      let c = this.ended.get(outcome);
      if (c === undefined) this.ended.set(outcome, (c = finished.cell({ model: this.model, outcome })));
      return c;
    }
    upstream(deployment: string): HistogramCell {
      let c = this.upstreams.get(deployment);
      if (c === undefined) this.upstreams.set(deployment, (c = upstream.cell({ model: this.model, deployment })));
      return c;
    }
  }
  const models = new Map<string, ModelCells>();
  const cellsOf = (model: string): ModelCells => {
    let m = models.get(model);
    if (m === undefined) models.set(model, (m = new ModelCells(model)));
    return m;
  };

  // A request is admitted once, on its first grant (attempt 0). A retry waits in the queue again, but it
  // was admitted already: its later timeout, cancellation or refusal (attempt above 0) is not a second
  // admission outcome, and neither is a cancel while dispatched.
  const onEvent = (e: QueueEvent) => {
    switch (e.type) {
      case 'request.dispatched':
        if (e.attempt === 0) {
          const m = cellsOf(e.model);
          m.admit('granted').value += 1;
          m.wait.observe(e.waitedMs / 1000);
          if (agingMs !== undefined && e.waitedMs >= agingMs) promotions.cell({ model: e.model }).value += 1;
        }
        break;
      case 'request.done': {
        const m = cellsOf(e.model);
        m.finished('done').value += 1;
        m.upstream(e.deployment).observe(e.durationMs / 1000);
        break;
      }
      case 'request.retry':
        retries.cell({ model: e.model, deployment: e.deployment }).value += 1;
        break;
      case 'request.failed':
        cellsOf(e.model).finished('failed').value += 1;
        break;
      case 'request.timeout': {
        const m = cellsOf(e.model);
        if (e.attempt === 0) m.admit('timeout').value += 1;
        m.finished('timeout').value += 1;
        break;
      }
      case 'request.cancelled': {
        const m = cellsOf(e.model);
        if (e.attempt === 0 && e.stage === 'queued') m.admit('cancelled').value += 1;
        m.finished('cancelled').value += 1;
        break;
      }
      case 'request.rejected': {
        const m = cellsOf(e.model);
        const outcome = e.code === 'queue_full' ? 'rejected_full' : e.code === 'queue_timeout_certain' ? 'rejected_deadline' : e.code === 'upstream_unavailable' ? 'rejected_unavailable' : e.code === 'shutting_down' ? 'rejected_shutdown' : 'rejected_store';
        if (e.attempt === 0) m.admit(outcome).value += 1;
        m.finished('rejected').value += 1;
        break;
      }
      case 'deployment.upstream_limited':
        upstreamLimited.cell({ model: e.model, deployment: e.deployment, reason: e.reason }).value += 1;
        break;
      case 'deployment.cooldown_start':
        cooldowns.cell({ model: e.model, deployment: e.deployment, reason: e.reason }).value += 1;
        break;
      default:
        break;
    }
  };
  const unsubscribe = router.events.subscribe(onEvent);

  // Gauges read the stores when scraped: one snapshot per scrape serves them all.
  let snapshot: ReturnType<Router['queueStatus']> | null = null;
  const current = () => (snapshot ??= router.queueStatus(0).finally(() => queueMicrotask(() => (snapshot = null))));
  const gauge = (name: string, help: string, labelNames: string[], fill: (g: Gauge, s: Awaited<ReturnType<Router['queueStatus']>>) => void) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        this.reset();
        fill(this, await current());
      },
    });

  gauge('triage_queue_depth', 'Requests waiting, by model and priority.', ['model', 'priority'], (g, groups) => {
    for (const s of groups) for (const [priority, n] of Object.entries(s.depthByPriority)) g.set({ model: s.model, priority }, n);
  });
  gauge('triage_requests_waiting', 'Requests waiting in the queue.', ['model'], (g, groups) => {
    for (const s of groups) g.set({ model: s.model }, s.waiting);
  });
  gauge('triage_queue_oldest_wait_seconds', 'How long the longest-waiting request has waited.', ['model'], (g, groups) => {
    for (const s of groups) g.set({ model: s.model }, s.oldestWaitMs / 1000);
  });
  gauge('triage_requests_running', 'Upstream calls in flight, by deployment.', ['model', 'deployment'], (g, groups) => {
    for (const s of groups) for (const d of s.deployments) g.set({ model: s.model, deployment: d.id }, d.inFlight);
  });
  gauge('triage_deployment_rpm_used', 'Dispatches in the last 60 s.', ['model', 'deployment'], (g, groups) => {
    for (const s of groups) for (const d of s.deployments) g.set({ model: s.model, deployment: d.id }, d.rpmUsed);
  });
  gauge('triage_deployment_rpm_limit', 'Configured rpm (absent when unlimited).', ['model', 'deployment'], (g, groups) => {
    for (const s of groups) for (const d of s.deployments) if (d.rpm !== null) g.set({ model: s.model, deployment: d.id }, d.rpm);
  });
  gauge('triage_deployment_tpm_used', 'Tokens reserved or used in the last 60 s.', ['model', 'deployment'], (g, groups) => {
    for (const s of groups) for (const d of s.deployments) g.set({ model: s.model, deployment: d.id }, d.tpmUsed);
  });
  gauge('triage_deployment_tpm_limit', 'Configured tpm (absent when unlimited).', ['model', 'deployment'], (g, groups) => {
    for (const s of groups) for (const d of s.deployments) if (d.tpm !== null) g.set({ model: s.model, deployment: d.id }, d.tpm);
  });
  gauge('triage_deployment_parallel_limit', 'Configured max_parallel_requests (absent when unlimited).', ['model', 'deployment'], (g, groups) => {
    for (const s of groups) for (const d of s.deployments) if (d.maxParallelRequests !== null) g.set({ model: s.model, deployment: d.id }, d.maxParallelRequests);
  });
  gauge('triage_deployment_cooling_down', '1 while the deployment is in cooldown.', ['model', 'deployment'], (g, groups) => {
    for (const s of groups) for (const d of s.deployments) g.set({ model: s.model, deployment: d.id }, d.coolingDownUntil === null ? 0 : 1);
  });

  gauge('triage_deployment_upstream_blocked_seconds', "Seconds until the provider's reported rate limit resets (0 when not blocked).", ['model', 'deployment'], (g, groups) => {
    const now = router.clock.now();
    for (const s of groups) for (const d of s.deployments) g.set({ model: s.model, deployment: d.id }, d.upstreamBlockedUntil === null ? 0 : Math.max(0, (d.upstreamBlockedUntil - now) / 1000));
  });

  return { registry, close: unsubscribe };
}

export function registerMetricsRoute(app: FastifyInstance, metrics: TriageMetrics): void {
  app.get('/metrics', async (_request, reply) => {
    const body = await metrics.registry.metrics();
    return reply.type(metrics.registry.contentType).send(body);
  });
  app.addHook('onClose', async () => metrics.close());
}
