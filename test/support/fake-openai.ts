/**
 * A fake OpenAI-compatible upstream on 127.0.0.1 whose every answer a test scripts: JSON completions,
 * SSE streams released chunk by chunk through gates (so "slow" streams are deterministic, never
 * timed), 429 / 5xx / 4xx answers, a request that hangs until the caller gives up, and a connection
 * dropped mid-stream. It records each request (headers and parsed body) and counts connections and
 * requests the caller aborted, and lets a test wait on any of that by event with a deadline.
 */
import { EventEmitter } from 'node:events';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface RecordedRequest {
  /** 1-based arrival order. */
  seq: number;
  method: string;
  /** Path and query, e.g. `/v1/chat/completions`. */
  path: string;
  headers: IncomingHttpHeaders;
  rawBody: string;
  /** The JSON body, or undefined when it was not JSON. */
  body: Record<string, any> | undefined;
}

/** How one request ended, seen from the fake: answered in full, or cut by the caller (or by `drop`). */
export type ExchangeEnd = 'finished' | 'aborted' | 'dropped';

/** One request in progress, with the primitives handlers answer it with. */
export class Exchange {
  /** Resolves when the response was sent in full, the caller went away, or the fake dropped it. */
  readonly ended: Promise<ExchangeEnd>;
  private endedAs: ExchangeEnd | undefined;
  private droppedByFake = false;

  constructor(
    readonly request: RecordedRequest,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
  ) {
    this.ended = new Promise((resolve) => {
      res.on('close', () => {
        this.endedAs = res.writableFinished ? 'finished' : this.droppedByFake ? 'dropped' : 'aborted';
        resolve(this.endedAs);
      });
    });
  }

  /** Undefined while the exchange is alive. */
  get end(): ExchangeEnd | undefined {
    return this.endedAs;
  }

  get alive(): boolean {
    return this.endedAs === undefined && !this.res.destroyed;
  }

  json(status: number, body: unknown, headers: Record<string, string> = {}): void {
    if (!this.alive) return;
    const text = JSON.stringify(body);
    this.res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
    this.res.end(text);
  }

  /** Sends the status line and headers of an SSE response at once. */
  startSse(headers: Record<string, string> = {}): void {
    if (!this.alive || this.res.headersSent) return;
    this.res.socket?.setNoDelay(true);
    this.res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', ...headers });
    this.res.flushHeaders();
  }

  /** Writes raw bytes; resolves true once they were handed to the socket, false if the exchange is over. */
  write(text: string): Promise<boolean> {
    if (!this.alive) return Promise.resolve(false);
    return new Promise((resolve) => {
      const written = new Promise<boolean>((ok) => this.res.write(text, (error) => ok(error == null)));
      void Promise.race([written, this.ended.then(() => false)]).then(resolve);
    });
  }

  /** One SSE event: `data: <json>\n\n` (strings are sent as they are, e.g. `[DONE]`). */
  event(data: unknown): Promise<boolean> {
    return this.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
  }

  /** `data: [DONE]` and the end of the response. */
  async done(): Promise<void> {
    if (await this.event('[DONE]')) this.res.end();
  }

  /** Ends the response cleanly (whatever was written so far is all the caller gets). */
  finish(): void {
    if (this.alive) this.res.end();
  }

  /** Cuts the TCP connection (socket.destroy()): mid-stream, or before any answer. */
  drop(): void {
    this.droppedByFake = true;
    this.res.socket?.destroy();
  }

  /** Never answers; resolves when the caller gives up (or the fake closes). */
  async hang(): Promise<ExchangeEnd> {
    return this.ended;
  }
}

export type Handler = (x: Exchange) => void | Promise<void>;

let nextId = 1;

export function completionBody(model: string, content: string) {
  return {
    id: `chatcmpl-fake${nextId++}`,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content } }],
    usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 },
  };
}

/** Content chunks as an OpenAI stream sends them: a role chunk, one chunk per piece, a finish chunk. */
export function contentChunks(model: string, pieces: string[]) {
  const id = `chatcmpl-fake${nextId++}`;
  const created = Math.floor(Date.now() / 1000);
  const chunk = (delta: Record<string, unknown>, finish: string | null) => ({
    id,
    object: 'chat.completion.chunk',
    created,
    model,
    choices: [{ index: 0, delta, finish_reason: finish }],
  });
  // The first chunk carries the role with the first piece; the last one only the finish reason.
  return [chunk({ role: 'assistant', content: pieces[0] ?? '' }, null), ...pieces.slice(1).map((p) => chunk({ content: p }, null)), chunk({}, 'stop')];
}

/** The usage-only chunk OpenAI appends when `stream_options.include_usage` is set. */
export function usageChunk(model: string, usage = { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 }) {
  return { id: `chatcmpl-fake${nextId++}`, object: 'chat.completion.chunk', created: Math.floor(Date.now() / 1000), model, choices: [], usage };
}

export function openAIError(message: string, type = 'invalid_request_error', param: string | null = null, code: string | null = null) {
  return { error: { message, type, param, code } };
}

const modelOf = (x: Exchange): string => String(x.request.body?.model ?? 'unknown');
const wantsUsage = (x: Exchange): boolean => x.request.body?.stream_options?.include_usage === true;

/** Ready-made answers. */
export const respond = {
  completion:
    (content = 'Hello from the fake upstream.'): Handler =>
    (x) =>
      x.json(200, completionBody(modelOf(x), content)),

  /** A whole stream at once (usage chunk when asked for, then [DONE]). */
  stream:
    (pieces: string[]): Handler =>
    async (x) => {
      x.startSse();
      for (const c of contentChunks(modelOf(x), pieces)) await x.event(c);
      if (wantsUsage(x)) await x.event(usageChunk(modelOf(x)));
      await x.done();
    },

  /** Raw SSE bytes, one write per fragment, each on its own turn of the event loop. */
  raw:
    (fragments: string[], options: { end?: 'finish' | 'hold' } = {}): Handler =>
    async (x) => {
      x.startSse();
      for (const f of fragments) {
        if (!(await x.write(f))) return;
        await new Promise((r) => setImmediate(r));
      }
      if (options.end === 'hold') await x.ended;
      else x.finish();
    },

  error:
    (status: number, body: unknown = openAIError(`fake upstream error ${status}`, status >= 500 ? 'server_error' : 'invalid_request_error'), headers: Record<string, string> = {}): Handler =>
    (x) =>
      x.json(status, body, headers),

  /** 429 with the rate-limit hints OpenAI sends (`retryAfter` → Retry-After, `retryAfterMs` → retry-after-ms). */
  rateLimited:
    (hints: { retryAfter?: string; retryAfterMs?: string } = {}): Handler =>
    (x) => {
      const headers: Record<string, string> = {};
      if (hints.retryAfter !== undefined) headers['retry-after'] = hints.retryAfter;
      if (hints.retryAfterMs !== undefined) headers['retry-after-ms'] = hints.retryAfterMs;
      x.json(429, openAIError('Rate limit reached for requests', 'requests', null, 'rate_limit_exceeded'), headers);
    },

  hang: (): Handler => async (x) => {
    await x.hang();
  },

  /** Cuts the connection without answering. */
  drop: (): Handler => (x) => x.drop(),
};

/**
 * A stream whose chunks go out only when the test releases them: chunk i is written once
 * `release` was called more than i times; one more release sends the usage chunk (when asked for)
 * and `[DONE]`. `sent` counts the chunks written so far.
 */
export class PacedStream {
  sent = 0;
  exchange: Exchange | undefined;
  private permits = 0;
  private readonly changes = new EventEmitter();

  constructor(readonly pieces: string[]) {
    this.changes.setMaxListeners(0);
  }

  release(n = 1): void {
    this.permits += n;
    this.changes.emit('change');
  }

  releaseAll(): void {
    this.release(Number.POSITIVE_INFINITY);
  }

  /** Cuts the connection now (the fake's socket.destroy()). */
  drop(): void {
    if (this.exchange === undefined) throw new Error('the paced stream has not started');
    this.exchange.drop();
  }

  /** Resolves once `n` chunks were written (event driven, with a deadline). */
  sentAtLeast(n: number, timeoutMs = 5_000): Promise<void> {
    return waitOn(this.changes, () => this.sent >= n, `${n} paced chunks to be sent`, timeoutMs);
  }

  private async permit(index: number, x: Exchange): Promise<boolean> {
    while (this.permits <= index) {
      if (!x.alive) return false;
      const changed = new Promise<void>((resolve) => this.changes.once('change', resolve));
      await Promise.race([changed, x.ended]);
    }
    return x.alive;
  }

  readonly handler: Handler = async (x) => {
    this.exchange = x;
    x.startSse();
    this.changes.emit('change');
    const chunks = contentChunks(modelOf(x), this.pieces);
    for (let i = 0; i < chunks.length; i++) {
      if (!(await this.permit(i, x))) return;
      if (!(await x.event(chunks[i]))) return;
      this.sent += 1;
      this.changes.emit('change');
    }
    if (!(await this.permit(chunks.length, x))) return;
    if (wantsUsage(x)) await x.event(usageChunk(modelOf(x)));
    await x.done();
  };
}

/** Resolves when `check()` holds, re-checking on every `change` event of `emitter`; rejects at the deadline. */
function waitOn(emitter: EventEmitter, check: () => boolean, what: string, timeoutMs: number): Promise<void> {
  if (check()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onChange = () => {
      if (!check()) return;
      cleanup();
      resolve();
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      emitter.off('change', onChange);
    };
    emitter.on('change', onChange);
  });
}

export class FakeOpenAI {
  /** Every request received, in arrival order. */
  readonly requests: RecordedRequest[] = [];
  readonly exchanges: Exchange[] = [];
  /** Connections open right now, and ever accepted. */
  openConnections = 0;
  connections = 0;
  /** Requests whose caller went away before the answer was complete. */
  abortedRequests = 0;
  finishedRequests = 0;
  /** Errors thrown by handlers (a test bug); the request is dropped. */
  readonly handlerErrors: unknown[] = [];
  private readonly queue: Handler[] = [];
  private fallback: Handler = respond.completion();
  private readonly changes = new EventEmitter();
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    /** `http://127.0.0.1:<port>/v1`: an OpenAI api_base. */
    readonly url: string,
  ) {
    this.changes.setMaxListeners(0);
  }

  static async start(): Promise<FakeOpenAI> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const { port } = server.address() as AddressInfo;
    const fake = new FakeOpenAI(server, `http://127.0.0.1:${port}/v1`);
    server.on('connection', (socket) => fake.onConnection(socket));
    server.on('request', (req, res) => fake.onRequest(req, res));
    return fake;
  }

  /** Answers the next requests, one handler each, in order; after them `always`'s handler answers. */
  next(...handlers: Handler[]): this {
    this.queue.push(...handlers);
    return this;
  }

  /** The answer for every request once the `next` queue is empty (default: a JSON completion). */
  always(handler: Handler): this {
    this.fallback = handler;
    return this;
  }

  /** Resolves when `check()` holds, re-checked on every request, connection and abort; rejects at the deadline. */
  until(check: (fake: this) => boolean, what: string, timeoutMs = 5_000): Promise<void> {
    return waitOn(this.changes, () => check(this), what, timeoutMs);
  }

  private changed(): void {
    this.changes.emit('change');
  }

  private onConnection(socket: Socket): void {
    this.sockets.add(socket);
    this.openConnections += 1;
    this.connections += 1;
    socket.on('close', () => {
      this.sockets.delete(socket);
      this.openConnections -= 1;
      this.changed();
    });
    this.changed();
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const parts: Buffer[] = [];
    req.on('data', (b: Buffer) => parts.push(b));
    req.on('end', () => {
      const rawBody = Buffer.concat(parts).toString('utf8');
      let body: Record<string, any> | undefined;
      try {
        const parsed: unknown = JSON.parse(rawBody);
        body = parsed !== null && typeof parsed === 'object' ? (parsed as Record<string, any>) : undefined;
      } catch {
        body = undefined;
      }
      const request: RecordedRequest = { seq: this.requests.length + 1, method: req.method ?? '', path: req.url ?? '', headers: req.headers, rawBody, body };
      const exchange = new Exchange(request, req, res);
      this.requests.push(request);
      this.exchanges.push(exchange);
      void exchange.ended.then((end) => {
        if (end === 'finished') this.finishedRequests += 1;
        if (end === 'aborted') this.abortedRequests += 1;
        this.changed();
      });
      this.changed();
      const handler = this.queue.shift() ?? this.fallback;
      Promise.resolve()
        .then(() => handler(exchange))
        .catch((e: unknown) => {
          this.handlerErrors.push(e);
          exchange.drop();
        });
    });
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    for (const s of this.sockets) s.destroy();
    await closed;
  }
}

/** A port on 127.0.0.1 that nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** The fields each OpenAI endpoint accepts (the real API refuses any other with a 400). */
const OPENAI_FIELDS: Record<string, { required: string[]; known: string[] }> = {
  '/v1/chat/completions': {
    required: ['model', 'messages'],
    known: ['model', 'messages', 'stream', 'stream_options', 'max_tokens', 'max_completion_tokens', 'temperature', 'top_p', 'n', 'tools', 'tool_choice', 'response_format', 'user', 'metadata', 'store', 'seed', 'stop', 'presence_penalty', 'frequency_penalty', 'logprobs', 'top_logprobs', 'logit_bias', 'parallel_tool_calls', 'reasoning_effort', 'service_tier', 'modalities', 'audio', 'prediction', 'verbosity', 'safety_identifier', 'prompt_cache_key'],
  },
  '/v1/responses': {
    required: ['model', 'input'],
    known: ['model', 'input', 'instructions', 'tools', 'tool_choice', 'text', 'max_output_tokens', 'temperature', 'top_p', 'stream', 'stream_options', 'metadata', 'store', 'previous_response_id', 'include', 'parallel_tool_calls', 'reasoning', 'truncation', 'user', 'service_tier', 'background', 'conversation', 'prompt', 'max_tool_calls', 'safety_identifier', 'prompt_cache_key', 'top_logprobs'],
  },
  '/v1/embeddings': { required: ['model', 'input'], known: ['model', 'input', 'dimensions', 'encoding_format', 'user'] },
  '/v1/completions': {
    required: ['model', 'prompt'],
    known: ['model', 'prompt', 'max_tokens', 'temperature', 'top_p', 'n', 'stream', 'stream_options', 'logprobs', 'echo', 'stop', 'presence_penalty', 'frequency_penalty', 'best_of', 'logit_bias', 'seed', 'suffix', 'user'],
  },
};

/**
 * What the real OpenAI API would refuse in this request, as [status, body], or undefined when it
 * would accept it: a wrong method or path (404), no bearer key (401), a body that is not JSON, a
 * missing required field or an unrecognized one (400).
 */
export function openAIRefusal(r: RecordedRequest): [number, unknown] | undefined {
  const path = r.path.split('?')[0]!;
  const spec = OPENAI_FIELDS[path];
  if (r.method !== 'POST' || spec === undefined) return [404, openAIError(`Invalid URL (${r.method} ${path})`, 'invalid_request_error')];
  if (!/^Bearer \S+/.test(String(r.headers.authorization ?? ''))) return [401, openAIError('You didn\'t provide an API key.', 'invalid_request_error')];
  if (!String(r.headers['content-type'] ?? '').startsWith('application/json') || r.body === undefined) return [400, openAIError('We could not parse the JSON body of your request.')];
  for (const field of spec.required) if (r.body[field] === undefined) return [400, openAIError(`Missing required parameter: '${field}'.`, 'invalid_request_error', field, 'missing_required_parameter')];
  for (const field of Object.keys(r.body)) {
    if (!spec.known.includes(field)) return [400, openAIError(`Unrecognized request argument supplied: ${field}`, 'invalid_request_error', field, 'unknown_parameter')];
  }
  return undefined;
}

/** The usage the strict fake reports, per endpoint (tpm is reconciled with it). */
export const FAKE_USAGE = {
  responses: { input_tokens: 7, input_tokens_details: { cached_tokens: 0 }, output_tokens: 4, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 11 },
  embeddings: { prompt_tokens: 5, total_tokens: 5 },
  completions: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
};

/** A Response as OpenAI returns it, with one message item of `text`. */
export function responseBody(model: string, text: string, status = 'completed') {
  return {
    id: `resp_fake${nextId++}`,
    object: 'response',
    created_at: Math.floor(Date.now() / 1000),
    status,
    error: null,
    incomplete_details: null,
    model,
    output: status === 'completed' ? [{ id: 'msg_fake', type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text, annotations: [] }] }] : [],
    parallel_tool_calls: true,
    tool_choice: 'auto',
    tools: [],
    usage: status === 'completed' ? FAKE_USAGE.responses : null,
  };
}

/** The Responses API's stream for `pieces`, as OpenAI sends it (named events; no [DONE]). */
export function responseEvents(model: string, pieces: string[]) {
  let seq = 0;
  const ev = (type: string, fields: Record<string, unknown>) => ({ type, sequence_number: seq++, ...fields });
  const text = pieces.join('');
  const done = responseBody(model, text);
  const item = { id: 'msg_fake', type: 'message', status: 'in_progress', role: 'assistant', content: [] };
  return [
    ev('response.created', { response: responseBody(model, '', 'in_progress') }),
    ev('response.in_progress', { response: responseBody(model, '', 'in_progress') }),
    ev('response.output_item.added', { output_index: 0, item }),
    ev('response.content_part.added', { item_id: 'msg_fake', output_index: 0, content_index: 0, part: { type: 'output_text', text: '', annotations: [] } }),
    ...pieces.map((delta) => ev('response.output_text.delta', { item_id: 'msg_fake', output_index: 0, content_index: 0, delta, logprobs: [] })),
    ev('response.output_text.done', { item_id: 'msg_fake', output_index: 0, content_index: 0, text, logprobs: [] }),
    ev('response.content_part.done', { item_id: 'msg_fake', output_index: 0, content_index: 0, part: { type: 'output_text', text, annotations: [] } }),
    ev('response.output_item.done', { output_index: 0, item: done.output[0] }),
    ev('response.completed', { response: done }),
  ];
}

/**
 * A strict fake of OpenAI's four endpoints: it refuses what the real API refuses (openAIRefusal), and
 * answers chat completions, Responses (named SSE events, ending after response.completed), embeddings
 * (`dimensions`, default 3; base64 when asked) and legacy completions, whole or streamed.
 */
export function strictOpenAI(text = 'Hello from the fake upstream.'): Handler {
  const pieces = text.match(/\S+\s*/g) ?? [text];
  return async (x) => {
    const refusal = openAIRefusal(x.request);
    if (refusal) return x.json(refusal[0], refusal[1]);
    const body = x.request.body!;
    const model = String(body.model);
    const path = x.request.path.split('?')[0];
    if (path === '/v1/chat/completions') return (body.stream ? respond.stream(pieces) : respond.completion(text))(x);
    if (path === '/v1/responses') {
      if (!body.stream) return x.json(200, responseBody(model, text));
      x.startSse();
      for (const e of responseEvents(model, pieces)) await x.write(`event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
      return x.finish();
    }
    if (path === '/v1/embeddings') {
      const items = typeof body.input === 'string' || typeof body.input?.[0] === 'number' ? [body.input] : body.input;
      const dims = typeof body.dimensions === 'number' ? body.dimensions : 3;
      const data = (items as unknown[]).map((_, index) => {
        const vector = Array.from({ length: dims }, (_v, i) => (index + 1) / (i + 2));
        const embedding = body.encoding_format === 'base64' ? Buffer.from(new Float32Array(vector).buffer).toString('base64') : vector;
        return { object: 'embedding', index, embedding };
      });
      return x.json(200, { object: 'list', data, model, usage: FAKE_USAGE.embeddings });
    }
    const completion = (t: string, finish: string | null) => ({ id: `cmpl-fake${nextId++}`, object: 'text_completion', created: Math.floor(Date.now() / 1000), model, choices: [{ text: t, index: 0, logprobs: null, finish_reason: finish }] });
    if (!body.stream) return x.json(200, { ...completion(text, 'stop'), usage: FAKE_USAGE.completions });
    x.startSse();
    for (const p of pieces) await x.event(completion(p, null));
    await x.event(completion('', 'stop'));
    if (body.stream_options?.include_usage === true) await x.event({ ...completion('', null), choices: [], usage: FAKE_USAGE.completions });
    await x.done();
  };
}
