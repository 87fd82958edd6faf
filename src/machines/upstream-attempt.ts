/**
 * One dispatched attempt's upstream call, with its own timeout (separate from the queue wait). The
 * request actor's `dispatched` state starts it on entry and cancels it on exit; its end comes back to
 * the actor as `upstream.done` or `upstream.failed`, at most once and never after a cancel. A plain
 * object, not an invoked promise actor: a child actor per call was a third of the request machine's
 * cost on the hot path.
 *
 * The AbortSignal handed to the upstream is made when the upstream first reads it. An AbortController
 * is costly on Node 20 (docs/performance.md, "No AbortController unless the upstream wants one"), and
 * an upstream that answers without I/O (a mock with no delay) never reads it. The timeout ends the attempt itself, so even an upstream that ignores its signal cannot hold a
 * request in `dispatched` past its timeout.
 */
import type { AnyActorRef } from 'xstate';
import type { UpstreamBlock } from '../core/upstream-limits.js';
import type { Endpoint } from '../core/endpoints.js';
import { normalizeUsage, type ChatCompletion, type ChatCompletionBody, type ChatCompletionChunk, type JsonObject, type Usage } from '../core/openai-types.js';
import { UpstreamError, type EndpointCall, type Upstream, type UpstreamCall } from '../core/upstream.js';
import type { Clock, TimerHandle } from '../core/clock.js';
import type { Grant } from './scheduler-store.js';

/** Where a streaming request's chunks go while it is dispatched. */
export interface ChunkSink {
  /** A chat chunk, or another endpoint's stream event. */
  push(chunk: ChatCompletionChunk | JsonObject): void;
  /** True once a chunk went out: the request can then no longer be retried. */
  readonly started: boolean;
}

/** How a deployment is reached: its upstream, its call timeout, and the model name it knows. */
export interface DeploymentRoute {
  upstream: Upstream;
  requestTimeoutMs: number;
  upstreamModel: string;
  /** `forward_priority: true`: the request's priority is sent upstream as `priority` (vLLM's field). */
  forwardPriority?: boolean;
}

export interface UpstreamAttemptInput {
  grant: Grant;
  /** The upstream endpoint called (a Responses request translated to chat calls `chat`). */
  endpoint: Endpoint;
  body: ChatCompletionBody;
  stream: boolean;
  /** The request's priority, forwarded only to deployments with `forward_priority`. */
  priority: number;
  sink?: ChunkSink;
  clock: Clock;
  /** undefined: a deployment this instance does not know (a grant from an instance with another config). */
  upstreamFor: (deploymentId: string) => DeploymentRoute | undefined;
}

export interface UpstreamOutput {
  /** The chat completion, or another endpoint's JSON answer. */
  completion?: ChatCompletion | JsonObject;
  usage?: Usage;
}

/**
 * What an attempt sends its request actor when it ends: the result, or the error, and what the
 * provider's rate-limit headers said meanwhile (carried to the store with the release).
 */
export type UpstreamAttemptEvent =
  | { type: 'upstream.done'; output: UpstreamOutput; upstreamBlock: UpstreamBlock | undefined }
  | { type: 'upstream.failed'; error: unknown; upstreamBlock: UpstreamBlock | undefined };

/** The abort reason when a request leaves `dispatched` early (one shared value: no Error per request). */
const LEFT_DISPATCHED = Object.freeze({ reason: 'the request left dispatched (cancelled)' });

export class UpstreamAttempt implements UpstreamCall {
  /** Read by upstreams as an EndpointCall's endpoint when it is not chat. */
  readonly endpoint: Endpoint;
  /** The body as the deployment gets it (set by start): the group name the caller used becomes the deployment's model. */
  body!: ChatCompletionBody;
  /** What the provider's rate-limit headers said (reportUpstreamBlock), sent with the attempt's end. */
  private upstreamBlock: UpstreamBlock | undefined = undefined;
  private ended = false;
  private aborted = false;
  private abortReason: unknown = undefined;
  private controller: AbortController | undefined = undefined;
  private timer: TimerHandle | undefined = undefined;

  /** Nothing happens until start(): XState may run the assign that makes an attempt without acting on it. */
  constructor(
    private readonly input: UpstreamAttemptInput,
    private readonly actor: AnyActorRef,
  ) {
    this.endpoint = input.endpoint;
  }

  /** Made on first read (see the file comment); already aborted if the attempt was. */
  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.abortReason);
    }
    return this.controller.signal;
  }

  reportUpstreamBlock(block: UpstreamBlock): void {
    this.upstreamBlock = block;
  }

  /** Starts the call; whatever goes wrong, even before it reaches the upstream, comes back as upstream.failed. */
  start(): void {
    this.run().then(
      (output) => this.end({ type: 'upstream.done', output, upstreamBlock: this.upstreamBlock }),
      (error: unknown) => this.end({ type: 'upstream.failed', error, upstreamBlock: this.upstreamBlock }),
    );
  }

  /** The request left `dispatched` before the call ended: abort it; no event follows. */
  cancel(): void {
    if (this.ended) return;
    this.ended = true;
    this.clearTimer();
    this.abort(LEFT_DISPATCHED);
  }

  private async run(): Promise<UpstreamOutput> {
    const { clock, grant } = this.input;
    const route = this.input.upstreamFor(grant.deploymentId);
    // A grant made by another instance sharing Redis, for a deployment this one's config lacks.
    if (route === undefined) throw new UpstreamError('network', `deployment ${grant.deploymentId} is not configured in this instance`);
    // Copied by Object.assign, not `{ ...body, model }` (docs/performance.md, "Object spread on the hot path").
    this.body = Object.assign({}, this.input.body);
    this.body.model = route.upstreamModel;
    if (route.forwardPriority === true) this.body.priority = this.input.priority;
    this.timer = clock.setTimeout(() => {
      this.timer = undefined;
      const error = new UpstreamError('timeout', `upstream did not answer within ${route.requestTimeoutMs} ms`, 504);
      this.abort(error);
      this.end({ type: 'upstream.failed', error, upstreamBlock: this.upstreamBlock });
    }, route.requestTimeoutMs);
    const upstream = route.upstream;
    if (this.endpoint !== 'chat') return this.runEndpoint(upstream);
    if (!this.input.stream) {
      const completion = await upstream.complete(this);
      return { completion, usage: completion.usage };
    }
    let usage: Usage | undefined;
    const sink = this.input.sink;
    for await (const chunk of upstream.stream(this)) {
      // An upstream that ignores its signal must not write to a request that has moved on.
      if (this.ended) break;
      if (chunk.usage) usage = chunk.usage;
      // A usage report the caller did not ask for is kept for tpm accounting only.
      if (chunk.__triageHidden !== true) sink?.push(chunk);
    }
    return { usage };
  }

  /** The Responses API (passed through), embeddings or legacy completions: one JSON answer or an event stream. */
  private async runEndpoint(upstream: Upstream): Promise<UpstreamOutput> {
    const call = this as unknown as EndpointCall;
    if (upstream.send === undefined || upstream.sendStream === undefined) {
      throw new UpstreamError('client_error', `this deployment does not serve ${this.endpoint}`, 400);
    }
    if (!this.input.stream) {
      const answer = await upstream.send(call);
      return { completion: answer, usage: normalizeUsage(answer.usage) };
    }
    let usage: Usage | undefined;
    const sink = this.input.sink;
    for await (const event of upstream.sendStream(call)) {
      if (this.ended) break;
      // Completions chunks carry usage; the Responses API reports it in its last event's response.
      const reported = event.usage ?? (event.response as { usage?: unknown } | undefined)?.usage;
      if (reported != null) usage = normalizeUsage(reported) ?? usage;
      if (event.__triageHidden !== true) sink?.push(event);
    }
    return { usage };
  }

  private abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.abortReason = reason;
    this.controller?.abort(reason);
  }

  private end(event: UpstreamAttemptEvent): void {
    if (this.ended) return;
    this.ended = true;
    this.clearTimer();
    this.actor.send(event);
  }

  private clearTimer(): void {
    if (this.timer === undefined) return;
    this.input.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }
}
