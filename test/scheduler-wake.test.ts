/**
 * The scheduler actor's wake-up, driven directly (an in-memory store, fake time, request actors that
 * record what they receive): it is the actor's own delayed `wake` event on its system's clock, exists
 * only in `backlogged` and `watching`, is re-armed only when its moment moves, and is cancelled by
 * entering `idle` or `closed` and by stopping the actor.
 */
import { describe, expect, it } from 'vitest';
import { createActor, fromCallback, type AnyActorRef, type AnyEventObject } from 'xstate';
import { FakeClock } from '../src/core/clock.js';
import { MemoryStore } from '../src/machines/memory-store.js';
import { WINDOW_MS } from '../src/machines/rate-window.js';
import { schedulerMachine, type SchedulerEmitted } from '../src/machines/scheduler-machine.js';
import type { Grant } from '../src/machines/scheduler-store.js';
import { testConfig, type TestDeployment } from './support/test-config.js';

const T0 = 1_000_000;

function harness(deployment: TestDeployment) {
  const clock = new FakeClock(T0);
  const config = testConfig({ m: [deployment] });
  const store = new MemoryStore({ model: 'm', deployments: config.modelGroups[0].deployments, maxQueueSize: 100, cooldown: { cooldownTimeMs: 10_000, allowedFails: 0 } });
  const refs = new Map<string, AnyActorRef>();
  const received = new Map<string, AnyEventObject[]>();
  /** The delayed raises of `wake` the actor executed (seen through inspection). */
  const raised: Array<{ id: unknown; delay: unknown }> = [];
  const scheduler = createActor(schedulerMachine, {
    input: { model: 'm', store, clock, registry: { get: (id) => refs.get(id) }, pollingIntervalMs: 30 },
    clock,
    inspect: (e) => {
      if (e.type !== '@xstate.action' || e.action.type !== 'xstate.raise') return;
      const params = e.action.params as { id: unknown; delay: unknown; event: AnyEventObject };
      if (params.event.type === 'wake') raised.push({ id: params.id, delay: params.delay });
    },
  });
  const emitted: SchedulerEmitted[] = [];
  scheduler.on('*', (e) => emitted.push(e));
  scheduler.start();

  const enqueue = (id: string, timeoutMs = 600_000): void => {
    const log: AnyEventObject[] = [];
    received.set(id, log);
    const ref = createActor(fromCallback<AnyEventObject>(({ receive }) => receive((e) => log.push(e)))).start();
    refs.set(id, ref);
    const now = clock.now();
    scheduler.send({ type: 'enqueue', entry: { id, priority: 0, tenant: 't', enqueuedAt: now, deadline: now + timeoutMs, tokens: 1 }, ref });
  };
  const grantOf = (id: string): Grant | undefined => (received.get(id)?.find((e) => e.type === 'grant') as { grant: Grant } | undefined)?.grant;
  const state = () => scheduler.getSnapshot().value;
  /** XState's own record of the actor's pending delayed events. */
  const scheduled = () => Object.values(scheduler.system.getSnapshot()._scheduledEvents).map((s) => ({ id: s.id, type: s.event.type }));
  return { clock, scheduler, enqueue, grantOf, received: (id: string) => received.get(id) ?? [], state, scheduled, raised, emitted };
}

describe("the scheduler's wake-up is its own delayed event", () => {
  it('rests in idle with no wake-up while arrivals are granted at once', () => {
    const h = harness({ rpm: 10 });
    h.enqueue('a');
    h.enqueue('b');
    expect(h.grantOf('a')).toBeDefined();
    expect(h.grantOf('b')).toBeDefined();
    expect(h.state()).toBe('idle');
    expect(h.scheduled()).toEqual([]);
    expect(h.raised).toEqual([]);
    expect(h.clock.pendingTimers).toBe(0);
  });

  it('a backlog is `backlogged`, with one wake-up on the actor clock at the rate window reopening', () => {
    const h = harness({ rpm: 1 });
    h.enqueue('a');
    h.enqueue('b');
    expect(h.grantOf('a')).toBeDefined();
    expect(h.state()).toBe('backlogged');
    expect(h.scheduled()).toEqual([{ id: 'wake', type: 'wake' }]);
    expect(h.raised).toEqual([{ id: 'wake', delay: WINDOW_MS }]);
    expect(h.clock.pendingTimers).toBe(1);
    expect(h.clock.nextTimerAt()).toBe(T0 + WINDOW_MS);

    // More waiters behind it leave the moment where it is: nothing is re-armed.
    for (const id of ['c', 'd', 'e']) h.enqueue(id);
    expect(h.raised).toHaveLength(1);
    expect(h.clock.pendingTimers).toBe(1);

    // The window reopens: the wake-up grants the head and is set again for the next reopening.
    h.clock.advanceTo(T0 + WINDOW_MS);
    expect(h.grantOf('b')).toMatchObject({ grantedAt: T0 + WINDOW_MS });
    expect(h.grantOf('c')).toBeUndefined();
    expect(h.state()).toBe('backlogged');
    expect(h.raised).toEqual([
      { id: 'wake', delay: WINDOW_MS },
      { id: 'wake', delay: WINDOW_MS },
    ]);
    expect(h.clock.nextTimerAt()).toBe(T0 + 2 * WINDOW_MS);
    expect(h.clock.pendingTimers).toBe(1);
  });

  it('re-arms when the moment moves earlier (a waiter whose deadline comes first), and expires it then', () => {
    // Held by max_parallel_requests (calls end at unknown times), so the moments are the deadlines.
    const h = harness({ maxParallelRequests: 1 });
    h.enqueue('a');
    h.enqueue('b');
    expect(h.clock.nextTimerAt()).toBe(T0 + 600_000);
    h.clock.advance(1_000);
    h.enqueue('short', 5_000);
    expect(h.raised.map((r) => r.delay)).toEqual([600_000, 5_000]);
    expect(h.clock.pendingTimers).toBe(1);
    expect(h.clock.nextTimerAt()).toBe(T0 + 6_000);
    h.clock.advanceTo(T0 + 6_000);
    expect(h.received('short').map((e) => e.type)).toEqual(['queue.accepted', 'queue.timeout']);
    expect(h.raised.map((r) => r.delay)).toEqual([600_000, 5_000, 594_000]);
    expect(h.clock.nextTimerAt()).toBe(T0 + 600_000);
    expect(h.clock.pendingTimers).toBe(1);
  });

  it('entering idle cancels the wake-up: the queue emptied before its moment', () => {
    const h = harness({ rpm: 1 });
    h.enqueue('a');
    h.enqueue('b');
    h.enqueue('c');
    expect(h.state()).toBe('backlogged');
    h.scheduler.send({ type: 'withdraw', id: 'b' });
    expect(h.state()).toBe('backlogged');
    h.scheduler.send({ type: 'withdraw', id: 'c' });
    expect(h.state()).toBe('idle');
    expect(h.scheduled()).toEqual([]);
    expect(h.clock.pendingTimers).toBe(0);
  });

  it('a cooldown with nobody waiting is `watching`: the wake-up reports its end, then the actor is idle', () => {
    const h = harness({ id: 'd' });
    h.enqueue('a');
    const grant = h.grantOf('a')!;
    h.scheduler.send({ type: 'release', grant, outcome: { kind: 'failed', failure: 'rate_limited', message: '429' } });
    expect(h.emitted.map((e) => e.type)).toEqual(['deployment.cooldown_start']);
    expect(h.state()).toBe('watching');
    expect(h.scheduled()).toEqual([{ id: 'wake', type: 'wake' }]);
    expect(h.clock.nextTimerAt()).toBe(T0 + 10_000);

    // A waiter during the cooldown makes it `backlogged`; the moment (the cooldown's end) stays.
    h.enqueue('b');
    expect(h.state()).toBe('backlogged');
    expect(h.raised).toHaveLength(1);

    h.clock.advanceTo(T0 + 10_000);
    expect(h.emitted.map((e) => e.type)).toEqual(['deployment.cooldown_start', 'deployment.cooldown_end']);
    expect(h.grantOf('b')).toMatchObject({ grantedAt: T0 + 10_000 });
    expect(h.state()).toBe('idle');
    expect(h.clock.pendingTimers).toBe(0);
  });

  it('closing cancels the wake-up, and so does stopping the actor', () => {
    const closed = harness({ rpm: 1 });
    closed.enqueue('a');
    closed.enqueue('b');
    expect(closed.clock.pendingTimers).toBe(1);
    closed.scheduler.send({ type: 'close' });
    expect(closed.state()).toBe('closed');
    expect(closed.scheduled()).toEqual([]);
    expect(closed.clock.pendingTimers).toBe(0);

    const stopped = harness({ rpm: 1 });
    stopped.enqueue('a');
    stopped.enqueue('b');
    expect(stopped.clock.pendingTimers).toBe(1);
    stopped.scheduler.stop();
    expect(stopped.clock.pendingTimers).toBe(0);
  });
});
