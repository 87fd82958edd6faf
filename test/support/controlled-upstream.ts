/** An in-process upstream the test drives: each call ends when the test releases it. */
import type { ChatCompletion, ChatCompletionChunk } from '../../src/core/openai-types.js';
import type { Upstream, UpstreamCall } from '../../src/core/upstream.js';

/** An upstream whose calls (and streams) end only when the test says so. */
export class ControlledUpstream implements Upstream {
  readonly calls: { call: UpstreamCall; release: () => void; settled: boolean }[] = [];

  private wait(call: UpstreamCall): Promise<void> {
    return new Promise((resolve, reject) => {
      const entry = { call, settled: false, release: () => ((entry.settled = true), resolve()) };
      call.signal.addEventListener('abort', () => ((entry.settled = true), reject(call.signal.reason)), { once: true });
      this.calls.push(entry);
    });
  }

  async complete(call: UpstreamCall): Promise<ChatCompletion> {
    await this.wait(call);
    return {
      id: 'chatcmpl-controlled',
      object: 'chat.completion',
      created: 0,
      model: call.body.model,
      choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: 'done' } }],
    };
  }

  /** One chunk at once, the rest only after release(). */
  async *stream(call: UpstreamCall): AsyncIterable<ChatCompletionChunk> {
    const chunk = (content: string, finish: string | null = null): ChatCompletionChunk => ({
      id: 'chatcmpl-controlled',
      object: 'chat.completion.chunk',
      created: 0,
      model: call.body.model,
      choices: [{ index: 0, finish_reason: finish, delta: { content } }],
    });
    yield chunk('first ');
    await this.wait(call);
    yield chunk('second', 'stop');
  }
}
