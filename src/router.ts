/**
 * The Router API: Triage embedded in a program, the counterpart of LiteLLM's
 * `Router(...).schedule_acompletion(...)`.
 *
 *   const router = createRouter(config);
 *   const completion = await router.scheduleCompletion({ model, messages, priority: 0 });
 *   await router.close();
 *
 * It owns one scheduler actor per model group and creates one request actor per call; the request
 * actors share one actor system (see `requestHost`) and are found through the registry below.
 */
import { createActor, fromCallback, type Actor, type AnyActorRef, type AnyEventObject, type InspectionEvent } from 'xstate';
import type { DeploymentConfig, TriageConfig } from './adapters/config-types.js';
import { MockUpstream } from './adapters/mock-upstream.js';
import type { ChatCompletion, ChatCompletionBody, ChatCompletionChunk, ChatMessage } from './adapters/openai-types.js';
import type { Upstream, UpstreamFactory } from './adapters/upstream.js';
import { InvalidPriorityError, InvalidRequestError, ModelNotFoundError, RequestCancelledError, ShuttingDownError, TriageError } from './errors.js';
import { EventBus } from './events.js';
import { ChunkQueue } from './machines/chunk-queue.js';
import { ChurnMap } from './machines/churn-map.js';
import { applyV8Flags } from './runtime-flags.js';
import { LiveRequest, type RequestActor, type ScheduledResult } from './live-request.js';
import { systemClock, type Clock } from './machines/clock.js';
import { MemoryStore } from './machines/memory-store.js';
import { newRequestId } from './machines/request-id.js';
import { requestMachine, type RequestInput } from './machines/request-machine.js';
import type { DeploymentRoute } from './machines/upstream-attempt.js';
import { schedulerMachine } from './machines/scheduler-machine.js';
import type { GroupSnapshot, SchedulerStore } from './machines/scheduler-store.js';
import { estimateRequestTokens } from './machines/token-estimate.js';
import { PositionReporter } from './position-events.js';

export interface CompletionParams {
  model: string;
  messages: ChatMessage[];
  /** Lower is served first; missing takes router_settings.default_priority. 0 is a real priority. */
  priority?: number;
  /** Queue-wait deadline for this request, seconds (LiteLLM's unit); else router_settings.timeout. */
  timeout?: number;
  stream?: boolean;
  /** Cancels the request while queued or dispatched: an AbortSignal, or anything with its CancelSignal part. */
  signal?: CancelSignal;
  /** Who is asking (a key's name): equal priorities are served round-robin between tenants. */
  tenant?: string;
  max_tokens?: number;
  /** Any other OpenAI chat completion field is forwarded upstream as is. */
  [field: string]: unknown;
}

/**
 * The part of an AbortSignal the router uses. The HTTP layer passes a lighter object of its own
 * (an AbortController per request was a seventh of the HTTP layer's time on Node 20).
 */
export interface CancelSignal {
  readonly aborted: boolean;
  addEventListener(type: 'abort', listener: CancelListener, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: CancelListener): void;
}

export interface CancelListener {
  handleEvent(event?: unknown): void;
}

/** What the queue did for a request; the HTTP layer turns it into response headers. */
export type { QueueMeta, ScheduledResult } from './live-request.js';

export type StoreFactory = (model: string, deployments: DeploymentConfig[], config: TriageConfig) => SchedulerStore;

export interface RouterOptions {
  clock?: Clock;
  /** Builds each deployment's upstream; mocks (`mock_response`) never reach it. */
  upstreamFactory?: UpstreamFactory;
  storeFactory?: StoreFactory;
  /**
   * false: leave V8's settings as they are. By default the Router applies V8_FLAGS
   * (src/runtime-flags.ts) to the process, as the CLI does: without them, the Router API with 32
   * requests in flight served ~18–21k instead of ~41–61k requests/s, with ~9.7 ms minor GC pauses.
   */
  v8Flags?: boolean;
}

type SchedulerActor = Actor<typeof schedulerMachine>;

interface Group {
  name: string;
  scheduler: SchedulerActor;
  store: SchedulerStore;
  positions: PositionReporter;
}

const DONE_PREFIX = 'xstate.done.actor.';
const ERROR_PREFIX = 'xstate.error.actor.';

/** Fields that steer Triage and are not forwarded upstream. */
const TRIAGE_FIELDS = new Set(['priority', 'timeout', 'signal', 'tenant', 'metadata_triage']);

/**
 * Deepest nesting a request may have. Forwarding a body upstream serializes it, and JSON.stringify
 * overflows the stack at a few thousand levels: without this bound a 10k-deep body parsed fine, then
 * failed every upstream attempt as a "network" error (502), and cooled the deployment down.
 */
export const MAX_BODY_DEPTH = 100;

/** Whether any object or array in `value` sits deeper than `limit` levels (iterative: no recursion to overflow). */
function nestedDeeperThan(value: unknown, limit: number): boolean {
  if (value === null || typeof value !== 'object') return false;
  const seen = new WeakSet<object>();
  const stack: Array<{ v: unknown; depth: number }> = [{ v: value, depth: 1 }];
  while (stack.length > 0) {
    const { v, depth } = stack.pop()!;
    if (v === null || typeof v !== 'object' || seen.has(v)) continue;
    if (depth > limit) return true;
    seen.add(v);
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (child !== null && typeof child === 'object') stack.push({ v: child, depth: depth + 1 });
    }
  }
  return false;
}

/** Secrets shorter than this are not redacted (they would mangle ordinary words). */
const MIN_REDACTED_SECRET_LENGTH = 4;

/** Every secret a config holds: the master key, virtual keys, upstream api keys, the Redis password (longest first). */
export function configSecrets(config: TriageConfig): string[] {
  const all = [
    config.general.masterKey,
    ...config.general.keys.map((k) => k.key),
    ...config.modelGroups.flatMap((g) => g.deployments.map((d) => d.apiKey)),
    config.router.redis?.password,
  ];
  const secrets = new Set(all.filter((s): s is string => typeof s === 'string' && s.length >= MIN_REDACTED_SECRET_LENGTH));
  return [...secrets].sort((a, b) => b.length - a.length);
}

/** `text` with every occurrence of each secret replaced by `[redacted]`. */
export function redactSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) if (out.includes(secret)) out = out.split(secret).join('[redacted]');
  return out;
}

export class Router {
  readonly clock: Clock;
  readonly events: EventBus;
  private readonly groups = new Map<string, Group>();
  private readonly deployments = new Map<string, DeploymentRoute>();
  private readonly requests = new ChurnMap<LiveRequest>();
  /**
   * The actor system every request actor lives in. A root actor builds a system of its own (maps and
   * a dozen closures, ~1.8 KiB and a fifth of an actor's start-up time); request actors are created
   * with this host as parent instead, so they share one. They are not its spawned children (no
   * children map copied per request): the host only receives XState's done/error event when one ends,
   * and hands it to requestEnded.
   */
  private readonly requestHost: Actor<ReturnType<typeof fromCallback>>;
  private readonly upstreamFor: RequestInput['upstreamFor'];
  private inspector: ((event: InspectionEvent) => void) | null = null;
  private inspection: Array<{ unsubscribe(): void }> = [];
  private closing = false;
  /** Event-stream clients that want request.position (watchPositions). */
  private positionWatchers = 0;
  /** Set while close() waits for the last live request to end. */
  private onDrained: (() => void) | null = null;
  private readonly secrets: string[];

  constructor(
    readonly config: TriageConfig,
    options: RouterOptions = {},
  ) {
    if (options.v8Flags !== false) applyV8Flags();
    this.clock = options.clock ?? systemClock;
    this.events = new EventBus(() => this.clock.now());
    this.secrets = configSecrets(config);
    const upstreamFactory = options.upstreamFactory ?? defaultUpstreamFactory;
    const storeFactory = options.storeFactory ?? memoryStoreFactory;
    const registry = { get: (id: string): AnyActorRef | undefined => this.requests.get(id)?.actor };
    this.requestHost = createActor(
      fromCallback<AnyEventObject>(({ receive }) => receive((event) => this.requestEnded(event))),
      { clock: this.clock },
    ).start();
    this.upstreamFor = (deploymentId) => this.deployments.get(deploymentId);

    for (const group of config.modelGroups) {
      for (const d of group.deployments) {
        const upstream = d.mockResponse !== undefined ? new MockUpstream(d, this.clock) : upstreamFactory(d, this.clock);
        this.deployments.set(d.id, { upstream, requestTimeoutMs: d.requestTimeoutMs ?? config.router.requestTimeoutMs, upstreamModel: d.upstreamModel });
      }
      const store = storeFactory(group.name, group.deployments, config);
      const scheduler = createActor(schedulerMachine, {
        input: { model: group.name, store, clock: this.clock, registry, pollingIntervalMs: config.router.pollingIntervalMs },
        clock: this.clock,
      });
      scheduler.on('*', (e) => this.events.publish(e));
      store.setListener({
        changed: () => scheduler.send({ type: 'store.changed' }),
        remote: ({ grants, expired, displaced }) => scheduler.send(displaced === undefined ? { type: 'store.remote', grants, expired } : { type: 'store.remote', grants, expired, displaced }),
      });
      scheduler.start();
      const positions = new PositionReporter(group.name, this.clock, (now, n) => store.snapshot(now, n), () => this.positionWatchers > 0, (e) => this.events.publish(e));
      this.groups.set(group.name, { name: group.name, scheduler, store, positions });
    }
  }

  /** A request actor reached a final state, or crashed: XState tells its parent, the host. */
  private requestEnded(event: AnyEventObject): void {
    const done = event.type.startsWith(DONE_PREFIX);
    if (!done && !event.type.startsWith(ERROR_PREFIX)) return;
    const id = event.type.slice(done ? DONE_PREFIX.length : ERROR_PREFIX.length);
    const live = this.requests.get(id);
    if (live === undefined) return;
    this.forget(id);
    live.ended(done ? undefined : ((event as { error?: unknown }).error ?? new Error('request actor failed')));
  }

  private forget(id: string): void {
    this.requests.delete(id);
    if (this.requests.size === 0) this.onDrained?.();
  }

  /**
   * Turns on `request.position` events (position-events.ts) until the returned function is called: the
   * event stream does while a client is connected. Nobody else pays for them (one timer per group).
   */
  watchPositions(): () => void {
    this.positionWatchers += 1;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.positionWatchers -= 1;
    };
  }

  /** Model group names, in config order. */
  get models(): string[] {
    return [...this.groups.keys()];
  }

  /** Request actors alive now (waiting or dispatched). */
  get liveRequests(): number {
    return this.requests.size;
  }

  schedulerOf(model: string): SchedulerActor | undefined {
    return this.groups.get(model)?.scheduler;
  }

  requestActor(id: string): RequestActor | undefined {
    return this.requests.get(id)?.actor;
  }

  /**
   * Receives XState inspection events of the schedulers and the request actors while set; null turns
   * it off. The actor systems are observed only while someone inspects: with no observer XState
   * builds no inspection events at all.
   */
  setInspector(inspector: ((event: InspectionEvent) => void) | null): void {
    this.inspector = inspector;
    for (const s of this.inspection) s.unsubscribe();
    this.inspection = [];
    if (inspector !== null) {
      const observe = (e: InspectionEvent) => this.inspector?.(e);
      for (const g of this.groups.values()) this.inspection.push(g.scheduler.system.inspect(observe));
      this.inspection.push(this.requestHost.system.inspect(observe));
    }
  }

  /**
   * `text` with the config's secrets (keys, upstream api keys) redacted: for anything that may echo
   * what a caller or an upstream sent (error messages, event reasons, logged URLs).
   */
  redact(text: string): string {
    return this.secrets.length === 0 ? text : redactSecrets(text, this.secrets);
  }

  private readonly redactText = (text: string): string => this.redact(text);

  /** An event whose `reason` (an upstream's error message, which may echo its api key) is redacted. */
  private readonly publishRedacted = (event: Parameters<EventBus['publish']>[0]): void => {
    // Someone waits and someone listens: its group reports positions (one timer per group).
    if (event.type === 'request.queued' && this.positionWatchers > 0) this.groups.get(event.model)?.positions.wake();
    const reason = (event as { reason?: unknown }).reason;
    if (typeof reason === 'string' && this.secrets.length > 0) {
      const clean = this.redact(reason);
      if (clean !== reason) return this.events.publish({ ...event, reason: clean } as typeof event);
    }
    this.events.publish(event);
  };

  /** Checks a priority against the configured range; missing → default_priority. */
  resolvePriority(priority: unknown): number {
    const r = this.config.router;
    if (priority === undefined || priority === null) return r.defaultPriority;
    if (typeof priority !== 'number' || !Number.isInteger(priority) || priority < r.minPriority || priority > r.maxPriority) {
      throw new InvalidPriorityError(`priority must be an integer from ${r.minPriority} to ${r.maxPriority}, got ${JSON.stringify(priority) ?? String(priority)}.`);
    }
    return priority;
  }

  private validate(params: CompletionParams): { group: Group; priority: number; queueTimeoutMs: number } {
    if (typeof params.model !== 'string' || params.model === '') {
      throw new InvalidRequestError('model is required and must be a string.', { param: 'model' });
    }
    const group = this.groups.get(params.model);
    if (group === undefined) {
      throw new ModelNotFoundError(`The model '${params.model.slice(0, 200)}' does not exist. Available: ${this.models.join(', ')}.`);
    }
    if (!Array.isArray(params.messages) || params.messages.length === 0) {
      throw new InvalidRequestError('messages must be a non-empty array.', { param: 'messages' });
    }
    for (let i = 0; i < params.messages.length; i++) {
      const m = params.messages[i] as unknown;
      if (m === null || typeof m !== 'object' || Array.isArray(m) || typeof (m as ChatMessage).role !== 'string') {
        throw new InvalidRequestError(`messages[${i}] must be an object with a string role.`, { param: `messages[${i}]` });
      }
    }
    const priority = this.resolvePriority(params.priority);
    let queueTimeoutMs = this.config.router.queueTimeoutMs;
    if (params.timeout !== undefined) {
      if (typeof params.timeout !== 'number' || !(params.timeout > 0) || !Number.isFinite(params.timeout)) {
        throw new InvalidRequestError(`timeout must be a positive number of seconds, got ${JSON.stringify(params.timeout) ?? String(params.timeout)}.`, { param: 'timeout' });
      }
      queueTimeoutMs = params.timeout * 1000;
    }
    if (params.max_tokens !== undefined && (typeof params.max_tokens !== 'number' || !Number.isInteger(params.max_tokens) || params.max_tokens < 1)) {
      throw new InvalidRequestError('max_tokens must be a positive integer.', { param: 'max_tokens' });
    }
    if (params.stream !== undefined && typeof params.stream !== 'boolean') {
      throw new InvalidRequestError('stream must be a boolean.', { param: 'stream' });
    }
    for (const field of Object.keys(params)) {
      if (field !== 'signal' && nestedDeeperThan(params[field], MAX_BODY_DEPTH - 1)) {
        throw new InvalidRequestError(`${field} is nested more than ${MAX_BODY_DEPTH} levels deep.`, { param: field });
      }
    }
    return { group, priority, queueTimeoutMs };
  }

  /**
   * Queues a completion and resolves when it is served: with the completion, or for `stream: true`
   * with the chunk stream once its first chunk arrives (so errors before that keep their status).
   */
  schedule(params: CompletionParams): Promise<ScheduledResult> {
    if (this.closing) return Promise.reject(new ShuttingDownError());
    let checked: ReturnType<Router['validate']>;
    try {
      checked = this.validate(params);
    } catch (e) {
      return Promise.reject(e);
    }
    const { group, priority, queueTimeoutMs } = checked;
    const id = newRequestId();
    const stream = params.stream === true;
    const body: ChatCompletionBody = { model: params.model, messages: params.messages };
    for (const k of Object.keys(params)) if (!TRIAGE_FIELDS.has(k) && k !== 'model' && k !== 'messages') body[k] = params[k];
    const maxTokens = typeof params.max_completion_tokens === 'number' ? params.max_completion_tokens : params.max_tokens;

    return new Promise<ScheduledResult>((resolve, reject) => {
      const chunks = stream
        ? new ChunkQueue<ChatCompletionChunk>(
            () => live.handleEvent(),
            () => live.streamStarted(),
          )
        : undefined;
      const live = new LiveRequest(resolve, reject, chunks, params.signal);
      const input: RequestInput = {
        id,
        model: params.model,
        priority,
        tenant: params.tenant ?? '',
        body,
        stream,
        tokens: estimateRequestTokens(params.messages, maxTokens, this.config.router.defaultMaxTokens),
        queueTimeoutMs,
        maxRetries: this.config.router.numRetries,
        scheduler: group.scheduler,
        clock: this.clock,
        upstreamFor: this.upstreamFor,
      };
      if (chunks) input.sink = chunks;
      if (this.secrets.length > 0) input.redact = this.redactText;
      // The actor's id is the request id: its end reaches the host as xstate.done.actor.<id>.
      const actor = createActor(requestMachine, { id, input, parent: this.requestHost });
      live.actor = actor;
      actor.on('*', this.publishRedacted);
      this.requests.set(id, live);
      if (params.signal?.aborted) {
        this.forget(id);
        return reject(new RequestCancelledError());
      }
      params.signal?.addEventListener('abort', live, { once: true });
      actor.start();
    });
  }

  /** LiteLLM's schedule_acompletion: the completion, or an async iterable of chunks when streaming. */
  scheduleCompletion(params: CompletionParams & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
  scheduleCompletion(params: CompletionParams): Promise<ChatCompletion>;
  scheduleCompletion(params: CompletionParams): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>> {
    return this.schedule(params).then((result) => (result.kind === 'completion' ? result.completion : result.stream));
  }

  /** A snapshot of every model group: depth by priority, oldest wait, in-flight, deployments' usage. */
  async queueStatus(maxWaiters?: number): Promise<GroupSnapshot[]> {
    const now = this.clock.now();
    return Promise.all([...this.groups.values()].map((g) => g.store.snapshot(now, maxWaiters)));
  }

  /** A waiting request's current 0-based position in its group's queue, or null if not waiting. */
  async positionOf(id: string): Promise<number | null> {
    const live = this.requests.get(id);
    if (live === undefined) return null;
    const group = this.groups.get(live.actor.getSnapshot().context.req.model);
    return group ? group.store.position(id) : null;
  }

  /**
   * Stops accepting, answers every waiting request with `shutting_down` (503), lets dispatched calls
   * finish within `graceMs` (then cancels them), and stops the schedulers.
   */
  async close(graceMs = this.config.general.shutdownGraceMs): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    for (const g of this.groups.values()) g.scheduler.send({ type: 'close' });
    for (const { actor } of this.requests.values()) {
      const state = actor.getSnapshot().value;
      if (state === 'queued' || state === 'polling') actor.send({ type: 'shutdown' });
    }
    // Wait for the last request to end (an event), or the grace period, whichever comes first. The
    // grace runs on the router's clock, so a FakeClock decides when it is over.
    if (this.requests.size > 0 && graceMs > 0) {
      await new Promise<void>((resolve) => {
        const timer = this.clock.setTimeout(resolve, graceMs);
        this.onDrained = () => {
          this.clock.clearTimeout(timer);
          resolve();
        };
      });
      this.onDrained = null;
    }
    // Past the grace: what still runs is cut, and its caller told it was the shutdown.
    for (const { actor } of this.requests.values()) actor.send({ type: 'cancel', reason: 'shutdown' });
    // Let the cancellations' releases reach the stores before they close.
    await new Promise((r) => setImmediate(r));
    for (const g of this.groups.values()) {
      g.positions.stop();
      g.scheduler.stop();
      await g.store.close();
    }
    this.requestHost.stop();
  }
}

/** The in-memory store with the options the config gives it (the default store). */
// Typed as returning the MemoryStore itself (still a StoreFactory), so tests and benchmarks that need
// its synchronous core build it the same way the router does.
export const memoryStoreFactory = (model: string, deployments: DeploymentConfig[], config: TriageConfig): MemoryStore => {
  const options: ConstructorParameters<typeof MemoryStore>[0] = {
    model,
    deployments,
    maxQueueSize: config.router.maxQueueSize,
    cooldown: { cooldownTimeMs: config.router.cooldownTimeMs, allowedFails: config.router.allowedFails },
  };
  if (config.router.priorityAgingMs !== undefined) options.priorityAgingMs = config.router.priorityAgingMs;
  if (config.router.maxQueueSizeByPriority !== undefined) options.maxQueueSizeByPriority = config.router.maxQueueSizeByPriority;
  return new MemoryStore(options);
};
memoryStoreFactory satisfies StoreFactory;

const defaultUpstreamFactory: UpstreamFactory = (deployment) => ({
  complete: () => Promise.reject(new Error(`no upstream adapter for deployment ${deployment.id}`)),
  stream: () => {
    throw new Error(`no upstream adapter for deployment ${deployment.id}`);
  },
});

export function createRouter(config: TriageConfig, options?: RouterOptions): Router {
  return new Router(config, options);
}
