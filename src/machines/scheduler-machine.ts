/**
 * The scheduler actor: one per model group. It owns the group's SchedulerStore (queue and limits),
 * grants slots the moment capacity exists, and keeps ONE wake-up for the whole group, set to the next
 * moment something can change (a rate window reopening, a cooldown ending, a deadline). The wake-up
 * is the actor's own delayed event (`raise` with the id `wake`, on its system's clock): it exists
 * only while something is pending (`backlogged`, `watching`), entering `idle` or `closed` cancels it,
 * and stopping the actor cancels it with the rest of its scheduled events.
 *
 * The queue is plain data inside the store; no action copies it. Request actors live apart (in the
 * router's own actor system), reach the scheduler by reference, and receive grants through the
 * request registry.
 */
import { enqueueActions, setup, type AnyActorRef } from 'xstate';
import { QueueFullError, ShuttingDownError, StoreUnavailableError, TriageError, upstreamUnavailable } from '../errors.js';
import type { Clock } from '../core/clock.js';
import { SchedulerPump, type Acceptance } from './scheduler-pump.js';
import type { Displaced, EnqueueResult, Grant, ImmediateStoreOps, PumpResult, ReleaseOutcome, ReleaseResult, SchedulerStore, WaiterEntry } from './scheduler-store.js';

/** How the scheduler finds a request actor by id (grants and expiries carry ids, not references). */
export interface RequestRegistry {
  get(id: string): AnyActorRef | undefined;
}

export type { Acceptance } from './scheduler-pump.js';

/** Replies the scheduler sends to a request actor. */
export type SchedulerReply =
  | { type: 'queue.accepted'; seq: number; round: number; position: number; etaAt?: number | null }
  | { type: 'queue.rejected'; error: TriageError }
  /** `accepted`: the grant came in the same step as the enqueue; no separate `queue.accepted` is sent. */
  | { type: 'grant'; grant: Grant; accepted?: Acceptance }
  | { type: 'queue.timeout' }
  /** A better arrival took this waiter's place in the full queue; it is no longer queued. */
  | { type: 'queue.displaced'; retryAfterSeconds: number }
  /** Its deadline became certainly unreachable (a cooldown started); it is no longer queued. */
  | { type: 'queue.unreachable'; retryAfterSeconds: number }
  /** Every deployment cools down after failures that are not 429s; it is no longer queued. */
  | { type: 'queue.unavailable'; retryAfterSeconds: number; message?: string };

export type SchedulerEvent =
  | { type: 'enqueue'; entry: WaiterEntry; ref: AnyActorRef }
  | { type: 'withdraw'; id: string }
  /** `retrying`: the request re-enqueues right after; the freed slot waits until it is back in line. */
  | { type: 'release'; grant: Grant; outcome: ReleaseOutcome; retrying?: boolean }
  | { type: 'wake' }
  | { type: 'store.changed' }
  /**
   * A shared store's pump result; `loop` when it answers the pump loop (not an enqueue's or release's).
   * `arrival`: the enqueue whose own pump granted it; its grant carries its acceptance.
   */
  | { type: 'store.pumped'; result: PumpResult; loop: boolean; arrival?: { id: string; accepted: Acceptance } }
  | { type: 'store.cooldowns_ended'; deployments: string[] }
  /** A release that started a cooldown (reported by the machine); `pump`: pump once it is reported. */
  | { type: 'store.released'; grant: Grant; result: ReleaseResult; pump: boolean }
  | { type: 'store.failed'; operation: string; message: string }
  | { type: 'store.remote'; grants: Grant[]; expired: string[]; displaced?: Displaced[] }
  | { type: 'close' };

export type SchedulerEmitted =
  | { type: 'deployment.cooldown_start'; model: string; deployment: string; until: number; reason: string }
  | { type: 'deployment.cooldown_end'; model: string; deployment: string }
  /** The provider's rate-limit headers said `reason` (requests, tokens, ...) is used up until `until`: nothing is granted there before. */
  | { type: 'deployment.upstream_limited'; model: string; deployment: string; until: number; reason: string }
  | { type: 'store.error'; model: string; operation: string; message: string };

export interface SchedulerInput {
  model: string;
  store: SchedulerStore;
  clock: Clock;
  registry: RequestRegistry;
  /** Fallback re-check period, used only when the store is shared with other processes. */
  pollingIntervalMs: number;
}

export interface SchedulerContext extends SchedulerInput {
  /** The pump loop, the counts the states read and the wake-up's moment (scheduler-pump.ts). */
  pump: SchedulerPump;
}

/** The id of the actor's one delayed `wake` event (cancelled and raised again when its moment moves). */
const WAKE = 'wake';

/**
 * One store operation and what to do with its answer: in the same call when the store answers without
 * I/O (`now`: in memory, no event), or on its reply (`later`); `failed` if it throws or rejects. The
 * operations are static objects that get their context, actor and event as arguments, so running one
 * in memory allocates no closure (four per operation before, each called once).
 */
interface StoreOp<E, T> {
  immediate(ops: ImmediateStoreOps, event: E, now: number): T;
  async(store: SchedulerStore, event: E, now: number): Promise<T>;
  now(context: SchedulerContext, self: AnyActorRef, event: E, value: T): void;
  later(context: SchedulerContext, self: AnyActorRef, event: E, value: T): void;
  failed(context: SchedulerContext, self: AnyActorRef, event: E, e: unknown): void;
}

/** Runs one store operation; exactly one of its handlers runs. */
function runStoreOp<E, T>(op: StoreOp<E, T>, context: SchedulerContext, self: AnyActorRef, event: E): void {
  const { store, clock } = context;
  const immediate = store.immediate;
  if (immediate === undefined) {
    // A reply that comes after the scheduler stopped (a release answered once the router has closed)
    // has nobody left to tell: the operation is done in the store, and XState would only warn.
    op.async(store, event, clock.now()).then(
      (value) => {
        if (self.getSnapshot().status === 'active') op.later(context, self, event, value);
      },
      (e: unknown) => {
        if (self.getSnapshot().status === 'active') op.failed(context, self, event, e);
      },
    );
    return;
  }
  let value: T;
  try {
    value = op.immediate(immediate, event, clock.now());
  } catch (e) {
    op.failed(context, self, event, e);
    return;
  }
  op.now(context, self, event, value);
}

const STORE_UNAVAILABLE_MESSAGE = 'The shared queue store did not answer, so the request was not queued; retry after the Retry-After interval.';

const messageOf = (e: unknown): string => String((e as Error)?.message ?? e);

const PUMP: StoreOp<undefined, PumpResult> = {
  immediate: (ops, _event, now) => ops.pump(now),
  async: (store, _event, now) => store.pump(now),
  now: (context, self, _event, result) => applyPump(context, self, result),
  later: (_context, self, _event, result) => self.send({ type: 'store.pumped', result, loop: true }),
  // The loop stops when the machine takes the failure in (emitStoreError).
  failed: (_context, self, _event, e) => self.send({ type: 'store.failed', operation: 'pump', message: messageOf(e) }),
};

/** Pumps the store; an in-memory store's result is applied in the same call, a shared one's on its reply. */
function startPump(context: SchedulerContext, self: AnyActorRef): void {
  if (context.pump.begin()) runStoreOp(PUMP, context, self, undefined);
}

/** Ends one run of the pump loop: applies its result, and pumps again if something changed meanwhile. */
function applyPump(context: SchedulerContext, self: AnyActorRef, result: PumpResult): void {
  applyResult(context, self, result);
  if (context.pump.end()) startPump(context, self);
}

/**
 * Delivers a pump's grants and expiries, counts them, and sets the moment to wake at (the machine's
 * eventless transitions re-arm the wake-up if it moved). Cooldown ends go out as an event (rare), so
 * the machine can emit them.
 */
function applyResult(context: SchedulerContext, self: AnyActorRef, result: PumpResult): void {
  const pump = context.pump;
  deliver(context, self, result.grants, result.expired, result.displaced);
  if (result.cooldownsEnded.length > 0) self.send({ type: 'store.cooldowns_ended', deployments: result.cooldownsEnded });
  pump.counted(result.waiting, result.grants.length);
  pump.wakeFor(pump.nextWake(result.nextWakeAt, context.store.shared, context.pollingIntervalMs));
}

/** Written out, not `{ type, ...accepted }` (docs/performance.md, "Object spread on the hot path"). */
function acceptedReply(a: Acceptance): SchedulerReply {
  return a.etaAt === undefined
    ? { type: 'queue.accepted', seq: a.seq, round: a.round, position: a.position }
    : { type: 'queue.accepted', seq: a.seq, round: a.round, position: a.position, etaAt: a.etaAt };
}

function replyToEnqueue(result: EnqueueResult): SchedulerReply {
  if (result.accepted) return acceptedReply(result);
  const seconds = Math.max(1, Math.ceil(result.retryAfterMs / 1000));
  if (result.reason === 'upstream_unavailable') return { type: 'queue.rejected', error: upstreamUnavailable(result.message, seconds) };
  if (result.reason === 'deadline_unreachable') {
    return {
      type: 'queue.rejected',
      error: new TriageError(
        'queue_timeout_certain',
        `The request cannot be granted before its queue deadline: the earliest it could be is in ${seconds}s (rate windows, cooldowns and the waiters ahead). Retry then, or with a longer timeout.`,
        { retryAfterSeconds: seconds },
      ),
    };
  }
  return {
    type: 'queue.rejected',
    error: new QueueFullError(`The queue for this model is full; retry in ${seconds}s.`, seconds),
  };
}

function deliver(context: SchedulerContext, self: AnyActorRef, grants: Grant[], expired: string[], displaced?: Displaced[]): void {
  const pump = context.pump;
  for (const grant of grants) {
    const ref = context.registry.get(grant.requestId);
    if (ref !== undefined && ref.getSnapshot().status === 'active') {
      const arrival = pump.takeArrival(grant.requestId);
      if (arrival !== undefined) {
        ref.send({ type: 'grant', grant, accepted: arrival.accepted } satisfies SchedulerReply);
      } else {
        ref.send({ type: 'grant', grant } satisfies SchedulerReply);
      }
    } else {
      // The request went away while the grant was being made: give the slot straight back.
      self.send({ type: 'release', grant, outcome: { kind: 'cancelled' } });
    }
  }
  for (const id of expired) {
    const ref = context.registry.get(id);
    if (ref === undefined) continue;
    const arrival = pump.takeArrival(id);
    if (arrival !== undefined) {
      ref.send(acceptedReply(arrival.accepted));
    }
    ref.send({ type: 'queue.timeout' } satisfies SchedulerReply);
  }
  if (displaced !== undefined) {
    for (const d of displaced) {
      const reply: SchedulerReply =
        d.unavailable !== undefined
          ? { type: 'queue.unavailable', retryAfterSeconds: d.retryAfterSeconds, message: d.unavailable }
          : { type: d.unreachable === true ? 'queue.unreachable' : 'queue.displaced', retryAfterSeconds: d.retryAfterSeconds };
      context.registry.get(d.id)?.send(reply);
    }
  }
}

type EnqueueEvent = Extract<SchedulerEvent, { type: 'enqueue' }>;
type WithdrawEvent = Extract<SchedulerEvent, { type: 'withdraw' }>;
type ReleaseEvent = Extract<SchedulerEvent, { type: 'release' }>;

const ENQUEUE: StoreOp<EnqueueEvent, EnqueueResult> = {
  immediate: (ops, { entry }, now) => ops.enqueue(entry, now),
  async: (store, { entry }, now) => store.enqueue(entry, now),
  now: (context, self, { entry, ref }, result) => {
    if (!result.accepted) return void ref.send(replyToEnqueue(result));
    // Pump in the same step: an arrival with headroom gets its acceptance and its grant as one event.
    const pump = context.pump;
    const accepted: Acceptance = { seq: result.seq, round: result.round, position: result.position };
    if (result.etaAt !== undefined) accepted.etaAt = result.etaAt;
    pump.arrival = { id: entry.id, accepted };
    startPump(context, self);
    const waiting = pump.arrival;
    pump.arrival = undefined;
    if (waiting !== undefined) ref.send(acceptedReply(waiting.accepted));
  },
  later: (context, self, { entry, ref }, result) => {
    const pumped = result.accepted ? result.pumped : undefined;
    // Granted by the enqueue's own pump (one round trip): as in memory, the acceptance comes with the
    // grant, one event, and the request goes from queued straight to dispatched.
    if (result.accepted && pumped !== undefined && pumped.grants.some((g) => g.requestId === entry.id)) {
      const accepted = { seq: result.seq, round: result.round, position: result.position };
      self.send({ type: 'store.pumped', result: pumped, loop: false, arrival: { id: entry.id, accepted } });
      return;
    }
    ref.send(replyToEnqueue(result));
    if (!result.accepted) return;
    // The store pumped along with the enqueue, or pump now.
    if (pumped !== undefined) self.send({ type: 'store.pumped', result: pumped, loop: false });
    else startPump(context, self);
  },
  failed: (_context, self, { ref }, e) => {
    // The caller is told what happened, not the Redis client's wording (the event and the log keep that).
    ref.send({ type: 'queue.rejected', error: new StoreUnavailableError(STORE_UNAVAILABLE_MESSAGE) });
    self.send({ type: 'store.failed', operation: 'enqueue', message: messageOf(e) });
  },
};

const REMOVE: StoreOp<WithdrawEvent, boolean> = {
  immediate: (ops, { id }, now) => ops.remove(id, now),
  async: (store, { id }, now) => store.remove(id, now),
  now: (context, self) => startPump(context, self),
  later: (_context, self) => self.send({ type: 'store.changed' }),
  failed: (_context, self, _event, e) => self.send({ type: 'store.failed', operation: 'remove', message: messageOf(e) }),
};

/**
 * Ends a grant and pumps. A retrying request sends its release and then its re-enqueue: the pump then
 * waits until the re-enqueue is in (a microtask later in memory, after it on a shared store), so the
 * freed slot cannot go to a waiter behind the retry first.
 */
const RELEASE: StoreOp<ReleaseEvent, ReleaseResult> = {
  immediate: (ops, { grant, outcome }, now) => ops.release(grant, outcome, now),
  async: (store, { grant, outcome, retrying }, now) => store.release(grant, outcome, now, { pump: retrying !== true }),
  now: (context, self, { grant, retrying }, result) => {
    if (retrying === true) queueMicrotask(() => self.send({ type: 'store.changed' }));
    // A cooldown is reported before anything is granted around it (events in causal order).
    if (result.cooldown || result.upstreamLimited) self.send({ type: 'store.released', grant, result, pump: retrying !== true });
    else if (retrying !== true) startPump(context, self);
  },
  later: (_context, self, { grant }, result) => {
    if (result.cooldown || result.upstreamLimited) self.send({ type: 'store.released', grant, result, pump: false });
    if (result.pumped) self.send({ type: 'store.pumped', result: result.pumped, loop: false });
    else self.send({ type: 'store.changed' });
  },
  failed: (_context, self, _event, e) => self.send({ type: 'store.failed', operation: 'release', message: messageOf(e) }),
};

export const schedulerMachine = setup({
  types: {
    context: {} as SchedulerContext,
    events: {} as SchedulerEvent,
    input: {} as SchedulerInput,
    emitted: {} as SchedulerEmitted,
  },
  guards: {
    hasWaiters: ({ context }) => context.pump.waiting > 0,
    queueEmpty: ({ context }) => context.pump.waiting === 0,
    wakePending: ({ context }) => context.pump.wakeAt !== null,
    /** Nobody waits and no moment is wanted: nothing for a wake-up to do. */
    settled: ({ context }) => context.pump.waiting === 0 && context.pump.wakeAt === null,
    wakeMoved: ({ context }) => context.pump.wakeMoved,
  },
  actions: {
    storeEnqueue: ({ context, event, self }) => {
      if (event.type === 'enqueue') runStoreOp(ENQUEUE, context, self, event);
    },
    rejectClosed: ({ event }) => {
      if (event.type !== 'enqueue') return;
      event.ref.send({ type: 'queue.rejected', error: new ShuttingDownError() } satisfies SchedulerReply);
    },
    // The waiter that left may have held the head of the queue back (strict order): pump.
    storeWithdraw: ({ context, event, self }) => {
      if (event.type === 'withdraw') runStoreOp(REMOVE, context, self, event);
    },
    /** Ends a grant and pumps (RELEASE). */
    storeRelease: ({ context, event, self }) => {
      if (event.type !== 'release') return;
      context.pump.released();
      runStoreOp(RELEASE, context, self, event);
    },
    pump: ({ context, self }) => startPump(context, self),
    // XState emits at the end of the step: pump in the next one, so cooldown_start comes out first.
    pumpAfterCooldown: ({ event, self }) => {
      if (event.type === 'store.released' && event.pump) self.send({ type: 'store.changed' });
    },
    applyPump: ({ context, event, self }) => {
      if (event.type !== 'store.pumped') return;
      // deliver() hands the arrival's grant over with its acceptance (or gives the slot back if the
      // request has gone meanwhile); either way the slot is empty again after this step.
      if (event.arrival !== undefined) context.pump.arrival = event.arrival;
      if (event.loop) applyPump(context, self, event.result);
      else applyResult(context, self, event.result);
      if (event.arrival !== undefined) context.pump.arrival = undefined;
    },
    emitCooldown: enqueueActions(({ context, event, enqueue, self }) => {
      if (event.type !== 'store.released') return;
      const limited = event.result.upstreamLimited;
      if (limited) enqueue.emit({ type: 'deployment.upstream_limited', model: context.model, deployment: limited.deploymentId, until: limited.until, reason: limited.reason });
      const c = event.result.cooldown;
      if (!c) return;
      enqueue.emit({ type: 'deployment.cooldown_start', model: context.model, deployment: c.deploymentId, until: c.until, reason: c.reason });
      // The cooldown's end is a wake-up moment even if nobody waits, so its end is reported.
      context.pump.wakeBy(c.until);
    }),
    emitCooldownsEnded: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'store.cooldowns_ended') return;
      for (const deployment of event.deployments) enqueue.emit({ type: 'deployment.cooldown_end', model: context.model, deployment });
    }),
    emitStoreError: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'store.failed') return;
      enqueue.emit({ type: 'store.error', model: context.model, operation: event.operation, message: event.message });
      if (event.operation !== 'pump') return;
      // The failed pump ends the loop; try again after the polling interval: the store (Redis) may be back by then.
      context.pump.abort();
      context.pump.wakeFor(context.clock.now() + context.pollingIntervalMs);
    }),
    /** Grants and expiries decided by another instance for waiters of this one. */
    applyRemote: ({ context, event, self }) => {
      if (event.type !== 'store.remote') return;
      deliver(context, self, event.grants, event.expired, event.displaced);
      context.pump.grantedRemotely(event.grants.length);
    },
    clearWake: ({ context }) => context.pump.woke(),
    /**
     * Sets the wake-up for the moment the pump wants: the one pending is cancelled first (XState's
     * scheduler would otherwise keep both). Runs only when the moment moved (guard `wakeMoved`).
     */
    armWake: enqueueActions(({ context, enqueue }) => {
      enqueue.cancel(WAKE);
      const at = context.pump.armed();
      if (at !== null) enqueue.raise({ type: 'wake' }, { id: WAKE, delay: Math.max(0, at - context.clock.now()) });
    }),
    cancelWake: enqueueActions(({ context, enqueue }) => {
      enqueue.cancel(WAKE);
      context.pump.disarmed();
    }),
  },
}).createMachine({
  id: 'scheduler',
  context: ({ input }) => ({ ...input, pump: new SchedulerPump(input.clock) }),
  initial: 'idle',
  // Every request is handled the same whatever the state (an arrival with headroom is granted in its
  // own enqueue's step either way), so those handlers live here, once. The states differ in the
  // wake-up: none in `idle` and `closed`; in `backlogged` and `watching` it is set for the moment the
  // last pump named, and re-armed (cancelled and raised again) only when that moment moves.
  on: {
    enqueue: { actions: 'storeEnqueue' },
    withdraw: { actions: 'storeWithdraw' },
    release: { actions: 'storeRelease' },
    'store.released': { actions: ['emitCooldown', 'pumpAfterCooldown'] },
    'store.changed': { actions: 'pump' },
    'store.pumped': { actions: 'applyPump' },
    'store.cooldowns_ended': { actions: 'emitCooldownsEnded' },
    'store.remote': { actions: 'applyRemote' },
    'store.failed': { actions: 'emitStoreError' },
    close: { target: '.closed' },
  },
  states: {
    /** Nobody waits and nothing is due: no wake-up is pending (entering cancels one). */
    idle: {
      entry: 'cancelWake',
      always: [
        { guard: 'hasWaiters', target: 'backlogged' },
        { guard: 'wakePending', target: 'watching' },
      ],
    },
    /** Requests wait for capacity; the wake-up is set for the next moment one may be granted or expire. */
    backlogged: {
      always: [
        { guard: 'settled', target: 'idle' },
        { guard: 'queueEmpty', target: 'watching' },
        { guard: 'wakeMoved', actions: 'armWake' },
      ],
      on: { wake: { actions: ['clearWake', 'pump'] } },
    },
    /**
     * Nobody waits, but a moment is due: a cooldown's end (reported when it comes), or the retry of a
     * shared store's failed pump. The wake-up is set for it.
     */
    watching: {
      always: [
        { guard: 'hasWaiters', target: 'backlogged' },
        { guard: 'settled', target: 'idle' },
        { guard: 'wakeMoved', actions: 'armWake' },
      ],
      on: { wake: { actions: ['clearWake', 'pump'] } },
    },
    /**
     * Shut down: new requests are refused and nothing is woken for; releases of calls still in flight
     * are still accepted.
     */
    closed: {
      entry: 'cancelWake',
      on: { enqueue: { actions: 'rejectClosed' } },
    },
  },
});
