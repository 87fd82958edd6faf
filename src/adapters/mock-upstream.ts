/**
 * LiteLLM's `mock_response` deployments: answer with fixed content after `mock_delay`, with no
 * network. `"litellm.RateLimitError"` and `"litellm.InternalServerError"` make the deployment fail as
 * a real one would (429 / 500), so cooldown and retries can be exercised offline.
 */
import type { Clock } from '../machines/clock.js';
import { newCompletionId } from '../machines/request-id.js';
import { estimatePromptTokens } from '../machines/token-estimate.js';
import type { DeploymentConfig } from './config-types.js';
import type { ChatCompletion, ChatCompletionChunk, Usage } from './openai-types.js';
import { UpstreamError, type Upstream, type UpstreamCall } from './upstream.js';

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

export class MockUpstream implements Upstream {
  constructor(
    private readonly deployment: DeploymentConfig,
    private readonly clock: Clock,
  ) {}

  private failIfConfigured(): void {
    const r = this.deployment.mockResponse;
    if (r === 'litellm.RateLimitError') throw new UpstreamError('rate_limited', 'mock deployment answered 429 (litellm.RateLimitError)', 429);
    if (r === 'litellm.InternalServerError') throw new UpstreamError('server_error', 'mock deployment answered 500 (litellm.InternalServerError)', 500);
  }

  private usage(call: UpstreamCall, content: string): Usage {
    const prompt = estimatePromptTokens(call.body.messages);
    const completion = Math.max(1, Math.ceil(content.length / 4));
    return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
  }

  async complete(call: UpstreamCall): Promise<ChatCompletion> {
    // No delay, no wait: the signal is not even read (it is made on first read, see UpstreamAttempt).
    if (this.deployment.mockDelayMs > 0) await sleep(this.clock, this.deployment.mockDelayMs, call.signal);
    this.failIfConfigured();
    const content = this.deployment.mockResponse ?? '';
    return {
      id: newCompletionId(),
      object: 'chat.completion',
      created: Math.floor(this.clock.now() / 1000),
      model: call.body.model,
      choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content } }],
      usage: this.usage(call, content),
    };
  }

  async *stream(call: UpstreamCall): AsyncIterable<ChatCompletionChunk> {
    if (this.deployment.mockDelayMs > 0) await sleep(this.clock, this.deployment.mockDelayMs, call.signal);
    this.failIfConfigured();
    const content = this.deployment.mockResponse ?? '';
    const id = newCompletionId();
    const created = Math.floor(this.clock.now() / 1000);
    const chunk = (delta: ChatCompletionChunk['choices'][0]['delta'], finish: string | null): ChatCompletionChunk => ({
      id,
      object: 'chat.completion.chunk',
      created,
      model: call.body.model,
      choices: [{ index: 0, finish_reason: finish, delta }],
    });
    yield chunk({ role: 'assistant', content: '' }, null);
    // Word-sized pieces, like a real model's token stream.
    for (const piece of content.match(/\S+\s*|\s+/g) ?? []) {
      if (call.signal.aborted) throw call.signal.reason;
      yield chunk({ content: piece }, null);
    }
    yield Object.assign(chunk({}, 'stop'), { usage: this.usage(call, content) });
  }
}
