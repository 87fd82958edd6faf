/**
 * The queued endpoints: chat completions, the Responses API, embeddings and legacy completions.
 * `/queue/chat/completions` is LiteLLM's name and is kept for compatibility; the bare paths and the
 * `/v1/...` aliases go through the same scheduler, so the limits hold whichever path a client uses.
 * One handler for all of them; only the stream's wire format differs (the Responses API names each
 * event and has no `[DONE]`).
 */
import type { ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ENDPOINT_PATHS, type Endpoint } from '../core/endpoints.js';
import type { ChatCompletionChunk, JsonObject } from '../core/openai-types.js';
import { TriageError } from '../errors.js';
import { headerNumber, PRIORITY_HEADER, requestedPriority, TIMEOUT_HEADER } from '../queue-options.js';
import type { CancelListener, CancelSignal, CompletionParams, QueueMeta, Router } from '../router.js';
import { ArrivalBatch } from './arrival-batch.js';
import type { KeyRateCheck } from '../core/key-rate.js';
import { checkModelAllowed, clampPriority, type Caller } from './auth.js';
import { errorBody, sendError, toHttpError } from './http-errors.js';
import { unknownQueryParam, checkQueryParams } from './query-params.js';
import { checkModelParam } from '../request-params.js';

export const CHAT_PATHS = ENDPOINT_PATHS.chat as string[];

/** `?model=` overrides the body's model; `api-version` is what Azure OpenAI clients add (ignored). */
const QUERY_PARAMS: ReadonlySet<string> = new Set(['model', 'api-version']);

/** Response headers that say what the queue did; one prefix for all. */
export const HEADER = {
  requestId: 'x-triage-request-id',
  priority: 'x-triage-priority',
  priorityClamped: 'x-triage-priority-clamped',
  queueWaitMs: 'x-triage-queue-wait-ms',
  deployment: 'x-triage-deployment',
  attempts: 'x-triage-attempts',
} as const;

function queueHeaders(meta: QueueMeta, clamped: boolean): Record<string, string> {
  // Literal keys, not computed ones (which make V8 build the object in its runtime); the type makes
  // a key that is not one of HEADER's names a compile error.
  const headers: Partial<Record<(typeof HEADER)[keyof typeof HEADER], string>> = {
    'x-triage-request-id': meta.requestId,
    'x-triage-priority': String(meta.priority),
    'x-triage-queue-wait-ms': String(Math.round(meta.waitedMs)),
    'x-triage-deployment': meta.deployment,
    'x-triage-attempts': String(meta.attempts),
  };
  if (clamped) headers[HEADER.priorityClamped] = 'true';
  return headers;
}

/**
 * Fires when the caller goes away before its response is finished. The router needs only this much of
 * an AbortSignal; creating an AbortController per request was a seventh of the HTTP layer's time on
 * Node 20.
 */
class CallerGone implements CancelSignal {
  aborted = false;
  private listener: CancelListener | null = null;

  constructor(private readonly res: ServerResponse) {
    // on, not once: closed() acts once by itself, and once() wraps each listener in a closure of its own.
    res.on('close', this.closed);
  }

  private readonly closed = (): void => {
    if (this.res.writableFinished || this.aborted) return;
    this.aborted = true;
    const listener = this.listener;
    this.listener = null;
    listener?.handleEvent();
  };

  addEventListener(_type: 'abort', listener: CancelListener): void {
    this.listener = listener;
  }

  removeEventListener(_type: 'abort', listener: CancelListener): void {
    if (this.listener === listener) this.listener = null;
  }
}

/**
 * Writes one event of a stream, respecting backpressure: a slow reader slows its own stream, not the
 * gateway. A reader that stops reading altogether gets `stallMs` to start again; then its connection is
 * closed (the stream loop sees it destroyed and stops, which cancels the request if it is still running).
 */
function write(reply: FastifyReply, text: string, stallMs: number): Promise<void> {
  const res = reply.raw;
  if (res.write(text)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(stall);
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    const stall = setTimeout(() => {
      reply.log.warn({ stallMs }, 'closing a stream whose reader stopped reading');
      res.destroy();
      done();
    }, stallMs);
    res.on('drain', done);
    res.on('close', done);
  });
}

/** One Responses API event as OpenAI writes it: named by its type. */
function namedEvent(event: JsonObject): string {
  return `event: ${String(event.type)}\ndata: ${JSON.stringify(event)}\n\n`;
}

async function streamSse(reply: FastifyReply, stream: AsyncIterable<ChatCompletionChunk | JsonObject>, headers: Record<string, string>, stallMs: number, endpoint: Endpoint): Promise<void> {
  reply.hijack();
  reply.raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', ...headers });
  const named = endpoint === 'responses';
  try {
    for await (const chunk of stream) {
      if (reply.raw.destroyed) break;
      await write(reply, named ? namedEvent(chunk) : `data: ${JSON.stringify(chunk)}\n\n`, stallMs);
    }
    // The Responses API ends with its response.completed event; chat and completions with [DONE].
    if (!reply.raw.destroyed && !named) await write(reply, 'data: [DONE]\n\n', stallMs);
  } catch (e) {
    // Headers are sent: the failure travels as an error event, as OpenAI's own streams do.
    if (!reply.raw.destroyed) {
      const body = errorBody(toHttpError(e), reply.server.redactSecrets);
      await write(reply, named ? namedEvent({ type: 'error', code: body.error.code, message: body.error.message, param: body.error.param }) : `data: ${JSON.stringify(body)}\n\n`, stallMs);
    }
  } finally {
    reply.raw.end();
  }
}

export function registerChatRoutes(app: FastifyInstance, router: Router, keyRate: KeyRateCheck<Caller>, options: { streamStallMs: number }): void {
  const arrivals = new ArrivalBatch(router);
  const handlerFor = (endpoint: Endpoint) => async (request: FastifyRequest, reply: FastifyReply) => {
    const caller = (request as FastifyRequest & { caller: Caller }).caller;
    const body = request.body;
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      return sendError(reply, new TriageError('invalid_request', 'The request body must be a JSON object.'));
    }
    // Object.assign, not a spread: fields are added below (docs/performance.md, "Object spread on the hot path").
    const params = Object.assign({}, body) as Record<string, unknown>;
    const query = request.query as Record<string, unknown> | undefined;
    const queryModel = query?.model;
    if (typeof queryModel === 'string' && queryModel !== '') params.model = queryModel;
    try {
      if (unknownQueryParam(query, QUERY_PARAMS) !== undefined) checkQueryParams(query, QUERY_PARAMS);
      checkModelParam(params.model);
      checkModelAllowed(caller, params.model);
      // A key bound to a worse priority also gets that as its default.
      // The body's priority, else metadata.priority, else the x-triage-priority header (queue-options.ts).
      const asked = requestedPriority(params, request.headers[PRIORITY_HEADER]);
      const requested = asked === undefined || asked === null
        ? Math.max(router.config.router.defaultPriority, caller.maxPriority ?? -Infinity)
        : router.resolvePriority(asked);
      if (params.timeout === undefined) {
        const timeout = headerNumber(request.headers[TIMEOUT_HEADER]);
        if (timeout !== undefined) params.timeout = timeout;
      }
      const { priority, clamped } = clampPriority(caller, requested);
      // Counted last, so a refusal above does not use up the key's rpm; a promise only with Redis.
      const counted = keyRate(caller, router.clock.now());
      if (counted !== undefined) await counted;
      params.priority = priority;
      params.tenant = caller.name;
      params.signal = new CallerGone(reply.raw);
      const result = await arrivals.schedule(params as CompletionParams & { priority: number }, endpoint);
      request.queueMeta = result.meta;
      const headers = queueHeaders(result.meta, clamped);
      if (result.kind === 'stream') return streamSse(reply, result.stream, headers, options.streamStallMs, endpoint);
      return reply.headers(headers).send(result.completion);
    } catch (e) {
      return sendError(reply, e);
    }
  };
  for (const endpoint of Object.keys(ENDPOINT_PATHS) as Endpoint[]) {
    const handler = handlerFor(endpoint);
    for (const path of ENDPOINT_PATHS[endpoint]) app.post(path, handler);
  }
}
