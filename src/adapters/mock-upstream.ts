/**
 * LiteLLM's `mock_response` deployments: answer with fixed content after `mock_delay`, with no
 * network. `"litellm.RateLimitError"` and `"litellm.InternalServerError"` make the deployment fail as
 * a real one would (429 / 500), so cooldown and retries can be exercised offline.
 *
 * They behave like the real API for what clients commonly send: `n` choices; `max_tokens` (or
 * `max_completion_tokens`) truncates the answer with finish_reason "length"; `tools` are answered with
 * the deployment's `mock_tool_calls` (finish_reason "tool_calls"); a `mock_response` written as an
 * object is the JSON text a `response_format` json_schema asks for; a stream sends its usage in a last
 * chunk with `choices: []` only when `stream_options.include_usage` asks. They also serve embeddings
 * (deterministic unit vectors, mock-embeddings.ts) and legacy text completions; the Responses API
 * reaches them translated to chat.
 */
import type { Clock } from '../core/clock.js';
import { newCompletionId } from '../machines/request-id.js';
import { estimatePromptTokens } from '../machines/token-estimate.js';
import type { DeploymentConfig } from '../core/config-types.js';
import type { Endpoint } from '../core/endpoints.js';
import { base64Embedding, embeddingItems, mockEmbedding } from './mock-embeddings.js';
import type { ChatCompletion, ChatCompletionBody, ChatCompletionChunk, JsonObject, Usage } from '../core/openai-types.js';
import { UpstreamError, type EndpointCall, type Upstream, type UpstreamCall } from '../core/upstream.js';

/** Resolves after ms on the given clock; rejects at once when the signal aborts. */
export function sleep(clock: Clock, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    // No delay means no timer: a zero wait must not depend on a (possibly fake) clock advancing.
    if (ms <= 0) return resolve();
    const onAbort = () => {
      clock.clearTimeout(handle);
      reject(signal.reason);
    };
    const handle = clock.setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Embedding size when neither the request (`dimensions`) nor `model_info.output_vector_size` says (text-embedding-3-small's). */
export const DEFAULT_MOCK_DIMENSIONS = 1536;
/** Most choices a mock makes for `n` (OpenAI's own limit). */
const MAX_N = 128;
const CHARS_PER_TOKEN = 4;

const tokensOf = (text: string): number => Math.ceil(text.length / CHARS_PER_TOKEN);

/** The answer's text cut to `maxTokens` (at ~4 characters a token), and whether it was cut. */
export function truncateToTokens(content: string, maxTokens: unknown): { text: string; truncated: boolean } {
  if (typeof maxTokens !== 'number' || !(maxTokens > 0) || tokensOf(content) <= maxTokens) return { text: content, truncated: false };
  return { text: content.slice(0, maxTokens * CHARS_PER_TOKEN), truncated: true };
}

/** How many choices: `n` when it is a whole number from 1 to 128 (else a 400, as the API answers). */
function choiceCount(n: unknown): number {
  if (n === undefined || n === null) return 1;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > MAX_N) {
    throw new UpstreamError('client_error', `n must be an integer from 1 to ${MAX_N}`, 400, undefined, { error: { message: `n must be an integer from 1 to ${MAX_N}.`, type: 'invalid_request_error', param: 'n', code: null } });
  }
  return n;
}

function promptText(prompt: unknown): string[] {
  if (typeof prompt === 'string') return [prompt];
  if (Array.isArray(prompt) && prompt.every((p) => typeof p === 'string')) return prompt as string[];
  // Token prompts: one prompt (a token array) or several.
  if (Array.isArray(prompt) && prompt.every((p) => Array.isArray(p))) return prompt.map(() => '');
  return [''];
}

const wantsUsage = (body: Record<string, unknown>): boolean => (body.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true;

/** What a chat answer is: text, or tool calls when the request offers tools and the deployment has some. */
interface ChatAnswer {
  content: string | null;
  toolCalls?: JsonObject[];
  finish: string;
  completionTokens: number;
}

export class MockUpstream implements Upstream {
  readonly endpoints: ReadonlySet<Exclude<Endpoint, 'chat'>> = new Set(['embeddings', 'completions'] as const);

  constructor(
    private readonly deployment: DeploymentConfig,
    private readonly clock: Clock,
  ) {}

  private failIfConfigured(): void {
    const r = this.deployment.mockResponse;
    if (r === 'litellm.RateLimitError') throw new UpstreamError('rate_limited', 'mock deployment answered 429 (litellm.RateLimitError)', 429);
    if (r === 'litellm.InternalServerError') throw new UpstreamError('server_error', 'mock deployment answered 500 (litellm.InternalServerError)', 500);
  }

  private answer(body: ChatCompletionBody): ChatAnswer {
    const tools = this.deployment.mockToolCalls;
    if (tools !== undefined && Array.isArray(body.tools) && body.tools.length > 0 && body.tool_choice !== 'none') {
      const toolCalls = tools.map((c) => ({ id: c.id, type: c.type, function: { name: c.function.name, arguments: c.function.arguments } }));
      return { content: null, toolCalls, finish: 'tool_calls', completionTokens: tokensOf(JSON.stringify(toolCalls)) };
    }
    const content = this.deployment.mockResponse ?? '';
    const maxTokens = body.max_completion_tokens ?? body.max_tokens;
    if (maxTokens === undefined) return { content, finish: 'stop', completionTokens: Math.max(1, tokensOf(content)) };
    const { text, truncated } = truncateToTokens(content, maxTokens);
    return { content: text, finish: truncated ? 'length' : 'stop', completionTokens: Math.max(1, tokensOf(text)) };
  }

  private usage(call: UpstreamCall, completionTokens: number): Usage {
    const prompt = estimatePromptTokens(call.body.messages);
    return { prompt_tokens: prompt, completion_tokens: completionTokens, total_tokens: prompt + completionTokens };
  }

  async complete(call: UpstreamCall): Promise<ChatCompletion> {
    // No delay, no wait: the signal is not even read (it is made on first read, see UpstreamAttempt).
    if (this.deployment.mockDelayMs > 0) await sleep(this.clock, this.deployment.mockDelayMs, call.signal);
    this.failIfConfigured();
    const body = call.body;
    const n = body.n === undefined ? 1 : choiceCount(body.n);
    const answer = this.answer(body);
    const message: ChatCompletion['choices'][0]['message'] = { role: 'assistant', content: answer.content };
    if (answer.toolCalls) message.tool_calls = answer.toolCalls;
    const choices: ChatCompletion['choices'] = [{ index: 0, finish_reason: answer.finish, message }];
    for (let i = 1; i < n; i++) choices.push({ index: i, finish_reason: answer.finish, message: Object.assign({}, message) });
    return {
      id: newCompletionId(),
      object: 'chat.completion',
      created: Math.floor(this.clock.now() / 1000),
      model: body.model,
      choices,
      usage: this.usage(call, answer.completionTokens * n),
    };
  }

  async *stream(call: UpstreamCall): AsyncIterable<ChatCompletionChunk> {
    if (this.deployment.mockDelayMs > 0) await sleep(this.clock, this.deployment.mockDelayMs, call.signal);
    this.failIfConfigured();
    const body = call.body;
    const n = choiceCount(body.n);
    const answer = this.answer(body);
    const id = newCompletionId();
    const created = Math.floor(this.clock.now() / 1000);
    const chunk = (index: number, delta: ChatCompletionChunk['choices'][0]['delta'], finish: string | null): ChatCompletionChunk => ({
      id,
      object: 'chat.completion.chunk',
      created,
      model: body.model,
      choices: [{ index, finish_reason: finish, delta }],
    });
    for (let i = 0; i < n; i++) {
      if (answer.toolCalls) {
        yield chunk(i, { role: 'assistant', content: null }, null);
        for (let t = 0; t < answer.toolCalls.length; t++) {
          const c = answer.toolCalls[t] as { id: string; function: { name: string; arguments: string } };
          yield chunk(i, { tool_calls: [{ index: t, id: c.id, type: 'function', function: { name: c.function.name, arguments: '' } }] }, null);
          yield chunk(i, { tool_calls: [{ index: t, function: { arguments: c.function.arguments } }] }, null);
        }
      } else {
        yield chunk(i, { role: 'assistant', content: '' }, null);
        // Word-sized pieces, like a real model's token stream.
        for (const piece of answer.content!.match(/\S+\s*|\s+/g) ?? []) {
          if (call.signal.aborted) throw call.signal.reason;
          yield chunk(i, { content: piece }, null);
        }
      }
      yield chunk(i, {}, answer.finish);
    }
    // Usage in a last chunk with no choices, as OpenAI sends it; kept for tpm accounting only when not asked for.
    const last: ChatCompletionChunk = { id, object: 'chat.completion.chunk', created, model: body.model, choices: [], usage: this.usage(call, answer.completionTokens * n) };
    if (!wantsUsage(body)) last.__triageHidden = true;
    yield last;
  }

  async send(call: EndpointCall): Promise<JsonObject> {
    if (this.deployment.mockDelayMs > 0) await sleep(this.clock, this.deployment.mockDelayMs, call.signal);
    this.failIfConfigured();
    if (call.endpoint === 'embeddings') return this.embeddings(call);
    if (call.endpoint === 'completions') {
      const chunks: JsonObject[] = [];
      const body = Object.assign({}, call.body, { stream: false });
      for (const c of this.completionChunks(body, true)) chunks.push(c);
      const { choices, usage } = chunks[0] as { choices: unknown; usage: unknown };
      return { id: `cmpl-${newCompletionId().slice(9)}`, object: 'text_completion', created: Math.floor(this.clock.now() / 1000), model: call.body.model, choices, usage };
    }
    throw new UpstreamError('client_error', `mock deployments do not serve ${call.endpoint} natively`, 400);
  }

  async *sendStream(call: EndpointCall): AsyncIterable<JsonObject> {
    if (call.endpoint !== 'completions') throw new UpstreamError('client_error', `mock deployments do not stream ${call.endpoint}`, 400);
    if (this.deployment.mockDelayMs > 0) await sleep(this.clock, this.deployment.mockDelayMs, call.signal);
    this.failIfConfigured();
    for (const c of this.completionChunks(call.body, false)) {
      if (call.signal.aborted) throw call.signal.reason;
      yield c;
    }
  }

  /** Legacy text completions: one choice per prompt and `n`; whole (one item) or as stream chunks. */
  private *completionChunks(body: EndpointCall['body'], whole: boolean): Iterable<JsonObject> {
    const prompts = promptText(body.prompt);
    const n = choiceCount(body.n);
    const { text, truncated } = truncateToTokens(this.deployment.mockResponse ?? '', body.max_tokens);
    const finish = truncated ? 'length' : 'stop';
    const promptTokens = prompts.reduce((sum, p) => sum + Math.max(1, tokensOf(p)), 0);
    const completionTokens = Math.max(1, tokensOf(text)) * prompts.length * n;
    const usage = { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
    const id = `cmpl-${newCompletionId().slice(9)}`;
    const created = Math.floor(this.clock.now() / 1000);
    const count = prompts.length * n;
    if (whole) {
      const choices = Array.from({ length: count }, (_, index) => ({ text, index, logprobs: null, finish_reason: finish }));
      yield { choices, usage };
      return;
    }
    const chunk = (choices: unknown[]): JsonObject => ({ id, object: 'text_completion', created, model: body.model, choices });
    for (let index = 0; index < count; index++) {
      for (const piece of text.match(/\S+\s*|\s+/g) ?? []) yield chunk([{ text: piece, index, logprobs: null, finish_reason: null }]);
      yield chunk([{ text: '', index, logprobs: null, finish_reason: finish }]);
    }
    const last: JsonObject = Object.assign(chunk([]), { usage });
    if (!wantsUsage(body)) last.__triageHidden = true;
    yield last;
  }

  private embeddings(call: EndpointCall): JsonObject {
    const { body } = call;
    const dims = body.dimensions;
    if (dims !== undefined && (typeof dims !== 'number' || !Number.isInteger(dims) || dims < 1 || dims > 16_384)) {
      throw new UpstreamError('client_error', 'dimensions must be a positive integer', 400, undefined, { error: { message: 'dimensions must be an integer from 1 to 16384.', type: 'invalid_request_error', param: 'dimensions', code: null } });
    }
    const dimensions = (dims as number | undefined) ?? this.deployment.embeddingDimensions ?? DEFAULT_MOCK_DIMENSIONS;
    const base64 = body.encoding_format === 'base64';
    let tokens = 0;
    const data = embeddingItems(body.input).map((item, index) => {
      tokens += typeof item === 'string' ? Math.max(1, tokensOf(item)) : item.length;
      const vector = mockEmbedding(item, dimensions);
      return { object: 'embedding', index, embedding: base64 ? base64Embedding(vector) : vector };
    });
    return { object: 'list', data, model: body.model, usage: { prompt_tokens: tokens, total_tokens: tokens } };
  }
}
