/**
 * The request actor: one per chat completion. Not a spawned child of anything (spawning thousands of
 * children into one parent is quadratic in XState); the router creates each one on its own.
 *
 *   queued → polling → dispatched → done
 *                 ↘ timeout      ↘ failed / (retry → queued)
 *   cancelled (caller aborted, or a dispatched call cut when the shutdown grace ran out) and rejected
 *   (queue full, shutting down, store down) from any waiting state.
 *
 * The actor never sleeps on a timer: the scheduler sends `grant` the moment a slot frees, and
 * `queue.timeout` when the group's single deadline timer finds it overdue. A request granted on
 * arrival gets its acceptance inside the grant and goes from queued straight to dispatched.
 *
 * The upstream call is not an invoked actor: `dispatched` starts an UpstreamAttempt on entry and
 * cancels it on exit, and its end comes back as `upstream.done` / `upstream.failed`
 * (upstream-attempt.ts), with the result as the event's payload. The completion is not copied into
 * the context: `done`'s output is taken from the event that entered it, and is the actor's output
 * (`snapshot.output`).
 */
import { assign, emit, sendTo, setup, type AnyActorRef } from 'xstate';
import { QueueFullError, QueueTimeoutError, RequestCancelledError, ShuttingDownError, TriageError, upstreamUnavailable } from '../errors.js';
import type { Endpoint } from '../core/endpoints.js';
import type { ChatCompletionBody, Usage } from '../core/openai-types.js';
import { UpstreamError } from '../core/upstream.js';
import type { UpstreamBlock } from '../core/upstream-limits.js';
import type { Clock } from '../core/clock.js';
import type { SchedulerReply } from './scheduler-machine.js';
import type { Grant, ReleaseOutcome, WaiterEntry } from './scheduler-store.js';
import { UpstreamAttempt, type ChunkSink, type DeploymentRoute, type UpstreamAttemptEvent, type UpstreamAttemptInput, type UpstreamOutput } from './upstream-attempt.js';

/** What a request is, fixed for its life: the actor's input, kept in its context as `req`. */
export interface RequestInput {
  id: string;
  model: string;
  priority: number;
  tenant: string;
  /** The upstream endpoint the request calls. */
  endpoint: Endpoint;
  /** The body as forwarded (for endpoints other than chat, that endpoint's body). */
  body: ChatCompletionBody;
  stream: boolean;
  tokens: number;
  /** Queue-wait budget, ms. */
  queueTimeoutMs: number;
  maxRetries: number;
  scheduler: AnyActorRef;
  clock: Clock;
  upstreamFor: (deploymentId: string) => DeploymentRoute | undefined;
  sink?: ChunkSink;
  /** Removes the config's secrets from an upstream's error before the store keeps it (upstream_unavailable). */
  redact?: (text: string) => string;
}

/**
 * The request's state. What is fixed for its life stays in one object, `req` (the actor's input),
 * shared by every context copy: XState's assign copies the context, and with the fixed fields inline
 * the copy had 21 fields and fell into V8's slow dictionary mode (docs/performance.md).
 */
export interface RequestContext {
  req: RequestInput;
  enqueuedAt: number;
  deadline: number;
  attempt: number;
  seq?: number;
  round?: number;
  position?: number;
  /** Estimated grant time when it was queued (clock ms), null when unknown. */
  etaAt?: number | null;
  grant?: Grant;
  dispatchedAt?: number;
  error?: TriageError;
  /** The dispatched attempt's upstream call, held to cancel it when the request leaves `dispatched` before it ends. */
  call?: UpstreamAttempt;
}

export type RequestEvent =
  | SchedulerReply
  /** `reason: 'shutdown'`: the router's shutdown grace ran out (any other reason: the caller went away). */
  | { type: 'cancel'; reason?: 'shutdown' }
  | { type: 'shutdown' }
  | UpstreamAttemptEvent;

export type RequestEmitted =
  | { type: 'request.queued'; id: string; model: string; priority: number; tenant: string; position: number; arrivalSeq: number; round: number; etaMs: number | null; attempt: number }
  | { type: 'request.dispatched'; id: string; model: string; priority: number; tenant: string; deployment: string; waitedMs: number; attempt: number }
  | { type: 'request.done'; id: string; model: string; tenant: string; deployment: string; durationMs: number; totalMs: number; tokens: Usage | null }
  | { type: 'request.retry'; id: string; model: string; tenant: string; deployment: string; reason: string; attempt: number }
  | { type: 'request.timeout'; id: string; model: string; tenant: string; waitedMs: number; attempt: number }
  | { type: 'request.cancelled'; id: string; model: string; tenant: string; stage: 'queued' | 'dispatched'; attempt: number }
  | { type: 'request.failed'; id: string; model: string; tenant: string; reason: string; status: number }
  | { type: 'request.displaced'; id: string; model: string; priority: number; tenant: string; retryAfterSeconds: number; attempt: number }
  | { type: 'request.rejected'; id: string; model: string; tenant: string; code: string; retryAfterSeconds: number | null; attempt: number };

function asUpstreamError(e: unknown): UpstreamError {
  if (e instanceof UpstreamError) return e;
  return new UpstreamError('network', String((e as Error)?.message ?? e));
}

/** Longest upstream error kept for 503 upstream_unavailable. */
const MAX_FAILURE_MESSAGE = 500;

function failureOutcome(e: unknown, block: UpstreamBlock | undefined, redact?: (text: string) => string): ReleaseOutcome {
  const u = asUpstreamError(e);
  const message = (redact === undefined ? u.message : redact(u.message)).slice(0, MAX_FAILURE_MESSAGE);
  const outcome: ReleaseOutcome = u.retryAfterMs === undefined ? { kind: 'failed', failure: u.kind, message } : { kind: 'failed', failure: u.kind, retryAfterMs: u.retryAfterMs, message };
  // The provider's rate-limit headers of the failed answer (a 429's, typically) travel with the release.
  if (block !== undefined) outcome.upstreamBlock = block;
  return outcome;
}

/** Maps a final upstream failure to the caller's error: 4xx pass through (but a refused deployment key is 502), timeouts 504, the rest 502. */
export function upstreamFailureError(e: unknown): TriageError {
  const u = asUpstreamError(e);
  if (u.kind === 'timeout') return new TriageError('upstream_timeout', u.message, { cause: u });
  // Not passed through: a 401 would tell the caller its own key is wrong, when the deployment's is.
  if (u.kind === 'auth_failed') return new TriageError('upstream_error', `The upstream deployment refused the gateway's credentials for it: ${u.message}`, { cause: u });
  if (u.kind === 'client_error' && u.status !== undefined) {
    // The upstream's 4xx passes through: its status, and its own message and param when it sent them.
    const detail = (u.body as { error?: { message?: unknown; param?: unknown } } | undefined)?.error;
    const message = typeof detail?.message === 'string' ? detail.message.slice(0, 2000) : `The upstream rejected the request: ${u.message}`;
    const param = typeof detail?.param === 'string' ? detail.param : null;
    return new TriageError('upstream_error', message, { status: u.status, param, cause: u });
  }
  return new TriageError('upstream_error', `The upstream deployment failed: ${u.message}`, { cause: u });
}

export const requestMachine = setup({
  types: {
    context: {} as RequestContext,
    events: {} as RequestEvent,
    input: {} as RequestInput,
    emitted: {} as RequestEmitted,
    /** What the upstream returned, when the request ends in `done`; null in every other final state. */
    output: {} as UpstreamOutput | null,
  },
  guards: {
    acceptedWithGrant: ({ event }) => event.type === 'grant' && event.accepted !== undefined,
    canRetry: ({ context, event }) => {
      const error = (event as { error?: unknown }).error;
      return context.attempt < context.req.maxRetries && asUpstreamError(error).retryable && !context.req.sink?.started;
    },
  },
  actions: {
    enqueue: sendTo(
      ({ context }) => context.req.scheduler,
      ({ context, self }) => {
        const entry: WaiterEntry = {
          id: context.req.id,
          priority: context.req.priority,
          tenant: context.req.tenant,
          enqueuedAt: context.enqueuedAt,
          deadline: context.deadline,
          tokens: context.req.tokens,
        };
        // A retry keeps its place in line: same arrival sequence and round.
        if (context.seq !== undefined) entry.seq = context.seq;
        if (context.round !== undefined) entry.round = context.round;
        return { type: 'enqueue' as const, entry, ref: self };
      },
    ),
    withdraw: sendTo(({ context }) => context.req.scheduler, ({ context }) => ({ type: 'withdraw' as const, id: context.req.id })),
    releaseOk: sendTo(
      ({ context }) => context.req.scheduler,
      ({ context, event }) => {
        if (event.type !== 'upstream.done') throw new Error(`releaseOk runs on upstream.done, not ${event.type}`);
        const usage = event.output.usage;
        const outcome: ReleaseOutcome = usage ? { kind: 'ok', tokensUsed: usage.total_tokens } : { kind: 'ok' };
        if (event.upstreamBlock !== undefined) outcome.upstreamBlock = event.upstreamBlock;
        return { type: 'release' as const, grant: context.grant!, outcome };
      },
    ),
    /** `retrying`: the request re-enqueues right after, so the scheduler holds the freed slot for it. */
    releaseFailed: sendTo(
      ({ context }) => context.req.scheduler,
      ({ context, event }, params: { retrying: boolean }) => ({
        type: 'release' as const,
        grant: context.grant!,
        outcome: failureOutcome((event as { error?: unknown }).error, (event as { upstreamBlock?: UpstreamBlock }).upstreamBlock, context.req.redact),
        retrying: params.retrying,
      }),
    ),
    releaseCancelled: sendTo(
      ({ context }) => context.req.scheduler,
      ({ context }) => ({ type: 'release' as const, grant: context.grant!, outcome: { kind: 'cancelled' } as ReleaseOutcome }),
    ),
    /** One context update for a grant (and the acceptance that may come with it): assign copies the context. */
    takeGrant: assign(({ context, event, self }) => {
      if (event.type !== 'grant') return {};
      const { req } = context;
      const attempt: UpstreamAttemptInput = {
        grant: event.grant,
        endpoint: req.endpoint,
        body: req.body,
        stream: req.stream,
        priority: req.priority,
        clock: req.clock,
        upstreamFor: req.upstreamFor,
      };
      if (req.sink) attempt.sink = req.sink;
      const update: Partial<RequestContext> = { grant: event.grant, dispatchedAt: req.clock.now(), call: new UpstreamAttempt(attempt, self) };
      if (event.accepted) {
        update.seq = event.accepted.seq;
        update.round = event.accepted.round;
        update.position = event.accepted.position;
      }
      return update;
    }),
    /** Starts the upstream call; its end comes back as an event unless the state was left (cancelled). */
    startCall: ({ context }) => context.call!.start(),
    cancelCall: ({ context }) => context.call?.cancel(),
    /** Displaced from a full queue by a better arrival: answered 429 queue_full now, not at its deadline. */
    takeDisplaced: assign({
      error: ({ context, event }) => {
        const seconds = event.type === 'queue.displaced' ? event.retryAfterSeconds : 1;
        return new QueueFullError(`The queue for ${context.req.model} is full and a request of better priority took this request's place; retry in ${seconds}s.`, seconds);
      },
    }),
    /** Its deadline became certainly unreachable while it waited: answered now, as on arrival. */
    takeUnreachable: assign({
      error: ({ context, event }) => {
        const seconds = event.type === 'queue.unreachable' ? event.retryAfterSeconds : 1;
        return new TriageError(
          'queue_timeout_certain',
          `The request can no longer be granted before its queue deadline for ${context.req.model}: the earliest it could be is in ${seconds}s (a deployment is cooling down). Retry then, or with a longer timeout.`,
          { retryAfterSeconds: seconds },
        );
      },
    }),
    /** Every deployment cools down after failing: answered now, with the upstream's last error. */
    takeUnavailable: assign({
      error: ({ event }) => (event.type === 'queue.unavailable' ? upstreamUnavailable(event.message, event.retryAfterSeconds) : new TriageError('upstream_unavailable')),
    }),
    emitDisplaced: emit(({ context, event }) => ({
        type: 'request.displaced' as const,
        id: context.req.id,
        model: context.req.model,
        priority: context.req.priority,
        tenant: context.req.tenant,
        retryAfterSeconds: event.type === 'queue.displaced' ? event.retryAfterSeconds : 1,
        attempt: context.attempt,
      })),
    emitQueued: emit(({ context }) => ({
      type: 'request.queued' as const,
      id: context.req.id,
      model: context.req.model,
      priority: context.req.priority,
      tenant: context.req.tenant,
      position: context.position ?? 0,
      // Not `seq`: the event bus stamps every event with its own global `seq`, which would overwrite it.
      arrivalSeq: context.seq ?? 0,
      round: context.round ?? 0,
      // Granted in the same step: no wait. Otherwise the store's estimate, as ms from now (null: unknown).
      etaMs: context.grant !== undefined ? 0 : context.etaAt == null ? null : Math.max(0, context.etaAt - context.req.clock.now()),
      attempt: context.attempt,
    })),
  },
}).createMachine({
  id: 'request',
  context: ({ input }) => {
    const now = input.clock.now();
    return { req: input, enqueuedAt: now, deadline: now + input.queueTimeoutMs, attempt: 0 };
  },
  initial: 'queued',
  // The done-state event of the final state reached: `done` puts the upstream's result in it.
  output: ({ event }) => (event.output as UpstreamOutput | undefined) ?? null,
  states: {
    /** Registering with the model group's scheduler: gets an arrival sequence and a position. */
    queued: {
      entry: 'enqueue',
      on: {
        'queue.accepted': {
          target: 'polling',
          actions: [
            assign({ seq: ({ event }) => event.seq, round: ({ event }) => event.round, position: ({ event }) => event.position, etaAt: ({ event }) => event.etaAt ?? null }),
            'emitQueued',
          ],
        },
        'queue.rejected': { target: 'rejected', actions: assign({ error: ({ event }) => event.error }) },
        grant: [
          // Granted on arrival: the acceptance comes with the grant, in one event.
          { guard: 'acceptedWithGrant', target: 'dispatched', actions: ['takeGrant', 'emitQueued'] },
          // A shared store may grant before the acceptance reply arrives.
          { target: 'dispatched', actions: 'takeGrant' },
        ],
        'queue.timeout': 'timeout',
        'queue.displaced': { target: 'rejected', actions: ['takeDisplaced', 'emitDisplaced'] },
        'queue.unreachable': { target: 'rejected', actions: 'takeUnreachable' },
        'queue.unavailable': { target: 'rejected', actions: 'takeUnavailable' },
        cancel: { target: 'cancelled', actions: 'withdraw' },
        shutdown: { target: 'rejected', actions: ['withdraw', assign({ error: () => new ShuttingDownError() })] },
      },
    },
    /** Waiting for a grant event; no timer here. */
    polling: {
      on: {
        grant: { target: 'dispatched', actions: 'takeGrant' },
        'queue.timeout': 'timeout',
        'queue.displaced': { target: 'rejected', actions: ['takeDisplaced', 'emitDisplaced'] },
        'queue.unreachable': { target: 'rejected', actions: 'takeUnreachable' },
        'queue.unavailable': { target: 'rejected', actions: 'takeUnavailable' },
        cancel: { target: 'cancelled', actions: 'withdraw' },
        shutdown: { target: 'rejected', actions: ['withdraw', assign({ error: () => new ShuttingDownError() })] },
      },
    },
    /** The upstream call runs; leaving this state in any way releases the slot exactly once. */
    dispatched: {
      entry: [
        emit(({ context }) => ({
          type: 'request.dispatched' as const,
          id: context.req.id,
          model: context.req.model,
          priority: context.req.priority,
          tenant: context.req.tenant,
          deployment: context.grant!.deploymentId,
          waitedMs: context.grant!.waitedMs,
          attempt: context.attempt,
        })),
        'startCall',
      ],
      exit: 'cancelCall',
      on: {
        // No assign: the completion goes from this event to `done`'s output, never into the context.
        'upstream.done': { target: 'done', actions: 'releaseOk' },
        'upstream.failed': [
          {
            guard: 'canRetry',
            target: 'queued',
            actions: [
              { type: 'releaseFailed', params: { retrying: true } },
              emit(({ context, event }) => ({
                type: 'request.retry' as const,
                id: context.req.id,
                model: context.req.model,
                tenant: context.req.tenant,
                deployment: context.grant!.deploymentId,
                reason: asUpstreamError(event.error).message,
                attempt: context.attempt + 1,
              })),
              // A retry gets a fresh queue-wait budget but keeps its place in line.
              assign({
                attempt: ({ context }) => context.attempt + 1,
                grant: () => undefined,
                deadline: ({ context }) => context.req.clock.now() + context.req.queueTimeoutMs,
              }),
            ],
          },
          { target: 'failed', actions: [{ type: 'releaseFailed', params: { retrying: false } }, assign({ error: ({ event }) => upstreamFailureError(event.error) })] },
        ],
        // `shutdown` is not handled here: a dispatched call may finish within the shutdown grace; when
        // that runs out, the router cancels it (reason 'shutdown').
        cancel: { target: 'cancelled', actions: 'releaseCancelled' },
      },
    },
    /** The upstream answered; the state's output (the machine's) is the result its event carried. */
    done: {
      type: 'final',
      output: ({ event }) => (event.type === 'upstream.done' ? event.output : undefined),
      entry: emit(({ context, event }) => {
        const now = context.req.clock.now();
        return {
          type: 'request.done' as const,
          id: context.req.id,
          model: context.req.model,
          tenant: context.req.tenant,
          deployment: context.grant!.deploymentId,
          durationMs: now - (context.dispatchedAt ?? context.enqueuedAt),
          totalMs: now - context.enqueuedAt,
          tokens: (event.type === 'upstream.done' ? event.output.usage : undefined) ?? null,
        };
      }),
    },
    timeout: {
      type: 'final',
      entry: [
        assign({
          error: ({ context }) =>
            new QueueTimeoutError(`The request waited ${context.req.clock.now() - context.enqueuedAt} ms in the queue for ${context.req.model} and passed its deadline.`),
        }),
        emit(({ context }) => ({ type: 'request.timeout' as const, id: context.req.id, model: context.req.model, tenant: context.req.tenant, waitedMs: context.req.clock.now() - context.enqueuedAt, attempt: context.attempt })),
      ],
    },
    cancelled: {
      type: 'final',
      entry: [
        // The caller went away (499), or the router's shutdown grace ran out (503: the caller is told so).
        assign({
          error: ({ event }) =>
            event.type === 'cancel' && event.reason === 'shutdown'
              ? new ShuttingDownError('The gateway shut down before the request finished (its shutdown grace period ran out).')
              : new RequestCancelledError(),
        }),
        emit(({ context }) => ({
          type: 'request.cancelled' as const,
          id: context.req.id,
          model: context.req.model,
          tenant: context.req.tenant,
          stage: context.grant === undefined ? ('queued' as const) : ('dispatched' as const),
          attempt: context.attempt,
        })),
      ],
    },
    failed: {
      type: 'final',
      entry: emit(({ context }) => ({
        type: 'request.failed' as const,
        id: context.req.id,
        model: context.req.model,
        tenant: context.req.tenant,
        reason: context.error?.message ?? 'unknown',
        status: context.error?.status ?? 502,
      })),
    },
    rejected: {
      type: 'final',
      entry: emit(({ context }) => ({
        type: 'request.rejected' as const,
        id: context.req.id,
        model: context.req.model,
        tenant: context.req.tenant,
        code: context.error?.code ?? 'internal_error',
        retryAfterSeconds: context.error?.retryAfterSeconds ?? null,
        attempt: context.attempt,
      })),
    },
  },
});

