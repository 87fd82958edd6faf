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
import { groupMode } from './adapters/config-endpoints.js';
import type { DeploymentConfig, TriageConfig } from './core/config-types.js';
import { checkResponsesInput, inputTokens, MAX_COMPLETION_PROMPTS, MAX_EMBEDDING_INPUTS, responsesInputTokens } from './adapters/endpoint-inputs.js';
import { endpointName, wrongEndpoint, type Endpoint } from './core/endpoints.js';
import { MockUpstream } from './adapters/mock-upstream.js';
import type { ChatCompletion, ChatCompletionBody, ChatCompletionChunk, ChatMessage, JsonObject } from './core/openai-types.js';
import { chatToResponse, chunksToResponseEvents, responsesToChat, type ResponseEcho } from './adapters/responses-translation.js';
import type { Upstream, UpstreamFactory } from './core/upstream.js';
import { providerUpstreamFactory } from './adapters/provider-upstreams.js';
import { InvalidPriorityError, InvalidRequestError, ModelNotFoundError, RequestCancelledError, ShuttingDownError, TriageError } from './errors.js';
import { redactSecrets, secretList } from './core/secrets.js';
import { checkModelParam } from './request-params.js';
import { DEFAULT_MAX_WILDCARD_MODELS, ModelResolver } from './model-resolver.js';
import { forwardedMetadata, metadataPriority } from './queue-options.js';
import { EventBus } from './events.js';
import { ChunkQueue } from './machines/chunk-queue.js';
import { ChurnMap } from './machines/churn-map.js';
import { applyV8Flags } from './runtime-flags.js';
import { LiveRequest, type RequestActor, type ScheduledResult } from './live-request.js';
import { systemClock, type Clock } from './core/clock.js';
import { MemoryStore } from './machines/memory-store.js';
import { newRequestId } from './machines/request-id.js';
import { requestMachine, type RequestInput } from './machines/request-machine.js';
import type { DeploymentRoute } from './machines/upstream-attempt.js';
import { schedulerMachine } from './machines/scheduler-machine.js';
import type { GroupSnapshot, SchedulerStore, StoreFactory } from './machines/scheduler-store.js';
import { completionChoices, estimateRequestTokens, MAX_CHOICES } from './machines/token-estimate.js';
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
 * A request to any endpoint (`schedule(params, endpoint)`): the endpoint's own body (`input` for the
 * Responses API and embeddings, `prompt` for legacy completions) with Triage's options beside it.
 */
export interface EndpointParams {
  model: string;
  priority?: number;
  timeout?: number;
  stream?: boolean;
  signal?: CancelSignal;
  tenant?: string;
  [field: string]: unknown;
}

import type { CancelSignal } from './core/cancel-signal.js';
export type { CancelListener, CancelSignal } from './core/cancel-signal.js';

/** What the queue did for a request; the HTTP layer turns it into response headers. */
export type { QueueMeta, ScheduledResult } from './live-request.js';

export type { StoreFactory } from './machines/scheduler-store.js';

export interface RouterOptions {
  clock?: Clock;
  /** Builds each deployment's upstream; mocks (`mock_response`) never reach it. */
  upstreamFactory?: UpstreamFactory;
  storeFactory?: StoreFactory;
  /**
   * true: set V8_FLAGS (src/runtime-flags.ts), the flags the `triage` command starts node with, in
   * this process at run time. Off by default: a library leaves its host's V8 settings alone. Without
   * them the Router API serves far fewer requests with longer GC pauses (docs/performance.md); a
   * program that embeds it does better to start node with them on its command line.
   */
  v8Flags?: boolean;
}

type SchedulerActor = Actor<typeof schedulerMachine>;

interface Group {
  name: string;
  scheduler: SchedulerActor;
  store: SchedulerStore;
  /** model_info.mode of its deployments (chat when none says). */
  mode: string;
  /** Endpoints besides chat that every deployment of the group speaks natively. */
  native: Set<Endpoint>;
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

/** Every secret a config holds: the master key, virtual keys, upstream api keys, the Redis password (longest first). */
export function configSecrets(config: TriageConfig): string[] {
  return secretList([
    config.general.masterKey,
    ...config.general.keys.map((k) => k.key),
    ...[...config.modelGroups, ...(config.wildcards ?? [])].flatMap((g) => g.deployments.flatMap((d) => [d.apiKey, d.azureAdToken])),
    config.router.redis?.password,
  ]);
}

export class Router {
  readonly clock: Clock;
  readonly events: EventBus;
  private readonly groups = new Map<string, Group>();
  private readonly deployments = new Map<string, DeploymentRoute>();
  private readonly requests = new ChurnMap<LiveRequest>();
  /**
   * The actor system every request actor lives in. A root actor builds a system of its own (maps and
   * a dozen closures, a large part of an actor's start-up: docs/performance.md, "One actor system
   * for all requests"); request actors are created with this host as parent instead, so they share
   * one. They are not its spawned children (no children map copied per request): the host only
   * receives XState's done/error event when one ends, and hands it to requestEnded.
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
  private readonly resolver: ModelResolver;
  /** Concrete groups each wildcard pattern has created (bounded by router_settings.max_wildcard_models). */
  private readonly wildcardCounts = new Map<string, number>();
  private readonly registry: { get(id: string): AnyActorRef | undefined };
  private readonly upstreamFactory: UpstreamFactory;
  private readonly storeFactory: StoreFactory;

  constructor(
    readonly config: TriageConfig,
    options: RouterOptions = {},
  ) {
    if (options.v8Flags === true) applyV8Flags();
    this.clock = options.clock ?? systemClock;
    this.events = new EventBus(() => this.clock.now());
    this.secrets = configSecrets(config);
    this.upstreamFactory = options.upstreamFactory ?? providerUpstreamFactory(config.router.defaultMaxTokens);
    this.storeFactory = options.storeFactory ?? memoryStoreFactory;
    this.registry = { get: (id: string): AnyActorRef | undefined => this.requests.get(id)?.actor };
    this.resolver = new ModelResolver(config);
    this.requestHost = createActor(
      fromCallback<AnyEventObject>(({ receive }) => receive((event) => this.requestEnded(event))),
      { clock: this.clock },
    ).start();
    this.upstreamFor = (deploymentId) => this.deployments.get(deploymentId);

    for (const group of config.modelGroups) this.startGroup(group.name, group.deployments);
  }

  /** A model group's deployments, store and scheduler: at start for configured groups, on first use for a wildcard's. */
  private startGroup(name: string, deployments: DeploymentConfig[]): Group {
    const config = this.config;
    // The endpoints every deployment of the group speaks natively (chat translations serve the rest).
    let native: Set<Endpoint> | undefined;
    for (const d of deployments) {
      const upstream = d.mockResponse !== undefined ? new MockUpstream(d, this.clock) : this.upstreamFactory(d, this.clock);
      const route: DeploymentRoute = { upstream, requestTimeoutMs: d.requestTimeoutMs ?? config.router.requestTimeoutMs, upstreamModel: d.upstreamModel };
      if (d.forwardPriority === true) route.forwardPriority = true;
      this.deployments.set(d.id, route);
      const speaks = new Set<Endpoint>(upstream.send && upstream.sendStream ? (upstream.endpoints ?? []) : []);
      native = native === undefined ? speaks : new Set([...native].filter((e) => speaks.has(e)));
    }
    const store = this.storeFactory(name, deployments, config);
    const scheduler = createActor(schedulerMachine, {
      input: { model: name, store, clock: this.clock, registry: this.registry, pollingIntervalMs: config.router.pollingIntervalMs },
      clock: this.clock,
    });
    scheduler.on('*', (e) => this.events.publish(e));
    store.setListener({
      changed: () => scheduler.send({ type: 'store.changed' }),
      remote: ({ grants, expired, displaced }) => scheduler.send(displaced === undefined ? { type: 'store.remote', grants, expired } : { type: 'store.remote', grants, expired, displaced }),
    });
    scheduler.start();
    const positions = new PositionReporter(name, this.clock, (now, n) => store.snapshot(now, n), () => this.positionWatchers > 0, (e) => this.events.publish(e));
    const group: Group = { name, scheduler, store, mode: groupMode({ name, deployments }), native: native ?? new Set(), positions };
    this.groups.set(name, group);
    if (this.inspector !== null) this.inspection.push(scheduler.system.inspect((e: InspectionEvent) => this.inspector?.(e)));
    return group;
  }

  /**
   * The group that answers a requested model (exact name, alias or wildcard: src/model-resolver.ts),
   * creating a wildcard's concrete group on first use. Throws model_not_found, no_callable_deployment
   * or wildcard_model_limit.
   */
  private groupFor(model: string): Group {
    const known = this.groups.get(model);
    if (known !== undefined) return known;
    const found = this.resolver.resolve(model);
    switch (found.kind) {
      case 'group':
      case 'wildcard': {
        const existing = this.groups.get(found.group);
        if (existing !== undefined) return existing;
        if (found.kind === 'group') break;
        const count = this.wildcardCounts.get(found.pattern) ?? 0;
        const limit = this.config.router.maxWildcardModels ?? DEFAULT_MAX_WILDCARD_MODELS;
        if (count >= limit) {
          throw new TriageError(
            'wildcard_model_limit',
            `The model '${model.slice(0, 200)}' matches the wildcard '${found.pattern}', which already serves ${limit} models (router_settings.max_wildcard_models).`,
            { param: 'model' },
          );
        }
        this.wildcardCounts.set(found.pattern, count + 1);
        return this.startGroup(found.group, found.deployments());
      }
      case 'unavailable':
        throw new TriageError('no_callable_deployment', `The model '${found.group}' has no deployment Triage can call: ${found.reason}.`, { param: 'model' });
    }
    throw new ModelNotFoundError(`The model '${model.slice(0, 200)}' does not exist. Available: ${this.listedModels.join(', ')}.`);
  }

  /** The group whose events a requested model name's requests carry (without creating it), or undefined when nothing serves it. */
  groupNameFor(model: string): string | undefined {
    if (this.groups.has(model)) return model;
    const found = this.resolver.resolve(model);
    return found.kind === 'unknown' ? undefined : found.group;
  }

  /** Names /v1/models lists: configured groups, the wildcards' models served so far, aliases not hidden. */
  get listedModels(): string[] {
    return [...new Set([...this.resolver.listed(this.config), ...this.groups.keys()])];
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

  /** A group's mode (model_info.mode; chat by default), or undefined for an unknown group. */
  modeOf(model: string): string | undefined {
    const known = this.groups.get(model);
    if (known !== undefined) return known.mode;
    // An alias answers as its group; a wildcard's model not used yet, as its deployments say.
    const found = this.resolver.resolve(model);
    if (found.kind === 'group') return this.groups.get(found.group)?.mode;
    if (found.kind === 'wildcard') return groupMode({ name: found.group, deployments: found.deployments() });
    return undefined;
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

  private validate(params: CompletionParams | EndpointParams, endpoint: Endpoint): { group: Group; priority: number; queueTimeoutMs: number } {
    checkModelParam(params.model);
    const group = this.groupFor(params.model);
    if (group.mode !== 'chat' || endpoint !== 'chat') this.checkEndpoint(group, endpoint);
    if (endpoint === 'chat') {
      if (!Array.isArray(params.messages) || params.messages.length === 0) {
        throw new InvalidRequestError('messages must be a non-empty array.', { param: 'messages' });
      }
      for (let i = 0; i < params.messages.length; i++) {
        const m = params.messages[i] as unknown;
        if (m === null || typeof m !== 'object' || Array.isArray(m) || typeof (m as ChatMessage).role !== 'string') {
          throw new InvalidRequestError(`messages[${i}] must be an object with a string role.`, { param: `messages[${i}]` });
        }
      }
    }
    const priority = this.resolvePriority(params.priority ?? metadataPriority(params.metadata));
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
    if (endpoint === 'chat' || endpoint === 'completions') {
      // Each choice reserves its own completion budget; refused past OpenAI's range, as OpenAI does.
      for (const field of endpoint === 'chat' ? ['n'] : ['n', 'best_of']) {
        const v = params[field];
        if (v !== undefined && v !== null && (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_CHOICES)) {
          throw new InvalidRequestError(`${field} must be an integer from 1 to ${MAX_CHOICES}.`, { param: field });
        }
      }
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

  /** The group serves this endpoint (its mode), and its deployments can make the call. */
  private checkEndpoint(group: Group, endpoint: Endpoint): void {
    const wrong = wrongEndpoint(group.name, group.mode, endpoint);
    if (wrong !== undefined) throw new TriageError('wrong_endpoint', wrong, { param: 'model' });
    // The Responses API is translated to chat for deployments that do not speak it.
    if (endpoint !== 'chat' && endpoint !== 'responses' && !group.native.has(endpoint)) {
      throw new TriageError('endpoint_unsupported', `The deployments of '${group.name.slice(0, 200)}' cannot serve ${endpointName(endpoint)} (their provider does not offer it).`, { param: 'model' });
    }
  }

  /**
   * The body forwarded upstream for an endpoint other than chat, its tpm reservation, and for a
   * Responses request to chat-only deployments its chat translation (and what the Response echoes).
   */
  private endpointRequest(params: EndpointParams, endpoint: Endpoint, group: Group): { body: ChatCompletionBody; tokens: number; upstreamEndpoint: Endpoint; echo?: ResponseEcho } {
    const body = { model: params.model } as ChatCompletionBody;
    for (const k of Object.keys(params)) {
      if (TRIAGE_FIELDS.has(k) || k === 'model') continue;
      if (k === 'metadata') {
        const metadata = forwardedMetadata(params.metadata);
        if (metadata !== undefined) body.metadata = metadata;
      } else body[k] = params[k];
    }
    const maxTokens = (value: unknown, param: string): number => {
      if (value === undefined || value === null) return this.config.router.defaultMaxTokens;
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) throw new InvalidRequestError(`${param} must be a positive integer.`, { param });
      return value;
    };
    if (endpoint === 'embeddings') {
      return { body, tokens: inputTokens(params.input, 'input', MAX_EMBEDDING_INPUTS), upstreamEndpoint: endpoint };
    }
    if (endpoint === 'completions') {
      const budget = completionChoices(params.n, params.best_of) * maxTokens(params.max_tokens, 'max_tokens');
      return { body, tokens: inputTokens(params.prompt, 'prompt', MAX_COMPLETION_PROMPTS) + budget, upstreamEndpoint: endpoint };
    }
    checkResponsesInput(params.input);
    const tokens = responsesInputTokens(params.input, params.instructions) + maxTokens(params.max_output_tokens, 'max_output_tokens');
    if (group.native.has('responses')) return { body, tokens, upstreamEndpoint: 'responses' };
    const { chat, echo } = responsesToChat(body);
    return { body: chat, tokens, upstreamEndpoint: 'chat', echo };
  }

  /**
   * Queues a completion and resolves when it is served: with the completion, or for `stream: true`
   * with the chunk stream once its first chunk arrives (so errors before that keep their status).
   */
  schedule(params: CompletionParams | EndpointParams, endpoint: Endpoint = 'chat'): Promise<ScheduledResult> {
    if (this.closing) return Promise.reject(new ShuttingDownError());
    let checked: ReturnType<Router['validate']>;
    let body: ChatCompletionBody;
    let tokens: number;
    let upstreamEndpoint: Endpoint = endpoint;
    let echo: ResponseEcho | undefined;
    try {
      checked = this.validate(params, endpoint);
      if (endpoint === 'chat') {
        const chat = params as CompletionParams;
        body = { model: chat.model, messages: chat.messages };
        for (const k of Object.keys(chat)) if (!TRIAGE_FIELDS.has(k) && k !== 'model' && k !== 'messages') body[k] = chat[k];
        if (chat.metadata !== undefined) {
          const metadata = forwardedMetadata(chat.metadata);
          if (metadata === undefined) delete body.metadata;
          else body.metadata = metadata;
        }
        const maxTokens = typeof chat.max_completion_tokens === 'number' ? chat.max_completion_tokens : chat.max_tokens;
        tokens = estimateRequestTokens(chat.messages, maxTokens, this.config.router.defaultMaxTokens, completionChoices(chat.n));
      } else {
        ({ body, tokens, upstreamEndpoint, echo } = this.endpointRequest(params, endpoint, checked.group));
      }
    } catch (e) {
      return Promise.reject(e);
    }
    const { group, priority, queueTimeoutMs } = checked;
    const id = newRequestId();
    const stream = params.stream === true;

    const scheduled = new Promise<ScheduledResult>((resolve, reject) => {
      const chunks = stream
        ? new ChunkQueue<ChatCompletionChunk | JsonObject>(
            () => live.handleEvent(),
            () => live.streamStarted(),
          )
        : undefined;
      const live = new LiveRequest(resolve, reject, chunks, params.signal);
      const input: RequestInput = {
        id,
        // The group's name (an alias or a wildcard's model resolves to it): events, status and position use it.
        model: group.name,
        priority,
        tenant: params.tenant ?? '',
        endpoint: upstreamEndpoint,
        body,
        stream,
        tokens,
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
    if (echo === undefined) return scheduled;
    // A Responses request served by chat: the answer translated back.
    const requestEcho = echo;
    return scheduled.then((result) =>
      result.kind === 'completion'
        ? { kind: 'completion', meta: result.meta, completion: chatToResponse(result.completion as ChatCompletion, requestEcho) }
        : { kind: 'stream', meta: result.meta, stream: chunksToResponseEvents(result.stream, requestEcho, this.clock.now()) },
    );
  }

  /** LiteLLM's schedule_acompletion: the completion, or an async iterable of chunks when streaming. */
  scheduleCompletion(params: CompletionParams & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
  scheduleCompletion(params: CompletionParams): Promise<ChatCompletion>;
  scheduleCompletion(params: CompletionParams): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>> {
    return this.schedule(params).then((result) => (result.kind === 'completion' ? (result.completion as ChatCompletion) : (result.stream as AsyncIterable<ChatCompletionChunk>)));
  }

  /**
   * Any endpoint through the same queue: `'responses'` (a Response, or its events when streaming),
   * `'embeddings'`, `'completions'` (legacy text completions), or `'chat'`.
   */
  scheduleEndpoint(endpoint: Endpoint, params: EndpointParams): Promise<JsonObject | AsyncIterable<JsonObject>> {
    return this.schedule(params, endpoint).then((result) => (result.kind === 'completion' ? (result.completion as JsonObject) : (result.stream as AsyncIterable<JsonObject>)));
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

export function createRouter(config: TriageConfig, options?: RouterOptions): Router {
  return new Router(config, options);
}
