/**
 * The scheduler actor: one per model group. It owns the group's SchedulerStore (queue and limits),
 * grants slots the moment capacity exists, and keeps ONE wake-up timer for the whole group, set to
 * the next moment something can change (a rate window reopening, a cooldown ending, a deadline).
 *
 * The queue is plain data inside the store; no action copies it. Request actors are separate root
 * actors that reach the scheduler by reference, and receive grants through the request registry.
 */
import { assign, enqueueActions, setup, type AnyActorRef } from 'xstate';
import { QueueFullError, ShuttingDownError, StoreUnavailableError, type TriageError } from '../errors.js';
import type { Clock } from './clock.js';
import type { EnqueueResult, Grant, PumpResult, ReleaseOutcome, ReleaseResult, SchedulerStore, WaiterEntry } from './scheduler-store.js';

/** How the scheduler finds a request actor by id (grants and expiries carry ids, not references). */
export interface RequestRegistry {
  get(id: string): AnyActorRef | undefined;
}

/** Replies the scheduler sends to a request actor. */
export type SchedulerReply =
  | { type: 'queue.accepted'; seq: number; round: number; position: number }
  | { type: 'queue.rejected'; error: TriageError }
  | { type: 'grant'; grant: Grant }
  | { type: 'queue.timeout' };

export type SchedulerEvent =
  | { type: 'enqueue'; entry: WaiterEntry; ref: AnyActorRef }
  | { type: 'withdraw'; id: string }
  | { type: 'release'; grant: Grant; outcome: ReleaseOutcome }
  | { type: 'wake' }
  | { type: 'store.changed' }
  | { type: 'store.pumped'; result: PumpResult }
  | { type: 'store.released'; grant: Grant; result: ReleaseResult }
  | { type: 'store.failed'; operation: string; message: string }
  | { type: 'store.remote'; grants: Grant[]; expired: string[] }
  | { type: 'close' };

export type SchedulerEmitted =
  | { type: 'deployment.cooldown_start'; model: string; deployment: string; until: number; reason: string }
  | { type: 'deployment.cooldown_end'; model: string; deployment: string }
  | { type: 'store.error'; model: string; operation: string; message: string };

export interface SchedulerInput {
  model: string;
  store: SchedulerStore;
  clock: Clock;
  registry: RequestRegistry;
  /** Fallback re-check period, used only when the store is shared with other processes. */
  pollingIntervalMs: number;
}

/** Mutable bookkeeping for the pump loop; held by reference so no transition copies it. */
interface PumpState {
  running: boolean;
  again: boolean;
  wakeAt: number | null;
}

export interface SchedulerContext extends SchedulerInput {
  waiting: number;
  inFlight: number;
  pump: PumpState;
}

/**
 * Runs one store operation: at once when the store answers without I/O (in memory), else through its
 * promise. Either way `done` or `failed` is called exactly once.
 */
function runStoreOp<T>(immediate: (() => T) | undefined, later: () => Promise<T>, done: (value: T) => void, failed: (e: unknown) => void): void {
  if (immediate === undefined) {
    later().then(done, failed);
    return;
  }
  let value: T;
  try {
    value = immediate();
  } catch (e) {
    failed(e);
    return;
  }
  done(value);
}

const messageOf = (e: unknown): string => String((e as Error)?.message ?? e);

function startPump(context: SchedulerContext, self: AnyActorRef): void {
  const pump = context.pump;
  if (pump.running) {
    pump.again = true;
    return;
  }
  pump.running = true;
  pump.again = false;
  const { store, clock } = context;
  const immediate = store.immediate;
  runStoreOp(
    immediate && (() => immediate.pump(clock.now())),
    () => store.pump(clock.now()),
    (result) => self.send({ type: 'store.pumped', result }),
    (e) => self.send({ type: 'store.failed', operation: 'pump', message: messageOf(e) }),
  );
}

function replyToEnqueue(result: EnqueueResult, ref: AnyActorRef, retryAfter: (r: EnqueueResult) => number): SchedulerReply {
  if (result.accepted) return { type: 'queue.accepted', seq: result.seq, round: result.round, position: result.position };
  const seconds = retryAfter(result);
  return {
    type: 'queue.rejected',
    error: new QueueFullError(`The queue for this model is full; retry in ${seconds}s.`, seconds),
  };
}

interface DeliveryQueue {
  sendTo(ref: AnyActorRef, event: SchedulerReply): void;
  raise(event: SchedulerEvent): void;
}

function deliver(context: SchedulerContext, grants: Grant[], expired: string[], enqueue: DeliveryQueue): void {
  for (const grant of grants) {
    const ref = context.registry.get(grant.requestId);
    if (ref !== undefined && ref.getSnapshot().status === 'active') {
      enqueue.sendTo(ref, { type: 'grant', grant });
    } else {
      // The request went away while the grant was being made: give the slot straight back.
      enqueue.raise({ type: 'release', grant, outcome: { kind: 'cancelled' } });
    }
  }
  for (const id of expired) {
    const ref = context.registry.get(id);
    if (ref !== undefined) enqueue.sendTo(ref, { type: 'queue.timeout' });
  }
}

export const schedulerMachine = setup({
  types: {
    context: {} as SchedulerContext,
    events: {} as SchedulerEvent,
    input: {} as SchedulerInput,
    emitted: {} as SchedulerEmitted,
  },
  guards: {
    hasWaiters: ({ context }) => context.waiting > 0,
    queueEmpty: ({ context }) => context.waiting === 0,
  },
  actions: {
    storeEnqueue: ({ context, event, self }) => {
      if (event.type !== 'enqueue') return;
      const { entry, ref } = event;
      const { store, clock } = context;
      const immediate = store.immediate;
      runStoreOp(
        immediate && (() => immediate.enqueue(entry, clock.now())),
        () => store.enqueue(entry, clock.now()),
        (result) => {
          ref.send(replyToEnqueue(result, ref, (r) => (r.accepted ? 0 : Math.ceil(r.retryAfterMs / 1000))));
          // Pump straight away (no extra event): an arrival with headroom is granted in the same step.
          if (result.accepted) startPump(context, self);
        },
        (e) => {
          ref.send({ type: 'queue.rejected', error: new StoreUnavailableError(`The queue store failed: ${messageOf(e)}`) });
          self.send({ type: 'store.failed', operation: 'enqueue', message: messageOf(e) });
        },
      );
    },
    rejectClosed: ({ event }) => {
      if (event.type !== 'enqueue') return;
      event.ref.send({ type: 'queue.rejected', error: new ShuttingDownError() } satisfies SchedulerReply);
    },
    storeWithdraw: ({ context, event, self }) => {
      if (event.type !== 'withdraw') return;
      const { id } = event;
      const { store, clock } = context;
      const immediate = store.immediate;
      runStoreOp(
        immediate && (() => immediate.remove(id, clock.now())),
        () => store.remove(id, clock.now()),
        () => self.send({ type: 'store.changed' }),
        (e) => self.send({ type: 'store.failed', operation: 'remove', message: messageOf(e) }),
      );
    },
    storeRelease: ({ context, event, self }) => {
      if (event.type !== 'release') return;
      const { grant, outcome } = event;
      const { store, clock } = context;
      const immediate = store.immediate;
      runStoreOp(
        immediate && (() => immediate.release(grant, outcome, clock.now())),
        () => store.release(grant, outcome, clock.now()),
        (result) => self.send({ type: 'store.released', grant, result }),
        (e) => self.send({ type: 'store.failed', operation: 'release', message: messageOf(e) }),
      );
    },
    pump: ({ context, self }) => startPump(context, self),
    /**
     * After a release, pump once the messages sent along with it are in. A retry sends its release and
     * then its re-enqueue; an in-memory store applies the release at once, and pumping right then would
     * grant the freed slot to the next waiter before the retry is back in line, even one behind it.
     */
    pumpAfterRelease: ({ context, self }) => {
      if (context.store.immediate === undefined) return startPump(context, self);
      queueMicrotask(() => self.send({ type: 'store.changed' }));
    },
    countRelease: assign({ inFlight: ({ context }) => Math.max(0, context.inFlight - 1) }),
    emitCooldown: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'store.released' || !event.result.cooldown) return;
      const c = event.result.cooldown;
      enqueue.emit({ type: 'deployment.cooldown_start', model: context.model, deployment: c.deploymentId, until: c.until, reason: c.reason });
      // The cooldown's end is a wake-up moment: re-arm even if nobody waits, so its end is reported.
      const wakeAt = context.pump.wakeAt;
      if (wakeAt === null || c.until < wakeAt) {
        context.pump.wakeAt = c.until;
        enqueue.cancel('wake');
        enqueue.raise({ type: 'wake' }, { id: 'wake', delay: Math.max(0, c.until - context.clock.now()) });
      }
    }),
    emitStoreError: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'store.failed') return;
      enqueue.emit({ type: 'store.error', model: context.model, operation: event.operation, message: event.message });
      if (event.operation === 'pump') {
        context.pump.running = false;
        // Try again after the polling interval: the store (Redis) may be back by then.
        context.pump.wakeAt = context.clock.now() + context.pollingIntervalMs;
        enqueue.cancel('wake');
        enqueue.raise({ type: 'wake' }, { id: 'wake', delay: context.pollingIntervalMs });
      }
    }),
    /** Grants and expiries decided by another instance for waiters of this one. */
    applyRemote: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'store.remote') return;
      deliver(context, event.grants, event.expired, enqueue);
      enqueue.assign({ inFlight: context.inFlight + event.grants.length });
    }),
    /** Delivers a pump's grants and expiries, reports cooldown ends, re-arms the one timer. */
    applyPump: enqueueActions(({ context, event, enqueue, self }) => {
      if (event.type !== 'store.pumped') return;
      const { result } = event;
      const now = context.clock.now();
      deliver(context, result.grants, result.expired, enqueue);
      for (const deployment of result.cooldownsEnded) {
        enqueue.emit({ type: 'deployment.cooldown_end', model: context.model, deployment });
      }
      enqueue.assign({ waiting: result.waiting, inFlight: context.inFlight + result.grants.length });

      let wakeAt = result.nextWakeAt;
      if (context.store.shared && result.waiting > 0) {
        const recheck = now + context.pollingIntervalMs;
        wakeAt = wakeAt === null ? recheck : Math.min(wakeAt, recheck);
      }
      if (wakeAt !== context.pump.wakeAt) {
        context.pump.wakeAt = wakeAt;
        enqueue.cancel('wake');
        if (wakeAt !== null) enqueue.raise({ type: 'wake' }, { id: 'wake', delay: Math.max(0, wakeAt - now) });
      }
      context.pump.running = false;
      if (context.pump.again) startPump(context, self);
    }),
    clearWake: ({ context }) => {
      context.pump.wakeAt = null;
    },
  },
}).createMachine({
  id: 'scheduler',
  context: ({ input }) => ({ ...input, waiting: 0, inFlight: 0, pump: { running: false, again: false, wakeAt: null } }),
  initial: 'idle',
  on: {
    withdraw: { actions: 'storeWithdraw' },
    release: { actions: ['storeRelease', 'countRelease'] },
    'store.released': { actions: ['emitCooldown', 'pumpAfterRelease'] },
    'store.changed': { actions: 'pump' },
    'store.pumped': { actions: 'applyPump' },
    'store.remote': { actions: 'applyRemote' },
    'store.failed': { actions: 'emitStoreError' },
    wake: { actions: ['clearWake', 'pump'] },
    close: { target: '.closed' },
  },
  states: {
    /** Nobody waits: every request that arrives is granted at once if a deployment has headroom. */
    idle: {
      on: { enqueue: { actions: 'storeEnqueue' } },
      always: { guard: 'hasWaiters', target: 'backlogged' },
    },
    /** Requests wait for capacity; the one timer is armed for when it returns. */
    backlogged: {
      on: { enqueue: { actions: 'storeEnqueue' } },
      always: { guard: 'queueEmpty', target: 'idle' },
    },
    /** Shut down: new requests are refused; releases of calls still in flight are still accepted. */
    closed: {
      on: { enqueue: { actions: 'rejectClosed' } },
    },
  },
});
