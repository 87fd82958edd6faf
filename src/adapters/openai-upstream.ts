/**
 * The OpenAI-compatible HTTP upstream (`model: openai/<name>`, `api_base`, `api_key`): forwards the
 * body, streams SSE through chunk by chunk as it arrives, and classifies failures for retries and
 * cooldown (429 with its Retry-After, 5xx, network). 4xx answers pass through to the caller.
 */
import type { DeploymentConfig } from './config-types.js';
import type { ChatCompletion, ChatCompletionBody, ChatCompletionChunk } from './openai-types.js';
import { UpstreamError, type Upstream, type UpstreamCall, type UpstreamFactory } from './upstream.js';

/** LiteLLM control fields that must never be steered by a caller through the upstream. */
const CONTROL_FIELDS = ['mock_response', 'mock_delay', 'api_base', 'api_key', 'base_url', 'api_version', 'litellm_params', 'user_config'];

export function parseRetryAfter(headers: Headers, now = Date.now()): number | undefined {
  const ms = headers.get('retry-after-ms');
  if (ms !== null && Number.isFinite(Number(ms)) && Number(ms) >= 0) return Number(ms);
  const value = headers.get('retry-after');
  if (value === null) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
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
  const retryAfter = parseRetryAfter(response.headers);
  if (response.status === 429) return new UpstreamError('rate_limited', message, 429, retryAfter, body);
  if (response.status >= 500 || response.status === 408) return new UpstreamError('server_error', message, response.status, retryAfter, body);
  return new UpstreamError('client_error', message, response.status, undefined, body);
}

function networkError(e: unknown): UpstreamError {
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

export class OpenAIUpstream implements Upstream {
  private readonly url: string;

  constructor(private readonly deployment: DeploymentConfig) {
    this.url = `${(deployment.apiBase ?? 'https://api.openai.com/v1').replace(/\/+$/, '')}/chat/completions`;
  }

  private request(body: ChatCompletionBody, signal: AbortSignal): Promise<Response> {
    const forwarded: Record<string, unknown> = { ...body };
    for (const f of CONTROL_FIELDS) delete forwarded[f];
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: body.stream ? 'text/event-stream' : 'application/json' };
    if (this.deployment.apiKey) headers.authorization = `Bearer ${this.deployment.apiKey}`;
    return fetch(this.url, { method: 'POST', headers, body: JSON.stringify(forwarded), signal });
  }

  async complete(call: UpstreamCall): Promise<ChatCompletion> {
    let response: Response;
    try {
      response = await this.request({ ...call.body, stream: false }, call.signal);
    } catch (e) {
      if (call.signal.aborted) throw call.signal.reason;
      throw networkError(e);
    }
    if (!response.ok) throw await failureFrom(response);
    try {
      return (await response.json()) as ChatCompletion;
    } catch (e) {
      if (call.signal.aborted) throw call.signal.reason;
      throw new UpstreamError('network', `upstream sent an unreadable body: ${(e as Error).message}`);
    }
  }

  async *stream(call: UpstreamCall): AsyncIterable<ChatCompletionChunk> {
    const options = (call.body.stream_options ?? {}) as { include_usage?: boolean };
    const callerWantsUsage = options.include_usage === true;
    // Ask for usage even when the caller did not: tpm reservations are reconciled with it.
    const body = { ...call.body, stream: true, stream_options: { ...options, include_usage: true } };
    let response: Response;
    try {
      response = await this.request(body, call.signal);
    } catch (e) {
      if (call.signal.aborted) throw call.signal.reason;
      throw networkError(e);
    }
    if (!response.ok) throw await failureFrom(response);
    if (response.body === null) throw new UpstreamError('network', 'upstream sent no stream body');
    let sawDone = false;
    try {
      for await (const data of sseData(response.body)) {
        if (data === '[DONE]') {
          sawDone = true;
          break;
        }
        let chunk: ChatCompletionChunk;
        try {
          chunk = JSON.parse(data) as ChatCompletionChunk;
        } catch {
          throw new UpstreamError('network', 'upstream sent an unreadable stream event');
        }
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
    }
    if (!sawDone) throw new UpstreamError('network', 'upstream stream ended before [DONE]');
  }
}

export const openAIUpstreamFactory: UpstreamFactory = (deployment) => new OpenAIUpstream(deployment);
