/**
 * What a deployment is to the scheduler: something that answers a chat completion, given an
 * AbortSignal, and optionally the other OpenAI endpoints (Responses, embeddings, legacy completions)
 * through one generic JSON / server-sent-events call. Mocks (`mock_response`) and real HTTP upstreams
 * implement the same interface; a provider that only speaks chat implements complete/stream alone,
 * and the router translates the Responses API to chat for it.
 */
import type { Clock } from './clock.js';
import type { DeploymentConfig } from './config-types.js';
import type { UpstreamBlock } from './upstream-limits.js';
import type { Endpoint } from './endpoints.js';
import type { ChatCompletion, ChatCompletionBody, ChatCompletionChunk, EndpointBody, JsonObject } from './openai-types.js';

export interface UpstreamCall {
  body: ChatCompletionBody;
  signal: AbortSignal;
  /**
   * Told when the provider's rate-limit headers (of a success or a failure) say a limit is used up:
   * the deployment then grants nothing more until it resets. Not called when the deployment has
   * `respect_upstream_rate_limit_headers: false`.
   */
  reportUpstreamBlock?(block: UpstreamBlock): void;
}

/** A call to an endpoint other than chat completions: the body as that endpoint takes it. */
export interface EndpointCall {
  endpoint: Exclude<Endpoint, 'chat'>;
  body: EndpointBody;
  signal: AbortSignal;
  /** As UpstreamCall's: the provider's rate-limit headers say a limit is used up. */
  reportUpstreamBlock?(block: UpstreamBlock): void;
}

export interface Upstream {
  complete(call: UpstreamCall): Promise<ChatCompletion>;
  /** Chunks as they arrive; the last chunk carries `usage` when the upstream reports it. */
  stream(call: UpstreamCall): AsyncIterable<ChatCompletionChunk>;
  /** The endpoints besides chat this upstream speaks natively (absent: chat only). */
  readonly endpoints?: ReadonlySet<Exclude<Endpoint, 'chat'>>;
  /** The endpoint's JSON answer (needed for each endpoint in `endpoints`). */
  send?(call: EndpointCall): Promise<JsonObject>;
  /**
   * The endpoint's stream, one parsed SSE `data` object per event as it arrives (the Responses API
   * names each event by its `type` field). A chat-style stream's `[DONE]` is not yielded.
   */
  sendStream?(call: EndpointCall): AsyncIterable<JsonObject>;
}

/**
 * `auth_failed`: the upstream refused the deployment's own credentials (401/403). That is the gateway's
 * configuration, not the caller's request: another deployment may work, so it is retried elsewhere and
 * the deployment cools down at once, and the caller never sees the upstream's 401.
 */
export type UpstreamFailureKind = 'rate_limited' | 'server_error' | 'network' | 'timeout' | 'auth_failed' | 'client_error';

/** A failed upstream call, classified for retries and cooldown. */
export class UpstreamError extends Error {
  constructor(
    readonly kind: UpstreamFailureKind,
    message: string,
    readonly status?: number,
    /** From the upstream's Retry-After, when it sent one. */
    readonly retryAfterMs?: number,
    /** The upstream's own error body (4xx are passed through to the caller). */
    readonly body?: unknown,
  ) {
    super(message);
    this.name = 'UpstreamError';
  }

  /** 429, 401/403, 5xx, network errors and timeouts are worth another try (on this or another deployment). */
  get retryable(): boolean {
    return this.kind !== 'client_error';
  }
}

export type UpstreamFactory = (deployment: DeploymentConfig, clock: Clock) => Upstream;
