/**
 * A benchmark child for scenario 3 (run with --expose-gc, one fresh process per measurement):
 * `scale-main.js router|store N GRANTS` queues N waiting requests in one model group whose only slot
 * is taken, then grants GRANTS of them one after another, and prints one JSON line:
 * heap bytes per waiter (and per message array, measured apart), µs per enqueue and per grant.
 *
 * Each process first runs the same operations on a separate router or store (warm-up), so the
 * sizes are compared at steady state, not against a cold JIT.
 *
 * `router` goes through the Router API (a request actor per request, the scheduler actor, the
 * in-memory store); `store` does the same operations on the bare MemoryStore, without actors.
 */
import { randomUUID } from 'node:crypto';
import { writeSync } from 'node:fs';
import { MemoryStore } from '../src/machines/memory-store.js';
import type { Grant } from '../src/machines/scheduler-store.js';
import { createRouter } from '../src/router.js';
import { benchConfig } from './bench-config.js';
import { GatedUpstream } from './gated-upstream.js';

const [kind, nArg, grantsArg] = process.argv.slice(2);
const n = Number(nArg);
const grants = Math.min(n, Number(grantsArg));
const MODEL = 'scale';
const WARM_UP = 2_000;

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with --expose-gc');
function heap(): number {
  for (let i = 0; i < 3; i++) gc!();
  return process.memoryUsage().heapUsed;
}

function output(result: Record<string, unknown>): never {
  writeSync(1, `${JSON.stringify(result)}\n`);
  process.exit(0);
}

// Bounded: a child that runs away is stopped by its own timer.
setTimeout(() => {
  writeSync(2, `scale-main ${kind} ${n}: gave up after 120 s\n`);
  process.exit(3);
}, 120_000).unref();

const priorities = Array.from({ length: n }, () => Math.floor(Math.random() * 10));

// The messages each request carries, allocated first and measured apart.
const h0 = heap();
const messages = Array.from({ length: n }, (_, i) => [{ role: 'user', content: `benchmark request number ${i}` }]);
const h1 = heap();
const messageBytes = (h1 - h0) / n;

/** Runs the same code paths first (a separate router, 2,000 requests through), so every size is measured warm. */
async function warmUpRouter(): Promise<void> {
  const gated = new GatedUpstream();
  gated.openGate();
  const router = createRouter(benchConfig({ groups: { [MODEL]: [{ maxParallel: 1 }] }, maxQueueSize: 10_000 }), { upstreamFactory: gated.factory });
  const all: Promise<unknown>[] = [];
  for (let i = 0; i < WARM_UP; i++) all.push(router.schedule({ model: MODEL, messages: [{ role: 'user', content: 'warm-up' }], priority: i % 10 }).catch(() => undefined));
  await Promise.all(all);
  await router.close(0);
}

async function runRouter(): Promise<void> {
  await warmUpRouter();
  const gated = new GatedUpstream();
  const config = benchConfig({ groups: { [MODEL]: [{ maxParallel: 1 }] }, maxQueueSize: n + 10 });
  const router = createRouter(config, { upstreamFactory: gated.factory });
  // The first request takes the only slot and holds it.
  let completed = 0;
  let grantsDoneAt = 0;
  let grantsFrom = 0;
  const onDone = () => {
    completed += 1;
    if (completed === grants + 1) {
      grantsDoneAt = performance.now();
      // Stop the chain here: the next call holds its slot, so the rest of the queue stays waiting.
      gated.closeGate();
    }
  };
  router.schedule({ model: MODEL, messages: [{ role: 'user', content: 'holder' }], priority: 0 }).then(onDone, onDone);
  for (let i = 0; i < 100 && gated.inFlight === 0; i++) await new Promise((r) => setImmediate(r));
  if (gated.inFlight !== 1) throw new Error('the first request was not dispatched');

  const before = heap();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) router.schedule({ model: MODEL, messages: messages[i], priority: priorities[i] }).then(onDone, onDone);
  // Enqueue replies travel as promise jobs: one turn of the event loop delivers them all.
  await new Promise((r) => setImmediate(r));
  const t1 = performance.now();
  const [status] = await router.queueStatus(0);
  if (status.waiting !== n) throw new Error(`expected ${n} waiting, found ${status.waiting}`);
  const after = heap();

  // Grants: every call now answers at once, so each release grants the next waiter.
  gated.openGate();
  grantsFrom = performance.now();
  for (let i = 0; i < 10_000 && grantsDoneAt === 0; i++) await new Promise((r) => setImmediate(r));
  if (grantsDoneAt === 0) throw new Error(`only ${completed} of ${grants + 1} completed`);
  output({ kind, n, grants, messageBytes, bytesPerWaiter: (after - before) / n, enqueueUs: ((t1 - t0) * 1000) / n, grantUs: ((grantsDoneAt - grantsFrom) * 1000) / grants });
}

function newStore(size: number): MemoryStore {
  return new MemoryStore({
    model: MODEL,
    deployments: [{ id: 'd0', modelName: MODEL, model: 'mock/x', provider: 'mock', upstreamModel: MODEL, limits: { maxParallelRequests: 1 }, mockDelayMs: 0 }],
    maxQueueSize: size + 10,
    cooldown: { cooldownTimeMs: 5_000, allowedFails: 3 },
  });
}

function runStore(): void {
  const now = Date.now();
  const entry = (i: number, priority: number) => ({ id: randomUUID(), priority, tenant: '', enqueuedAt: now, deadline: now + 600_000, tokens: 20 + (i % 7) });
  // Warm-up: the same operations on a separate store first.
  const warm = newStore(WARM_UP);
  for (let i = 0; i < WARM_UP; i++) warm.enqueueNow(entry(i, i % 10), now);
  let g: Grant | undefined = warm.pumpNow(now).grants[0];
  for (let i = 0; i < WARM_UP && g !== undefined; i++) {
    void warm.release(g, { kind: 'ok', tokensUsed: 20 }, now);
    g = warm.pumpNow(now).grants[0];
  }
  const store = newStore(n);
  store.enqueueNow(entry(-1, 0), now);
  let held: Grant = store.pumpNow(now).grants[0];
  const before = heap();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) store.enqueueNow(entry(i, priorities[i]), now);
  const t1 = performance.now();
  const after = heap();
  const g0 = performance.now();
  for (let i = 0; i < grants; i++) {
    void store.release(held, { kind: 'ok', tokensUsed: 20 }, now);
    held = store.pumpNow(now).grants[0];
  }
  const g1 = performance.now();
  if (held === undefined) throw new Error('the store ran out of waiters');
  output({ kind, n, grants, messageBytes, bytesPerWaiter: (after - before) / n, enqueueUs: ((t1 - t0) * 1000) / n, grantUs: ((g1 - g0) * 1000) / grants });
}

if (kind === 'router') await runRouter();
else if (kind === 'store') runStore();
else throw new Error(`unknown kind ${kind}`);
