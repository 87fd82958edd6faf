/**
 * The OpenAI wire-format HTTP upstream (openai/, azure/, azure_ai/ and the OpenAI-compatible families of
 * providers.ts; URL and auth from upstream-target.ts): forwards the
 * body, streams SSE through chunk by chunk as it arrives, and classifies failures for retries and
 * cooldown (429 with its Retry-After, 5xx, network). 4xx answers pass through to the caller.
 */
import type { DeploymentConfig } from '../core/config-types.js';
import { UPSTREAM_PATH, type Endpoint } from '../core/endpoints.js';
import type { ChatCompletion, ChatCompletionBody, ChatCompletionChunk, EndpointBody, JsonObject } from '../core/openai-types.js';
import { UpstreamError, type EndpointCall, type Upstream, type UpstreamCall, type UpstreamFactory } from '../core/upstream.js';
import { parseOpenAIRateLimitHeaders, upstreamBlock, type UpstreamBlock } from '../core/upstream-limits.js';
import { acceptsStreamOptions, upstreamTarget, type UpstreamTarget } from './upstream-target.js';

/** LiteLLM control fields that must never be steered by a caller through the upstream. */
const CONTROL_FIELDS = ['mock_response', 'mock_delay', 'api_base', 'api_key', 'base_url', 'api_version', 'azure_ad_token', 'litellm_params', 'user_config'];

/** Providers whose API serves the Responses API itself (and keeps its conversation state). */
export const RESPONSES_PROVIDERS: readonly string[] = ['openai', 'azure'];

/** A non-negative decimal number, as Retry-After's delay-seconds (and OpenAI's retry-after-ms) are written. */
const DELAY = /^\d+(\.\d+)?$/;

/**
 * The upstream's wait hint in ms: `retry-after-ms` (OpenAI) first, then `Retry-After` as seconds or an
 * HTTP date. Empty, negative or malformed values are no hint (undefined), never 0: a 0 would skip the
 * cooldown a 429 otherwise gets.
 */
export function parseRetryAfter(headers: Headers, now = Date.now()): number | undefined {
  const ms = headers.get('retry-after-ms')?.trim();
  if (ms !== undefined && DELAY.test(ms)) return Number(ms);
  const value = headers.get('retry-after')?.trim();
  if (value === undefined || value === '') return undefined;
  if (DELAY.test(value)) return Number(value) * 1000;
  // HTTP dates start with a day name; Date.parse alone also accepts things like "-3" as a year.
  if (!/^[A-Za-z]/.test(value)) return undefined;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

async function failureFrom(response: Response): Promise<UpstreamError> {
  let body: unknown;
  const text = await response.text().catch(() => '');
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const upstreamMessage = (body as { error?: { message?: unknown } } | undefined)?.error?.message;
  const message = `HTTP ${response.status}${typeof upstreamMessage === 'string' ? `: ${upstreamMessage.slice(0, 500)}` : ''}`;
  return classify(response.status, message, parseRetryAfter(response.headers), body);
}

/** An upstream's failed status as a failure kind (429 rate limited, 5xx/408 server error, 401/403 auth, other 4xx the caller's). */
export function classify(status: number, message: string, retryAfter: number | undefined, body: unknown): UpstreamError {
  if (status === 429) return new UpstreamError('rate_limited', message, 429, retryAfter, body);
  if (status >= 500 || status === 408) return new UpstreamError('server_error', message, status, retryAfter, body);
  if (status === 401 || status === 403) return new UpstreamError('auth_failed', message, status, undefined, body);
  return new UpstreamError('client_error', message, status, undefined, body);
}

/**
 * An `{"error": {...}}` event inside a 200 stream (OpenAI and vLLM report mid-stream failures so): a
 * failure classified by the status its `code`/`status` names when that is a 4xx/5xx, else a server
 * error.
 */
function streamErrorFrom(event: { error: unknown }): UpstreamError {
  const error = (event.error ?? {}) as { message?: unknown; code?: unknown; status?: unknown };
  const detail = typeof error.message === 'string' ? error.message.slice(0, 500) : typeof event.error === 'string' ? event.error.slice(0, 500) : 'unknown error';
  const named = [error.status, error.code].map(Number).find((n) => Number.isInteger(n) && n >= 400 && n <= 599);
  const message = `upstream stream error: ${detail}`;
  return named === undefined ? new UpstreamError('server_error', message, undefined, undefined, event) : classify(named, message, undefined, event);
}

export function networkError(e: unknown): UpstreamError {
  if (e instanceof UpstreamError) return e;
  const cause = (e as { cause?: { code?: string; message?: string } })?.cause;
  return new UpstreamError('network', `upstream connection failed: ${cause?.code ?? cause?.message ?? (e as Error)?.message ?? String(e)}`);
}

/** Splits an SSE byte stream into `data:` payloads, as they arrive. */
export async function* sseData(body: ReadableStream<Uint8Array>): AsyncIterable<string> {
  const decoder = new TextDecoder();
  let buffer = '';
  const reader = body.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let boundary: number;
      while ((boundary = buffer.search(/\r?\n\r?\n/)) !== -1) {
        const event = buffer.slice(0, boundary);
        buffer = buffer.slice(boundary).replace(/^\r?\n\r?\n/, '');
        const data = event
          .split(/\r?\n/)
          .filter((line) => line.startsWith('data:'))
          .map((line) => line.slice(5).replace(/^ /, ''))
          .join('\n');
        if (data !== '') yield data;
      }
    }
  } finally {
    reader.releaseLock();
  }
}

/** One parsed SSE event that must be a JSON object; anything else is an unreadable stream, named by its deployment. */
function parseEvent(data: string, deploymentId: string): JsonObject {
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch {
    parsed = undefined;
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new UpstreamError('network', `deployment ${deploymentId} sent an unreadable stream event`);
  }
  return parsed as JsonObject;
}

export class OpenAIUpstream implements Upstream {
  /**
   * Embeddings and legacy completions, at their OpenAI paths under api_base; the Responses API too for
   * OpenAI and Azure, which keep its state. The other OpenAI-compatible families (vLLM and the like)
   * get the Responses API translated to chat (responses-translation.ts).
   */
  readonly endpoints: ReadonlySet<Exclude<Endpoint, 'chat'>>;
  private readonly url: string;
  private readonly target: UpstreamTarget;
  private readonly readLimits: boolean;
  private readonly streamUsage: boolean;
  private readonly urls = new Map<Endpoint, string>();

  constructor(private readonly deployment: DeploymentConfig) {
    // The one place this upstream's URL and auth come from (Azure's layout and api-key included).
    this.target = upstreamTarget(deployment);
    this.url = this.urlFor('chat');
    this.readLimits = deployment.respectUpstreamRateLimitHeaders !== false;
    this.streamUsage = acceptsStreamOptions(deployment);
    this.endpoints = new Set(RESPONSES_PROVIDERS.includes(deployment.provider) ? (['responses', 'embeddings', 'completions'] as const) : (['embeddings', 'completions'] as const));
  }

  /** The one place an endpoint's URL is built: the provider's target (upstream-target.ts) for the endpoint's OpenAI path. */
  protected urlFor(endpoint: Endpoint): string {
    let url = this.urls.get(endpoint);
    if (url === undefined) {
      url = this.target.url(UPSTREAM_PATH[endpoint]);
      this.urls.set(endpoint, url);
    }
    return url;
  }

  private request(body: ChatCompletionBody | EndpointBody, signal: AbortSignal, url = this.url): Promise<Response> {
    const forwarded: Record<string, unknown> = Object.assign({}, body);
    for (const f of CONTROL_FIELDS) delete forwarded[f];
    // Azure takes the deployment from the URL; its `model` field is ignored there, and harmless.
    const headers: Record<string, string> = Object.assign({ 'content-type': 'application/json', accept: body.stream ? 'text/event-stream' : 'application/json' }, this.target.headers);
    return fetch(url, { method: 'POST', headers, body: JSON.stringify(forwarded), signal });
  }

  private async post(call: EndpointCall, body: EndpointBody): Promise<Response> {
    let response: Response;
    try {
      response = await this.request(body, call.signal, this.urlFor(call.endpoint));
    } catch (e) {
      if (call.signal.aborted) throw call.signal.reason;
      throw networkError(e);
    }
    this.noteLimits(response, call);
    if (!response.ok) throw await failureFrom(response);
    return response;
  }

  async send(call: EndpointCall): Promise<JsonObject> {
    const response = await this.post(call, call.body.stream === true ? Object.assign({}, call.body, { stream: false }) : call.body);
    try {
      const answer: unknown = await response.json();
      if (answer === null || typeof answer !== 'object' || Array.isArray(answer)) throw new Error('not a JSON object');
      return answer as JsonObject;
    } catch (e) {
      if (call.signal.aborted) throw call.signal.reason;
      throw new UpstreamError('network', `upstream sent an unreadable body: ${(e as Error).message}`);
    }
  }

  /**
   * The endpoint's events as they arrive. A Responses stream ends when the upstream closes it after
   * `response.completed` (or `.failed` / `.incomplete`); a completions stream ends with `[DONE]`.
   */
  async *sendStream(call: EndpointCall): AsyncIterable<JsonObject> {
    const body: EndpointBody = Object.assign({}, call.body, { stream: true });
    // Legacy completions report usage only when asked, as chat does; tpm is reconciled with it, and the
    // caller sees the usage chunk only if it asked.
    const hideUsage = call.endpoint === 'completions' && (call.body.stream_options as { include_usage?: unknown } | undefined)?.include_usage !== true;
    if (call.endpoint === 'completions') body.stream_options = Object.assign({}, call.body.stream_options as object | undefined, { include_usage: true });
    const response = await this.post(call, body);
    if (response.body === null) throw new UpstreamError('network', 'upstream sent no stream body');
    let finished = false;
    let sawEnd = false;
    try {
      for await (const data of sseData(response.body)) {
        if (data === '[DONE]') {
          finished = true;
          sawEnd = true;
          break;
        }
        const event = parseEvent(data, this.deployment.id);
        if (call.endpoint === 'completions' && event.error != null && !Array.isArray(event.choices)) throw streamErrorFrom(event as { error: unknown });
        const type = event.type;
        if (type === 'response.completed' || type === 'response.failed' || type === 'response.incomplete' || type === 'error') sawEnd = true;
        if (hideUsage && event.usage != null && Array.isArray(event.choices) && event.choices.length === 0) event.__triageHidden = true;
        yield event;
      }
      finished = true;
    } catch (e) {
      if (call.signal.aborted) throw call.signal.reason;
      throw networkError(e);
    } finally {
      if (!finished) response.body.cancel().catch(() => {});
    }
    if (!sawEnd) throw new UpstreamError('network', `upstream ${call.endpoint} stream ended before its last event`);
  }

  /** The provider's rate-limit headers, from a success or a failure, told to the call (upstream-limits.ts). */
  private noteLimits(response: Response, call: { reportUpstreamBlock?(block: UpstreamBlock): void }): void {
    if (!this.readLimits || call.reportUpstreamBlock === undefined) return;
    const block = upstreamBlock(parseOpenAIRateLimitHeaders(response.headers));
    if (block !== undefined) call.reportUpstreamBlock(block);
  }

  async complete(call: UpstreamCall): Promise<ChatCompletion> {
    let response: Response;
    try {
      response = await this.request(Object.assign({}, call.body, { stream: false }), call.signal);
    } catch (e) {
      if (call.signal.aborted) throw call.signal.reason;
      throw networkError(e);
    }
    this.noteLimits(response, call);
    if (!response.ok) throw await failureFrom(response);
    let parsed: unknown;
    try {
      parsed = await response.json();
    } catch (e) {
      if (call.signal.aborted) throw call.signal.reason;
      throw new UpstreamError('network', `deployment ${this.deployment.id} sent an unreadable body: ${(e as Error).message}`);
    }
    if (parsed === null || typeof parsed !== 'object' || !Array.isArray((parsed as { choices?: unknown }).choices)) {
      throw new UpstreamError('network', `deployment ${this.deployment.id} sent a body that is not a chat completion (no choices list)`);
    }
    return parsed as ChatCompletion;
  }

  async *stream(call: UpstreamCall): AsyncIterable<ChatCompletionChunk> {
    const options = (call.body.stream_options ?? {}) as { include_usage?: boolean };
    const callerWantsUsage = options.include_usage === true;
    // Ask for usage even when the caller did not: tpm reservations are reconciled with it (unless the
    // API version predates stream_options and would refuse it).
    const body = this.streamUsage ? Object.assign({}, call.body, { stream: true, stream_options: Object.assign({}, options, { include_usage: true }) }) : Object.assign({}, call.body, { stream: true });
    let response: Response;
    try {
      response = await this.request(body, call.signal);
    } catch (e) {
      if (call.signal.aborted) throw call.signal.reason;
      throw networkError(e);
    }
    this.noteLimits(response, call);
    if (!response.ok) throw await failureFrom(response);
    if (response.body === null) throw new UpstreamError('network', `deployment ${this.deployment.id} sent no stream body`);
    let sawDone = false;
    try {
      for await (const data of sseData(response.body)) {
        if (data === '[DONE]') {
          sawDone = true;
          break;
        }
        const parsed = parseEvent(data, this.deployment.id);
        const event = parsed as { error?: unknown; choices?: unknown };
        if (event.error != null && !Array.isArray(event.choices)) throw streamErrorFrom(event as { error: unknown });
        const chunk = parsed as ChatCompletionChunk;
        // The usage-only chunk we asked for is kept for accounting but not shown to a caller who did not ask.
        if (!callerWantsUsage && chunk.usage && Array.isArray(chunk.choices) && chunk.choices.length === 0) {
          yield { ...chunk, choices: [], usage: chunk.usage, __triageHidden: true };
          continue;
        }
        yield chunk;
      }
    } catch (e) {
      if (call.signal.aborted) throw call.signal.reason;
      throw networkError(e);
    } finally {
      // Given up early (bad event, error event, consumer stopped): close the upstream response instead
      // of leaving its connection open until garbage collection. After [DONE] the body ends by itself.
      if (!sawDone) response.body.cancel().catch(() => {});
    }
    if (!sawDone) throw new UpstreamError('network', `deployment ${this.deployment.id}'s stream ended before [DONE]`);
  }
}

export const openAIUpstreamFactory: UpstreamFactory = (deployment) => new OpenAIUpstream(deployment);
