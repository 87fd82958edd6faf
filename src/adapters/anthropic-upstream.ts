/**
 * The Anthropic upstream (`anthropic/<model>`): an OpenAI chat completion translated to Anthropic's
 * Messages API (POST {api_base}/v1/messages with `x-api-key` and `anthropic-version`), its answer and
 * its stream translated back (anthropic-translate.ts). 429 and 529 (overloaded) cool the deployment
 * down at once, honouring `retry-after`; Anthropic's rate-limit headers block it until their reset.
 */
import type { DeploymentConfig } from '../core/config-types.js';
import type { ChatCompletion, ChatCompletionChunk } from '../core/openai-types.js';
import { AnthropicStreamTranslator, anthropicErrorOf, fromAnthropicMessage, MalformedAnswerError, toAnthropicRequest, TranslationError } from './anthropic-translate.js';
import { classify, networkError, parseRetryAfter, sseData } from './openai-upstream.js';
import { UpstreamError, type Upstream, type UpstreamCall } from '../core/upstream.js';
import { parseAnthropicRateLimitHeaders, upstreamBlock } from '../core/upstream-limits.js';
import { upstreamTarget, type UpstreamTarget } from './upstream-target.js';

/** Anthropic's overloaded status: like a 429, the deployment backs off at once. */
const OVERLOADED = 529;

/** An Anthropic error type (from a body or a stream's error event) as the HTTP status Anthropic uses for it. */
const STATUS_OF_ERROR_TYPE: Record<string, number> = {
  invalid_request_error: 400,
  authentication_error: 401,
  permission_error: 403,
  not_found_error: 404,
  request_too_large: 413,
  rate_limit_error: 429,
  api_error: 500,
  overloaded_error: OVERLOADED,
};

function failure(status: number, message: string, retryAfterMs: number | undefined, body: unknown): UpstreamError {
  if (status === OVERLOADED) return new UpstreamError('rate_limited', message, status, retryAfterMs, body);
  return classify(status, message, retryAfterMs, body);
}

export class AnthropicUpstream implements Upstream {
  private readonly url: string;
  private readonly target: UpstreamTarget;
  private readonly readLimits: boolean;

  constructor(
    private readonly deployment: DeploymentConfig,
    private readonly defaultMaxTokens: number,
  ) {
    this.target = upstreamTarget(deployment);
    // LiteLLM accepts an api_base that already ends in /v1/messages; so does Triage.
    this.url = this.target.url('/v1/messages').replace(/\/v1\/messages\/v1\/messages$/, '/v1/messages');
    this.readLimits = deployment.respectUpstreamRateLimitHeaders !== false;
  }

  private async request(call: UpstreamCall, stream: boolean): Promise<Response> {
    let body: Record<string, unknown>;
    try {
      body = toAnthropicRequest(Object.assign({}, call.body, { stream }), this.defaultMaxTokens);
    } catch (e) {
      if (!(e instanceof TranslationError)) throw e;
      // The caller's request cannot be said in Anthropic's terms: a 400 with OpenAI's envelope fields.
      throw new UpstreamError('client_error', e.message, 400, undefined, { error: { message: e.message, type: 'invalid_request_error', param: e.param } });
    }
    const headers = Object.assign({ 'content-type': 'application/json', accept: stream ? 'text/event-stream' : 'application/json' }, this.target.headers);
    let response: Response;
    try {
      response = await fetch(this.url, { method: 'POST', headers, body: JSON.stringify(body), signal: call.signal });
    } catch (e) {
      if (call.signal.aborted) throw call.signal.reason;
      throw networkError(e);
    }
    if (this.readLimits && call.reportUpstreamBlock !== undefined) {
      const block = upstreamBlock(parseAnthropicRateLimitHeaders(response.headers));
      if (block !== undefined) call.reportUpstreamBlock(block);
    }
    if (!response.ok) throw await this.failureFrom(response);
    return response;
  }

  private async failureFrom(response: Response): Promise<UpstreamError> {
    const text = await response.text().catch(() => '');
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    const detail = anthropicErrorOf(body);
    const message = `HTTP ${response.status}${detail ? `: ${detail.type}: ${detail.message.slice(0, 500)}` : ''}`;
    return failure(response.status, message, parseRetryAfter(response.headers), body);
  }

  private malformed(what: string): UpstreamError {
    return new UpstreamError('network', `deployment ${this.deployment.id} sent ${what}`);
  }

  async complete(call: UpstreamCall): Promise<ChatCompletion> {
    const response = await this.request(call, false);
    let parsed: unknown;
    try {
      parsed = await response.json();
    } catch (e) {
      if (call.signal.aborted) throw call.signal.reason;
      throw this.malformed(`an unreadable body: ${(e as Error).message}`);
    }
    try {
      return fromAnthropicMessage(parsed);
    } catch (e) {
      if (e instanceof MalformedAnswerError) throw this.malformed(`a malformed answer: ${e.message}`);
      throw e;
    }
  }

  async *stream(call: UpstreamCall): AsyncIterable<ChatCompletionChunk> {
    const response = await this.request(call, true);
    if (response.body === null) throw this.malformed('no stream body');
    const options = (call.body.stream_options ?? {}) as { include_usage?: boolean };
    const callerWantsUsage = options.include_usage === true;
    const translator = new AnthropicStreamTranslator(call.body.model);
    try {
      for await (const data of sseData(response.body)) {
        let event: unknown;
        try {
          event = JSON.parse(data);
        } catch {
          throw this.malformed('an unreadable stream event');
        }
        let out: ReturnType<AnthropicStreamTranslator['push']>;
        try {
          out = translator.push(event);
        } catch (e) {
          if (e instanceof MalformedAnswerError) throw this.malformed(`a malformed stream event: ${e.message}`);
          throw e;
        }
        if (!Array.isArray(out)) {
          const status = STATUS_OF_ERROR_TYPE[out.error.type] ?? 500;
          throw failure(status, `upstream stream error: ${out.error.type}: ${out.error.message.slice(0, 500)}`, undefined, { error: out.error });
        }
        for (const chunk of out) {
          // The usage chunk is kept for tpm accounting but not shown to a caller who did not ask.
          if (chunk.usage && !callerWantsUsage) yield Object.assign(chunk, { __triageHidden: true });
          else yield chunk;
        }
        if (translator.ended) break;
      }
    } catch (e) {
      if (call.signal.aborted) throw call.signal.reason;
      throw networkError(e);
    } finally {
      if (!translator.ended) response.body.cancel().catch(() => {});
    }
    if (!translator.ended) throw this.malformed('a stream that ended before message_stop');
  }
}
