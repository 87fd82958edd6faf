/**
 * `GET /metrics`: Prometheus text format (prom-client), names after the field's conventions
 * (queue depth, queue wait seconds, admissions by outcome, running/waiting, promotions).
 *
 * Counters and histograms are fed by the actors' own events; gauges (depth, in-flight, rpm/tpm use)
 * are read from the stores at scrape time, so nothing is kept twice. Each app has its own registry.
 */
import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { QueueEvent } from '../events.js';
import type { Router } from '../router.js';

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

  const admit = new Counter({
    name: 'triage_admit_total',
    help: 'Requests leaving the queue the first time, by outcome: granted, timeout, cancelled, rejected_full, rejected_shutdown, rejected_store (a retry is not admitted twice).',
    labelNames: ['model', 'outcome'],
    registers: [registry],
  });
  const finished = new Counter({
    name: 'triage_requests_total',
    help: 'Requests that ended, by final state: done, failed, timeout, cancelled, rejected.',
    labelNames: ['model', 'outcome'],
    registers: [registry],
  });
  const wait = new Histogram({
    name: 'triage_queue_wait_seconds',
    help: 'Time from enqueue to grant.',
    labelNames: ['model'],
    buckets: WAIT_BUCKETS,
    registers: [registry],
  });
  const upstream = new Histogram({
    name: 'triage_upstream_latency_seconds',
    help: 'Duration of the upstream call of completed requests, from dispatch to the end of the response.',
    labelNames: ['model', 'deployment'],
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const retries = new Counter({ name: 'triage_upstream_retries_total', help: 'Upstream calls retried after a 429, 5xx or network error.', labelNames: ['model', 'deployment'], registers: [registry] });
  const cooldowns = new Counter({ name: 'triage_deployment_cooldowns_total', help: 'Times a deployment entered cooldown.', labelNames: ['model', 'deployment', 'reason'], registers: [registry] });
  const promotions = new Counter({
    name: 'triage_starvation_promotion_total',
    help: 'Grants of requests whose effective priority had improved by aging (router_settings.priority_aging_seconds).',
    labelNames: ['model'],
    registers: [registry],
  });

  // Label sets are few (models × deployments × outcomes): each child is looked up once, not hashed per event.
  const admitFor = children((model: string, outcome: string) => admit.labels(model, outcome));
  const finishedFor = children((model: string, outcome: string) => finished.labels(model, outcome));
  const waitFor = children((model: string) => wait.labels(model));
  const upstreamFor = children((model: string, deployment: string) => upstream.labels(model, deployment));

  // Requests granted on their first pass and not ended yet. A retry waits in the queue again, but it was
  // admitted already: its later timeout, cancellation or refusal is not a second admission outcome.
  const admitted = new Set<string>();
  const onEvent = (e: QueueEvent) => {
    switch (e.type) {
      case 'request.dispatched':
        if (e.attempt === 0) {
          admitted.add(e.id);
          admitFor(e.model, 'granted').inc();
          waitFor(e.model).observe(e.waitedMs / 1000);
          if (agingMs !== undefined && e.waitedMs >= agingMs) promotions.inc({ model: e.model });
        }
        break;
      case 'request.done':
        admitted.delete(e.id);
        finishedFor(e.model, 'done').inc();
        upstreamFor(e.model, e.deployment).observe(e.durationMs / 1000);
        break;
      case 'request.retry':
        retries.inc({ model: e.model, deployment: e.deployment });
        break;
      case 'request.failed':
        admitted.delete(e.id);
        finishedFor(e.model, 'failed').inc();
        break;
      case 'request.timeout':
        if (!admitted.delete(e.id)) admitFor(e.model, 'timeout').inc();
        finishedFor(e.model, 'timeout').inc();
        break;
      case 'request.cancelled':
        if (!admitted.delete(e.id) && e.stage === 'queued') admitFor(e.model, 'cancelled').inc();
        finishedFor(e.model, 'cancelled').inc();
        break;
      case 'request.rejected': {
        const outcome = e.code === 'queue_full' ? 'rejected_full' : e.code === 'shutting_down' ? 'rejected_shutdown' : 'rejected_store';
        if (!admitted.delete(e.id)) admitFor(e.model, outcome).inc();
        finishedFor(e.model, 'rejected').inc();
        break;
      }
      case 'deployment.cooldown_start':
        cooldowns.inc({ model: e.model, deployment: e.deployment, reason: e.reason });
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

  return { registry, close: unsubscribe };
}

/** Memoizes a metric's labelled child per label values, joined by NUL (two label sets could collide only through a NUL inside a model or deployment name). */
function children<A extends string[], T>(make: (...labels: A) => T): (...labels: A) => T {
  const cache = new Map<string, T>();
  return (...labels: A) => {
    const key = labels.join('\u0000');
    let child = cache.get(key);
    if (child === undefined) cache.set(key, (child = make(...labels)));
    return child;
  };
}

export function registerMetricsRoute(app: FastifyInstance, metrics: TriageMetrics): void {
  app.get('/metrics', async (_request, reply) => {
    const body = await metrics.registry.metrics();
    return reply.type(metrics.registry.contentType).send(body);
  });
  app.addHook('onClose', async () => metrics.close());
}
