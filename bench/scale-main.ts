/**
 * A benchmark child for scenario 3 (run with --expose-gc, one fresh process per measurement):
 * `scale-main.js router|store N BATCH BATCHES` queues N waiting requests in one model group whose only
 * slot is taken, then prints one JSON line: heap bytes per waiter (and per message array, measured
 * apart), µs per enqueue and per grant.
 *
 * Costs are taken at size N, in BATCHES cycles that leave the queue at N each time:
 * - enqueue: BATCH more requests are queued (timed), then withdrawn (untimed);
 * - grant: the slot is handed down the queue BATCH times (timed), then BATCH new waiters are queued
 *   (untimed).
 * Each timed part starts with an empty young generation and ends by collecting it (a minor GC,
 * timed), so it pays for the young-generation work its own operations cause and for no other part's:
 * the waiters queued by an untimed refill would otherwise be copied inside the next timed grants.
 * Emptying takes two minor GCs: V8 promotes an object at the second collection it survives, so after
 * one the refill's waiters were still young and their promotion fell in the timed grants, at 100k
 * only (at 1k a refilled waiter is granted within a cycle or two and dies young): ~8-10 µs of the
 * ~35 µs per grant measured at 100k was the refill's.
 * The figure is the median cycle's µs per operation: the first cycles of a process run slower (at 1k
 * ~25-37 µs per grant against ~15-20 later, at 100k ~36-47 against ~26-30), and one stall of the
 * machine moves one cycle; the mean over all cycles and every cycle's figure are in the output too.
 *
 * Timing the fill of N itself (as before) made the 1k figure 2-3x the 100k one: the first thousand
 * enqueues of a process met its first collections of live waiters, so a growth ratio of 0.35x said
 * where those fell, not how the queue scales.
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
import type { Grant, WaiterEntry } from '../src/machines/scheduler-store.js';
import { createRouter, type CancelListener, type CancelSignal } from '../src/router.js';
import { benchConfig } from './bench-config.js';
import { GatedUpstream } from './gated-upstream.js';
import { median } from './measure.js';

const [kind, nArg, batchArg, batchesArg] = process.argv.slice(2);
const n = Number(nArg);
const batch = Number(batchArg);
const batches = Number(batchesArg);
if (![n, batch, batches].every((x) => Number.isInteger(x) && x > 0)) throw new Error(`usage: scale-main.js router|store N BATCH BATCHES, got ${process.argv.slice(2).join(' ')}`);
const MODEL = 'scale';
const WARM_UP = 2_000;

const gc = (globalThis as { gc?: (options?: { type: 'major' | 'minor' }) => void }).gc;
if (gc === undefined) throw new Error('run with --expose-gc');
function heap(): number {
  for (let i = 0; i < 3; i++) gc!();
  return process.memoryUsage().heapUsed;
}

function output(result: Record<string, unknown>): never {
  writeSync(1, `${JSON.stringify(result)}\n`);
  process.exit(0);
}

/** µs per operation of the median cycle (the figure), of all cycles together, and of each cycle. */
function costs(enqueueCycles: number[], grantCycles: number[]): Record<string, number | number[]> {
  const each = (cycles: number[]) => cycles.map((ms) => (ms * 1000) / batch);
  const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
  const [enqueue, grant] = [each(enqueueCycles), each(grantCycles)];
  return { enqueueUs: median(enqueue), grantUs: median(grant), enqueueMeanUs: mean(enqueue), grantMeanUs: mean(grant), enqueueCycleUs: enqueue, grantCycleUs: grant };
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

/** One cancel for a whole batch of requests (an AbortSignal warns past ten listeners). */
class BatchCancel implements CancelSignal {
  aborted = false;
  private readonly listeners = new Set<CancelListener>();

  addEventListener(_type: 'abort', listener: CancelListener): void {
    this.listeners.add(listener);
  }

  removeEventListener(_type: 'abort', listener: CancelListener): void {
    this.listeners.delete(listener);
  }

  fire(): void {
    this.aborted = true;
    for (const l of [...this.listeners]) l.handleEvent();
    this.listeners.clear();
  }
}

/**
 * Runs `work` between two minor collections and returns its time in ms, the closing collection
 * included: a timed part pays for the young-generation work it caused, and for no earlier part's.
 */
async function timedCycle(work: () => void | Promise<void>): Promise<number> {
  // Two: what the untimed part left is copied by the first and promoted by the second (see the top).
  gc!({ type: 'minor' });
  gc!({ type: 'minor' });
  const t0 = performance.now();
  const pending = work();
  if (pending !== undefined) await pending;
  gc!({ type: 'minor' });
  return performance.now() - t0;
}

/** Event-loop turns until `done()` holds (replies travel as promise jobs and immediates), bounded. */
async function turnsUntil(done: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 100_000; i++) {
    if (await done()) return;
    await new Promise((r) => setImmediate(r));
  }
  throw new Error(`gave up waiting for ${what}`);
}

async function runRouter(): Promise<void> {
  await warmUpRouter();
  const gated = new GatedUpstream();
  // Room for the extra batch on top of the N waiting.
  const config = benchConfig({ groups: { [MODEL]: [{ maxParallel: 1 }] }, maxQueueSize: n + batch + 10 });
  const router = createRouter(config, { upstreamFactory: gated.factory });
  const ignore = () => undefined;
  let priority = 0;
  const queue = (messages: Array<{ role: string; content: string }>, signal?: CancelSignal) => {
    const p = router.schedule({ model: MODEL, messages, priority: priorities[priority++ % n], ...(signal ? { signal } : {}) });
    return p.then(onDone, ignore);
  };
  const waiting = async () => (await router.queueStatus(0))[0].waiting;

  // Completions end the grant cycles: the gate closes at the cycle's last one, so the call after it
  // holds the slot and the rest of the queue keeps waiting.
  let completed = 0;
  let cycleEnd = Infinity;
  let cycleDone = false;
  function onDone(): void {
    completed += 1;
    if (completed === cycleEnd) {
      cycleDone = true;
      gated.closeGate();
    }
  }

  // The first request takes the only slot and holds it.
  void queue([{ role: 'user', content: 'holder' }]);
  await turnsUntil(() => gated.inFlight === 1, 'the first request to be dispatched');

  const before = heap();
  for (let i = 0; i < n; i++) void queue(messages[i]);
  await turnsUntil(async () => (await waiting()) === n, `${n} waiting`);
  const after = heap();

  const extra = Array.from({ length: batch }, (_, i) => [{ role: 'user', content: `extra request number ${i}` }]);
  const enqueueCycles: number[] = [];
  for (let c = 0; c < batches; c++) {
    const cancel = new BatchCancel();
    enqueueCycles.push(await timedCycle(async () => {
      for (let i = 0; i < batch; i++) void queue(extra[i], cancel);
      // Enqueue replies travel as promise jobs: one turn of the event loop delivers them all.
      await new Promise((r) => setImmediate(r));
    }));
    if ((await waiting()) !== n + batch) throw new Error(`expected ${n + batch} waiting`);
    cancel.fire();
    await turnsUntil(async () => (await waiting()) === n, `the batch to be withdrawn`);
  }

  const grantCycles: number[] = [];
  for (let c = 0; c < batches; c++) {
    cycleEnd = completed + batch;
    cycleDone = false;
    grantCycles.push(await timedCycle(async () => {
      gated.openGate();
      await turnsUntil(() => cycleDone, `${batch} grants`);
    }));
    // Back to N waiting (the call after the cycle holds the slot, so one more left the queue).
    const missing = n - (await waiting());
    for (let i = 0; i < missing; i++) void queue(messages[i]);
    await turnsUntil(async () => (await waiting()) === n, `${n} waiting again`);
  }
  output({ kind, n, batch, batches, messageBytes, bytesPerWaiter: (after - before) / n, ...costs(enqueueCycles, grantCycles) });
}

function newStore(size: number): MemoryStore {
  return new MemoryStore({
    model: MODEL,
    deployments: [{ id: 'd0', modelName: MODEL, model: 'mock/x', provider: 'mock', upstreamModel: MODEL, limits: { maxParallelRequests: 1 }, mockDelayMs: 0 }],
    maxQueueSize: size + 10,
    cooldown: { cooldownTimeMs: 5_000, allowedFails: 3 },
  });
}

async function runStore(): Promise<void> {
  const now = Date.now();
  const entry = (i: number, priority: number): WaiterEntry => ({ id: randomUUID(), priority, tenant: '', enqueuedAt: now, deadline: now + 600_000, tokens: 20 + (i % 7) });
  // Warm-up: the same operations on a separate store first.
  const warm = newStore(WARM_UP);
  for (let i = 0; i < WARM_UP; i++) warm.enqueueNow(entry(i, i % 10), now);
  let g: Grant | undefined = warm.pumpNow(now).grants[0];
  for (let i = 0; i < WARM_UP && g !== undefined; i++) {
    warm.releaseNow(g, { kind: 'ok', tokensUsed: 20 }, now);
    g = warm.pumpNow(now).grants[0];
  }
  const store = newStore(n + batch);
  store.enqueueNow(entry(-1, 0), now);
  let held: Grant | undefined = store.pumpNow(now).grants[0];
  const before = heap();
  for (let i = 0; i < n; i++) store.enqueueNow(entry(i, priorities[i]), now);
  const after = heap();

  const enqueueCycles: number[] = [];
  for (let c = 0; c < batches; c++) {
    const entries = Array.from({ length: batch }, (_, i) => entry(i, priorities[i % n]));
    enqueueCycles.push(await timedCycle(() => {
      for (const e of entries) store.enqueueNow(e, now);
    }));
    for (const e of entries) store.removeNow(e.id);
  }
  const grantCycles: number[] = [];
  for (let c = 0; c < batches; c++) {
    grantCycles.push(await timedCycle(() => {
      for (let i = 0; i < batch && held !== undefined; i++) {
        store.releaseNow(held, { kind: 'ok', tokensUsed: 20 }, now);
        held = store.pumpNow(now).grants[0];
      }
    }));
    if (held === undefined) throw new Error('the store ran out of waiters');
    for (let i = 0; i < batch; i++) store.enqueueNow(entry(i, priorities[i % n]), now);
  }
  if (store.waiting !== n) throw new Error(`expected ${n} waiting, found ${store.waiting}`);
  output({ kind, n, batch, batches, messageBytes, bytesPerWaiter: (after - before) / n, ...costs(enqueueCycles, grantCycles) });
}

if (kind === 'router') await runRouter();
else if (kind === 'store') await runStore();
else throw new Error(`unknown kind ${kind}`);
