/**
 * A benchmark child: one Triage instance (a Router on the in-memory or the Redis store) driven by the
 * runner over IPC. Several of them on one Redis are the multi-instance scenarios; one on memory is the
 * in-memory counterpart measured the same way. Load is generated inside the instance through the
 * Router API (no HTTP), so what is measured is the queue, not a web server.
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { parseConfig } from '../src/adapters/config-loader.js';
import { createRedisStoreFactory, type RedisStoreFactory } from '../src/adapters/redis-connection.js';
import { TriageError } from '../src/errors.js';
import { createRouter, type Router, type StoreFactory } from '../src/router.js';
import { pushEvent, serveCommands } from './child-rpc.js';
import { GatedUpstream } from './gated-upstream.js';
import { hrNow } from './hr-clock.js';
import { memoryStoreFactory, recording } from './store-factories.js';
import type { StoreRecord } from './store-log.js';

let router: Router | undefined;
/** When `finishOne` ended its call (hrNow); kept until `takeEnded` takes it. */
let endedAt: number | null = null;
let redis: RedisStoreFactory | undefined;
const gated = new GatedUpstream();
const records: StoreRecord[] = [];
const outcomes: Record<string, number> = {};
const count = (key: string) => (outcomes[key] = (outcomes[key] ?? 0) + 1);
/** This process's garbage-collection pauses since the last `gcPauses`: [start (hrNow), duration ms]. */
const gcPauses: Array<[number, number]> = [];
const MAX_GC_PAUSES = 10_000;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) if (gcPauses.length < MAX_GC_PAUSES) gcPauses.push([performance.timeOrigin + e.startTime, e.duration]);
}).observe({ entryTypes: ['gc'] });

function need(): Router {
  if (router === undefined) throw new Error('init first');
  return router;
}

function settle(p: Promise<unknown>): Promise<void> {
  return p.then(
    () => void count('done'),
    (e: unknown) => void count(e instanceof TriageError ? e.code : 'error'),
  );
}

serveCommands({
  async init(a) {
    const { config } = parseConfig(String(a.yaml));
    let factory: StoreFactory = memoryStoreFactory;
    if (a.store === 'redis') {
      if (config.router.redis === undefined) throw new Error('the config has no redis_url');
      redis = createRedisStoreFactory(config.router.redis, { instanceId: String(a.instanceId) });
      await redis.whenReady(10_000);
      factory = redis.storeFactory;
    }
    if (a.log === true) factory = recording(factory, records);
    if (a.reportStarts === true) gated.onStart = (at) => pushEvent('started', { at });
    router = createRouter(config, { storeFactory: factory, upstreamFactory: gated.factory });
    return { instanceId: a.instanceId };
  },

  /** Queues `count` requests without waiting for them; priorities drawn uniformly from [min, max]. */
  async submit(a) {
    const r = need();
    const n = Number(a.count);
    const min = Number(a.minPriority ?? 0);
    const max = Number(a.maxPriority ?? 0);
    const content = String(a.content ?? 'benchmark request');
    for (let i = 0; i < n; i++) {
      const params: Parameters<Router['schedule']>[0] = {
        model: String(a.model),
        messages: [{ role: 'user', content }],
        priority: min + Math.floor(Math.random() * (max - min + 1)),
      };
      if (a.maxTokens !== undefined) params.max_tokens = Number(a.maxTokens);
      if (a.timeoutSec !== undefined) params.timeout = Number(a.timeoutSec);
      void settle(r.schedule(params));
    }
    await new Promise((resolve) => setImmediate(resolve));
    return { submitted: n };
  },

  /**
   * Ends the oldest call in flight on the next turn of the event loop, after this reply is sent, and
   * keeps the moment for `takeEnded`: the runner asks for it once the next call has started, so no IPC
   * message (and no wake-up of the runner) falls inside a measured span.
   */
  finishOne: () => {
    if (gated.inFlight === 0) return false;
    endedAt = null;
    setImmediate(() => {
      endedAt = gated.finishOne();
    });
    return true;
  },
  /** The moment the last `finishOne` ended its call (hrNow), or null if it has not yet. */
  takeEnded: () => {
    const at = endedAt;
    endedAt = null;
    return at;
  },
  open: () => gated.openGate(),
  inFlight: () => gated.inFlight,
  records: () => records.splice(0),
  outcomes: () => ({ ...outcomes, live: router?.liveRequests ?? 0 }),

  /**
   * A closed loop: `concurrency` requests outstanding, a new one as each completes, for warmup +
   * duration; counts completions inside the measured part.
   */
  async loop(a) {
    const r = need();
    const model = String(a.model);
    const concurrency = Number(a.concurrency);
    const warmupMs = Number(a.warmupMs);
    const durationMs = Number(a.durationMs);
    const start = performance.now();
    const measureFrom = start + warmupMs;
    const stopAt = measureFrom + durationMs;
    let completed = 0;
    let errors = 0;
    // Every completion, warm-up included: what the CPU read around the whole call paid for.
    let total = 0;
    const messages = [{ role: 'user', content: 'benchmark request' }];
    const worker = async () => {
      while (performance.now() < stopAt) {
        try {
          await r.schedule({ model, messages, priority: 0 });
          total += 1;
          if (performance.now() >= measureFrom && performance.now() < stopAt) completed += 1;
        } catch {
          errors += 1;
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    return { completed, total, errors, elapsedMs: durationMs, measureFrom: performance.timeOrigin + measureFrom };
  },

  now: () => hrNow(),
  /** The garbage-collection pauses since the last call (scenario 2 says which samples they overlapped). */
  gcPauses: () => gcPauses.splice(0),

  async close() {
    gated.openGate();
    await router?.close(500).catch(() => undefined);
    await redis?.close().catch(() => undefined);
  },
});
