/**
 * What the Router keeps for a request while its actor lives: the actor, and how to answer its caller
 * once the actor ends. One small object per request, no closures: it is the abort listener itself
 * (`handleEvent`), and the actor's end reaches it through the requests' host actor (XState's own
 * done/error events to a parent), not through an observer per actor. At 100k waiting requests every
 * closure and Set counts (docs/performance.md).
 */
import type { Actor } from 'xstate';
import type { ChatCompletion, ChatCompletionChunk, JsonObject } from './core/openai-types.js';
import { TriageError } from './errors.js';
import type { ChunkQueue } from './machines/chunk-queue.js';
import type { requestMachine } from './machines/request-machine.js';
import type { CancelSignal } from './core/cancel-signal.js';

export type RequestActor = Actor<typeof requestMachine>;

/** What the queue did with a request, for the caller (HTTP headers, logs). */
export interface QueueMeta {
  requestId: string;
  model: string;
  priority: number;
  deployment: string;
  waitedMs: number;
  attempts: number;
}

export type ScheduledResult =
  /** A chat completion, or another endpoint's JSON answer (a Response, embeddings, a text completion). */
  | { kind: 'completion'; meta: QueueMeta; completion: ChatCompletion | JsonObject }
  /** Chat chunks, or another endpoint's stream events. */
  | { kind: 'stream'; meta: QueueMeta; stream: AsyncIterable<ChatCompletionChunk | JsonObject> };

export class LiveRequest {
  private settled = false;
  /** Set once the actor is created (the chunk queue's callbacks may need it before). */
  actor!: RequestActor;

  constructor(
    private readonly resolve: (result: ScheduledResult) => void,
    private readonly reject: (error: unknown) => void,
    private readonly chunks: ChunkQueue<ChatCompletionChunk | JsonObject> | undefined,
    private readonly signal: CancelSignal | undefined,
  ) {}

  /** The caller's cancel signal fired: cancel, wherever the request stands. */
  handleEvent(): void {
    this.actor.send({ type: 'cancel' });
  }

  meta(): QueueMeta {
    const c = this.actor.getSnapshot().context;
    return { requestId: c.req.id, model: c.req.model, priority: c.req.priority, deployment: c.grant?.deploymentId ?? '', waitedMs: c.grant?.waitedMs ?? 0, attempts: c.attempt + 1 };
  }

  /** A stream's first chunk is ready: the caller gets the stream now, so errors before it keep their status. */
  streamStarted(): void {
    if (this.settled || this.chunks === undefined) return;
    this.settled = true;
    this.resolve({ kind: 'stream', meta: this.meta(), stream: this.chunks });
  }

  /** The actor reached a final state (or failed with `crash`): answer the caller once. */
  ended(crash?: unknown): void {
    this.signal?.removeEventListener('abort', this);
    if (crash !== undefined) {
      this.chunks?.end(crash);
      return this.settle(undefined, new TriageError('internal_error', undefined, { cause: crash }));
    }
    const snap = this.actor.getSnapshot();
    if (snap.value === 'done') {
      this.chunks?.end();
      if (this.chunks) return this.settle({ kind: 'stream', meta: this.meta(), stream: this.chunks });
      return this.settle({ kind: 'completion', meta: this.meta(), completion: snap.output!.completion! });
    }
    const error = snap.context.error ?? new TriageError('internal_error');
    this.chunks?.end(error);
    this.settle(undefined, error);
  }

  private settle(result: ScheduledResult | undefined, error?: unknown): void {
    if (this.settled) return;
    this.settled = true;
    if (result !== undefined) this.resolve(result);
    else this.reject(error);
  }
}
