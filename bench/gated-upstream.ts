/**
 * An upstream the benchmark controls: each call starts (timestamped), then waits until the benchmark
 * ends it (`finishOne`) or answers at once when the gate is open. It measures the path from a slot
 * freeing to the next dispatch without any network or mock timer in between.
 */
import type { ChatCompletion } from '../src/core/openai-types.js';
import type { Upstream, UpstreamCall, UpstreamFactory } from '../src/core/upstream.js';
import { hrNow } from './hr-clock.js';

interface HeldCall {
  resolve: (c: ChatCompletion) => void;
  startedAt: number;
}

function completion(model: string): ChatCompletion {
  return {
    id: 'chatcmpl-bench',
    object: 'chat.completion',
    created: 0,
    model,
    choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: 'ok' } }],
    usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
  };
}

export class GatedUpstream {
  private readonly held: HeldCall[] = [];
  private open = false;
  /** Calls started so far. */
  started = 0;
  /** Called at the start of every call with its time (hrNow). */
  onStart: ((at: number) => void) | null = null;

  readonly factory: UpstreamFactory = () => {
    const upstream: Upstream = {
      complete: (call) => this.complete(call),
      stream: () => {
        throw new Error('the benchmark upstream does not stream');
      },
    };
    return upstream;
  };

  get inFlight(): number {
    return this.held.length;
  }

  private complete(call: UpstreamCall): Promise<ChatCompletion> {
    const startedAt = hrNow();
    this.started += 1;
    this.onStart?.(startedAt);
    if (this.open) return Promise.resolve(completion(call.body.model));
    return new Promise<ChatCompletion>((resolve, reject) => {
      const held: HeldCall = { resolve, startedAt };
      this.held.push(held);
      call.signal.addEventListener(
        'abort',
        () => {
          const i = this.held.indexOf(held);
          if (i >= 0) this.held.splice(i, 1);
          reject(call.signal.reason);
        },
        { once: true },
      );
    });
  }

  /** Ends the oldest call in flight; returns the moment it was ended (hrNow), or null if none. */
  finishOne(): number | null {
    const call = this.held.shift();
    if (call === undefined) return null;
    const at = hrNow();
    call.resolve(completion('bench'));
    return at;
  }

  /** Ends every call in flight and answers later calls at once. */
  openGate(): void {
    this.open = true;
    for (const call of this.held.splice(0)) call.resolve(completion('bench'));
  }

  closeGate(): void {
    this.open = false;
  }
}
