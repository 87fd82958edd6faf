/**
 * A fake Anthropic Messages API on 127.0.0.1 that refuses what Anthropic refuses, with Anthropic's
 * error body `{type: "error", error: {type, message}}`: a path other than `POST /v1/messages` (404), a
 * wrong `x-api-key` (401), a missing or unknown `anthropic-version` (400), and a body that breaks the
 * Messages API (400): no model, no positive integer max_tokens, a `system` role inside messages, roles
 * that do not alternate or do not start with user, unknown content block types, tool_result outside a
 * user turn or answering no tool_use of the turn before, tools without input_schema, and any
 * top-level field the API does not have (an OpenAI field leaking through). What passes is answered by
 * scripted handlers: `message(...)` JSON or `stream(...)` named SSE events.
 */
import { FakeOpenAI, type Exchange, type Handler } from './fake-openai.js';
import { StrictFake, type Refusal } from './strict-fake.js';

export const ANTHROPIC_FIELDS = new Set([
  'model', 'max_tokens', 'messages', 'system', 'stop_sequences', 'stream', 'temperature', 'top_p', 'top_k',
  'tools', 'tool_choice', 'metadata', 'thinking', 'service_tier', 'container', 'mcp_servers',
]);
const BLOCK_TYPES = new Set(['text', 'image', 'tool_use', 'tool_result', 'document', 'thinking', 'redacted_thinking']);

export const anthropicError = (type: string, message: string) => ({ type: 'error', error: { type, message } });

const isObject = (v: unknown): v is Record<string, any> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Why the Messages API would refuse this body (a 400 message), or undefined. */
export function messagesBodyProblem(body: Record<string, any> | undefined): string | undefined {
  if (!isObject(body)) return 'body: expected a JSON object';
  for (const key of Object.keys(body)) if (!ANTHROPIC_FIELDS.has(key)) return `${key}: Extra inputs are not permitted`;
  if (typeof body.model !== 'string' || body.model === '') return 'model: Field required';
  if (!Number.isInteger(body.max_tokens) || body.max_tokens < 1) return 'max_tokens: Field required (a positive integer)';
  if (body.system !== undefined && typeof body.system !== 'string' && !(Array.isArray(body.system) && body.system.every((b: any) => isObject(b) && b.type === 'text'))) {
    return 'system: expected a string or a list of text blocks';
  }
  if (body.stop_sequences !== undefined && !(Array.isArray(body.stop_sequences) && body.stop_sequences.every((s: unknown) => typeof s === 'string'))) {
    return 'stop_sequences: expected a list of strings';
  }
  if (!Array.isArray(body.messages) || body.messages.length === 0) return 'messages: at least one message is required';
  let previousToolUses = new Set<string>();
  for (let i = 0; i < body.messages.length; i++) {
    const m = body.messages[i];
    if (!isObject(m)) return `messages.${i}: expected an object`;
    if (m.role !== 'user' && m.role !== 'assistant') return `messages.${i}.role: Input should be 'user' or 'assistant'`;
    if (i === 0 && m.role !== 'user') return 'messages: first message must use the "user" role';
    if (i > 0 && body.messages[i - 1].role === m.role) return 'messages: roles must alternate between "user" and "assistant"';
    const blocks = typeof m.content === 'string' ? [{ type: 'text', text: m.content }] : m.content;
    if (!Array.isArray(blocks) || blocks.length === 0) return `messages.${i}.content: expected a string or a non-empty list of blocks`;
    const toolUses = new Set<string>();
    for (const [j, b] of blocks.entries()) {
      const where = `messages.${i}.content.${j}`;
      if (!isObject(b) || !BLOCK_TYPES.has(b.type)) return `${where}.type: unknown content block type`;
      if (b.type === 'text' && typeof b.text !== 'string') return `${where}.text: Field required`;
      if (b.type === 'image' && !(isObject(b.source) && (b.source.type === 'base64' ? typeof b.source.data === 'string' && typeof b.source.media_type === 'string' : b.source.type === 'url' && typeof b.source.url === 'string'))) {
        return `${where}.source: expected a base64 or url image source`;
      }
      if (b.type === 'tool_use') {
        if (m.role !== 'assistant') return `${where}: tool_use blocks are only allowed in assistant messages`;
        if (typeof b.id !== 'string' || typeof b.name !== 'string' || !isObject(b.input)) return `${where}: tool_use needs id, name and an object input`;
        toolUses.add(b.id);
      }
      if (b.type === 'tool_result') {
        if (m.role !== 'user') return `${where}: tool_result blocks are only allowed in user messages`;
        if (!previousToolUses.has(b.tool_use_id)) return `${where}: tool_result ${b.tool_use_id} does not answer a tool_use of the previous message`;
      }
    }
    previousToolUses = toolUses;
  }
  if (body.tools !== undefined) {
    if (!Array.isArray(body.tools)) return 'tools: expected a list';
    for (const [i, t] of body.tools.entries()) if (!isObject(t) || typeof t.name !== 'string' || !isObject(t.input_schema)) return `tools.${i}: name and input_schema are required`;
  }
  if (body.tool_choice !== undefined && !(isObject(body.tool_choice) && ['auto', 'any', 'tool', 'none'].includes(body.tool_choice.type))) {
    return 'tool_choice: expected {type: auto | any | tool | none}';
  }
  return undefined;
}

export interface FakeAnthropicOptions {
  apiKey: string;
}

export class FakeAnthropic extends StrictFake {
  private constructor(
    fake: FakeOpenAI,
    private readonly options: FakeAnthropicOptions,
  ) {
    super(fake);
  }

  static async start(options: FakeAnthropicOptions): Promise<FakeAnthropic> {
    const fake = await FakeOpenAI.start();
    const a = new FakeAnthropic(fake, options);
    a.always(reply.message('Hello from Claude.'));
    return a;
  }

  /** `http://127.0.0.1:<port>`: an Anthropic api_base (the SDK's base URL, without /v1). */
  get apiBase(): string {
    return this.fake.url.replace(/\/v1$/, '');
  }

  protected refusal(x: Exchange): Refusal | undefined {
    const p = this.problem(x);
    return p === undefined ? undefined : { status: p.status, body: anthropicError(p.type, p.message), message: p.message };
  }

  private problem(x: Exchange): { status: number; type: string; message: string } | undefined {
    const { request } = x;
    if (request.method !== 'POST' || request.path !== '/v1/messages') return { status: 404, type: 'not_found_error', message: `Not found: ${request.method} ${request.path}` };
    if (request.headers['x-api-key'] !== this.options.apiKey) return { status: 401, type: 'authentication_error', message: 'invalid x-api-key' };
    if (request.headers['anthropic-version'] !== '2023-06-01') return { status: 400, type: 'invalid_request_error', message: 'anthropic-version: header is required' };
    if (!String(request.headers['content-type']).startsWith('application/json')) return { status: 400, type: 'invalid_request_error', message: 'content-type must be application/json' };
    const problem = messagesBodyProblem(request.body);
    return problem === undefined ? undefined : { status: 400, type: 'invalid_request_error', message: problem };
  }
}

let nextId = 1;

/** A Messages API answer. */
export function anthropicMessage(model: string, content: Array<Record<string, unknown>>, stopReason = 'end_turn', usage = { input_tokens: 12, output_tokens: 6 }) {
  return { id: `msg_fake${nextId++}`, type: 'message', role: 'assistant', model, content, stop_reason: stopReason, stop_sequence: null, usage };
}

/** The named events of a streamed answer with `pieces` of text (and an optional tool call). */
export function anthropicStreamEvents(model: string, pieces: string[], tool?: { id: string; name: string; json: string[] }) {
  const events: Array<Record<string, unknown>> = [
    { type: 'message_start', message: { id: `msg_fake${nextId++}`, type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 12, output_tokens: 1 } } },
    { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
    { type: 'ping' },
    ...pieces.map((text) => ({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } })),
    { type: 'content_block_stop', index: 0 },
  ];
  if (tool) {
    events.push({ type: 'content_block_start', index: 1, content_block: { type: 'tool_use', id: tool.id, name: tool.name, input: {} } });
    for (const partial_json of tool.json) events.push({ type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json } });
    events.push({ type: 'content_block_stop', index: 1 });
  }
  events.push({ type: 'message_delta', delta: { stop_reason: tool ? 'tool_use' : 'end_turn', stop_sequence: null }, usage: { output_tokens: 9 } });
  events.push({ type: 'message_stop' });
  return events;
}

const modelOf = (x: Exchange) => String(x.request.body?.model ?? 'unknown');

/** Ready-made Anthropic answers. */
export const reply = {
  message:
    (text: string, headers: Record<string, string> = {}): Handler =>
    (x) => {
      if (x.request.body?.stream === true) return reply.stream([text], undefined, headers)(x);
      x.json(200, anthropicMessage(modelOf(x), [{ type: 'text', text }]), headers);
    },

  json:
    (status: number, body: unknown, headers: Record<string, string> = {}): Handler =>
    (x) =>
      x.json(status, body, headers),

  /** A streamed answer: `event: <type>` + `data: <json>` per event, as Anthropic sends them. */
  stream:
    (pieces: string[], tool?: { id: string; name: string; json: string[] }, headers: Record<string, string> = {}): Handler =>
    async (x) => {
      x.startSse(headers);
      for (const e of anthropicStreamEvents(modelOf(x), pieces, tool)) if (!(await x.write(`event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`))) return;
      x.finish();
    },

  /** Raw SSE text fragments, then the end of the response. */
  raw:
    (fragments: string[]): Handler =>
    async (x) => {
      x.startSse();
      for (const f of fragments) if (!(await x.write(f))) return;
      x.finish();
    },
};

/** One SSE event as Anthropic writes it. */
export const sse = (event: Record<string, unknown> | string, name = typeof event === 'string' ? 'message' : String(event.type)) =>
  `event: ${name}\ndata: ${typeof event === 'string' ? event : JSON.stringify(event)}\n\n`;
