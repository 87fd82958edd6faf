/**
 * OpenAI chat completions <-> Anthropic's Messages API, as pure functions: the request (system prompts,
 * multi-part content, images, tools and tool results, max_tokens, stop sequences), the answer (text,
 * tool calls, stop reason, usage) and the stream (Anthropic's named events -> OpenAI
 * chat.completion.chunk objects; the HTTP layer writes the final `[DONE]`). Wire format as documented
 * by Anthropic (API version 2023-06-01).
 */
import type { ChatCompletion, ChatCompletionBody, ChatCompletionChunk, ChatMessage, Usage } from '../core/openai-types.js';

/** A request that cannot be expressed in Anthropic's format: the caller's fault (400), naming the field. */
export class TranslationError extends Error {
  constructor(
    message: string,
    readonly param: string | null,
  ) {
    super(message);
    this.name = 'TranslationError';
  }
}

/** A stream or answer from Anthropic that does not have the documented shape (the deployment's fault: 502). */
export class MalformedAnswerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MalformedAnswerError';
  }
}

type Block = Record<string, unknown>;
interface AnthropicMessage {
  role: 'user' | 'assistant';
  content: Block[];
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** `data:image/png;base64,AAAA` -> Anthropic's base64 image source; any other URL -> a url source. */
export function imageSource(url: string): Block {
  const m = /^data:([^;,]+);base64,(.*)$/s.exec(url);
  return m ? { type: 'base64', media_type: m[1], data: m[2] } : { type: 'url', url };
}

/** OpenAI content (a string or parts) -> Anthropic content blocks. */
function contentBlocks(content: unknown, param: string): Block[] {
  if (content === undefined || content === null) return [];
  if (typeof content === 'string') return content === '' ? [] : [{ type: 'text', text: content }];
  if (!Array.isArray(content)) throw new TranslationError(`${param} must be a string or a list of content parts`, param);
  return content.map((part, i): Block => {
    const where = `${param}[${i}]`;
    if (!isObject(part)) throw new TranslationError(`${where} must be a content part object`, where);
    if (part.type === 'text' && typeof part.text === 'string') return { type: 'text', text: part.text };
    if (part.type === 'image_url') {
      const image = part.image_url;
      const url = typeof image === 'string' ? image : isObject(image) ? image.url : undefined;
      if (typeof url !== 'string') throw new TranslationError(`${where}.image_url.url must be a string`, where);
      return { type: 'image', source: imageSource(url) };
    }
    throw new TranslationError(`${where}: content part type ${JSON.stringify(part.type)} is not supported by this Anthropic deployment`, where);
  });
}

/** The text of system/developer content (a string or text parts). */
function systemText(content: unknown, param: string): string {
  return contentBlocks(content, param)
    .map((b) => {
      if (b.type !== 'text') throw new TranslationError(`${param}: a system message can only hold text`, param);
      return b.text as string;
    })
    .join('\n');
}

function toolUse(call: unknown, param: string): Block {
  if (!isObject(call) || !isObject(call.function) || typeof call.function.name !== 'string' || typeof call.id !== 'string') {
    throw new TranslationError(`${param} must be {id, type: "function", function: {name, arguments}}`, param);
  }
  const args = call.function.arguments;
  let input: unknown = {};
  if (typeof args === 'string' && args.trim() !== '') {
    try {
      input = JSON.parse(args);
    } catch {
      throw new TranslationError(`${param}.function.arguments is not valid JSON`, param);
    }
  }
  if (!isObject(input)) throw new TranslationError(`${param}.function.arguments must be a JSON object`, param);
  return { type: 'tool_use', id: call.id, name: call.function.name, input };
}

/** Appends blocks to the conversation, merging with the previous message of the same role (Anthropic's roles alternate). */
function append(out: AnthropicMessage[], role: 'user' | 'assistant', blocks: Block[]): void {
  if (blocks.length === 0) return;
  const last = out[out.length - 1];
  if (last !== undefined && last.role === role) last.content.push(...blocks);
  else out.push({ role, content: blocks });
}

/** OpenAI messages -> Anthropic's `system` and alternating `messages`. */
export function toAnthropicMessages(messages: readonly ChatMessage[]): { system?: string; messages: AnthropicMessage[] } {
  const system: string[] = [];
  const out: AnthropicMessage[] = [];
  messages.forEach((m, i) => {
    const param = `messages[${i}]`;
    switch (m.role) {
      case 'system':
      case 'developer':
        system.push(systemText(m.content, `${param}.content`));
        return;
      case 'user':
        append(out, 'user', contentBlocks(m.content, `${param}.content`));
        return;
      case 'assistant': {
        const blocks = contentBlocks(m.content, `${param}.content`);
        const calls = m.tool_calls;
        if (Array.isArray(calls)) calls.forEach((c, j) => blocks.push(toolUse(c, `${param}.tool_calls[${j}]`)));
        append(out, 'assistant', blocks);
        return;
      }
      case 'tool': {
        if (typeof m.tool_call_id !== 'string') throw new TranslationError(`${param}.tool_call_id is required for a tool message`, `${param}.tool_call_id`);
        const content = typeof m.content === 'string' ? m.content : contentBlocks(m.content, `${param}.content`);
        // Tool results go back as a user turn (consecutive tool messages become one turn).
        append(out, 'user', [{ type: 'tool_result', tool_use_id: m.tool_call_id, content }]);
        return;
      }
      default:
        throw new TranslationError(`${param}.role ${JSON.stringify(m.role)} is not supported by this Anthropic deployment`, `${param}.role`);
    }
  });
  const joined = system.filter((s) => s !== '').join('\n\n');
  return joined === '' ? { messages: out } : { system: joined, messages: out };
}

function toAnthropicTools(tools: unknown): Block[] {
  if (!Array.isArray(tools)) throw new TranslationError('tools must be a list', 'tools');
  return tools.map((t, i) => {
    const fn = isObject(t) ? t.function : undefined;
    if (!isObject(t) || t.type !== 'function' || !isObject(fn) || typeof fn.name !== 'string') {
      throw new TranslationError(`tools[${i}] must be {type: "function", function: {name, parameters}}`, `tools[${i}]`);
    }
    const tool: Block = { name: fn.name, input_schema: isObject(fn.parameters) ? fn.parameters : { type: 'object', properties: {} } };
    if (typeof fn.description === 'string') tool.description = fn.description;
    return tool;
  });
}

function toAnthropicToolChoice(choice: unknown, parallel: unknown): Block | undefined {
  let out: Block | undefined;
  if (choice === 'auto') out = { type: 'auto' };
  else if (choice === 'required') out = { type: 'any' };
  else if (choice === 'none') out = { type: 'none' };
  else if (isObject(choice) && isObject(choice.function) && typeof choice.function.name === 'string') out = { type: 'tool', name: choice.function.name };
  else if (choice !== undefined && choice !== null) throw new TranslationError('tool_choice must be "auto", "required", "none" or {type: "function", function: {name}}', 'tool_choice');
  if (parallel === false && out?.type !== 'none') out = Object.assign(out ?? { type: 'auto' }, { disable_parallel_tool_use: true });
  return out;
}

/** The Messages API body for an OpenAI chat completion body. `defaultMaxTokens` when the caller set none (Anthropic requires it). */
export function toAnthropicRequest(body: ChatCompletionBody, defaultMaxTokens: number): Record<string, unknown> {
  if (!Array.isArray(body.messages)) throw new TranslationError('messages must be a list', 'messages');
  const { system, messages } = toAnthropicMessages(body.messages);
  const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? defaultMaxTokens;
  const out: Record<string, unknown> = { model: body.model, max_tokens: maxTokens, messages };
  if (system !== undefined) out.system = system;
  if (body.stop !== undefined && body.stop !== null) out.stop_sequences = Array.isArray(body.stop) ? body.stop : [body.stop];
  for (const f of ['temperature', 'top_p', 'top_k'] as const) if (typeof body[f] === 'number') out[f] = body[f];
  if (body.tools !== undefined && body.tools !== null && !(Array.isArray(body.tools) && body.tools.length === 0)) out.tools = toAnthropicTools(body.tools);
  const toolChoice = toAnthropicToolChoice(body.tool_choice, body.parallel_tool_calls);
  if (toolChoice !== undefined) out.tool_choice = toolChoice;
  if (typeof body.user === 'string') out.metadata = { user_id: body.user };
  if (body.stream === true) out.stream = true;
  return out;
}

/** Anthropic's stop_reason -> OpenAI's finish_reason. */
export function finishReason(stopReason: unknown): string | null {
  switch (stopReason) {
    case 'end_turn':
    case 'stop_sequence':
    case 'pause_turn':
      return 'stop';
    case 'max_tokens':
      return 'length';
    case 'tool_use':
      return 'tool_calls';
    case 'refusal':
      return 'content_filter';
    case null:
    case undefined:
      return null;
    default:
      return 'stop';
  }
}

/** Anthropic usage -> OpenAI usage; cached input tokens count as prompt tokens (they count against tpm). */
export function toOpenAIUsage(usage: unknown): Usage {
  const u = isObject(usage) ? usage : {};
  const n = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  const prompt = n(u.input_tokens) + n(u.cache_creation_input_tokens) + n(u.cache_read_input_tokens);
  const completion = n(u.output_tokens);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

/** A Messages API answer -> an OpenAI chat.completion. */
export function fromAnthropicMessage(message: unknown): ChatCompletion {
  if (!isObject(message) || message.type !== 'message' || !Array.isArray(message.content)) {
    throw new MalformedAnswerError('the answer is not an Anthropic message (type "message" with a content list)');
  }
  const text: string[] = [];
  const toolCalls: Array<Record<string, unknown>> = [];
  for (const block of message.content) {
    if (!isObject(block)) throw new MalformedAnswerError('a content block is not an object');
    if (block.type === 'text') {
      if (typeof block.text !== 'string') throw new MalformedAnswerError('a text block has no text');
      text.push(block.text);
    } else if (block.type === 'tool_use') {
      if (typeof block.id !== 'string' || typeof block.name !== 'string') throw new MalformedAnswerError('a tool_use block has no id or name');
      toolCalls.push({ id: block.id, type: 'function', function: { name: block.name, arguments: JSON.stringify(block.input ?? {}) } });
    }
    // Other blocks (thinking, server tools' results) have no OpenAI chat counterpart and are left out.
  }
  const msg: ChatCompletion['choices'][0]['message'] = { role: 'assistant', content: text.length > 0 ? text.join('') : null };
  if (toolCalls.length > 0) msg.tool_calls = toolCalls;
  return {
    id: typeof message.id === 'string' ? message.id : 'msg-unknown',
    object: 'chat.completion',
    created: nowSeconds(),
    model: typeof message.model === 'string' ? message.model : '',
    choices: [{ index: 0, finish_reason: finishReason(message.stop_reason) ?? 'stop', message: msg }],
    usage: toOpenAIUsage(message.usage),
  };
}

/** An Anthropic `error` (an error event of a stream, or an error answer's body): its type and message. */
export function anthropicErrorOf(body: unknown): { type: string; message: string } | undefined {
  if (!isObject(body) || !isObject(body.error)) return undefined;
  const { type, message } = body.error;
  return { type: typeof type === 'string' ? type : 'api_error', message: typeof message === 'string' ? message : '' };
}

/**
 * Anthropic stream events -> OpenAI chunks, one event at a time. `push` returns the chunks an event
 * makes (often none); an `error` event comes back as `{ error }` for the caller to classify. `ended`
 * is true after message_stop. A known event whose data lacks what its type requires throws
 * MalformedAnswerError; event types Anthropic may add later are ignored, as its versioning policy asks.
 */
export class AnthropicStreamTranslator {
  ended = false;
  private id = 'msg-unknown';
  private model = '';
  private readonly created = nowSeconds();
  private inputUsage: unknown = {};
  private outputTokens = 0;
  /** Content block index -> OpenAI tool_calls index, for tool_use blocks. */
  private readonly toolIndex = new Map<number, number>();
  private started = false;

  constructor(private readonly fallbackModel: string) {}

  private chunk(delta: Record<string, unknown>, finish: string | null = null): ChatCompletionChunk {
    return { id: this.id, object: 'chat.completion.chunk', created: this.created, model: this.model || this.fallbackModel, choices: [{ index: 0, delta, finish_reason: finish }] };
  }

  private index(event: Record<string, unknown>): number {
    if (typeof event.index !== 'number') throw new MalformedAnswerError(`a ${String(event.type)} event has no index`);
    return event.index;
  }

  push(event: unknown): ChatCompletionChunk[] | { error: { type: string; message: string } } {
    if (!isObject(event) || typeof event.type !== 'string') throw new MalformedAnswerError('a stream event is not an object with a type');
    if (this.ended) return [];
    switch (event.type) {
      case 'ping':
        return [];
      case 'error':
        return { error: anthropicErrorOf(event) ?? { type: 'api_error', message: 'unknown stream error' } };
      case 'message_start': {
        const message = event.message;
        if (!isObject(message)) throw new MalformedAnswerError('message_start has no message');
        if (typeof message.id === 'string') this.id = message.id;
        if (typeof message.model === 'string') this.model = message.model;
        this.inputUsage = message.usage ?? {};
        const out = toOpenAIUsage(message.usage);
        this.outputTokens = out.completion_tokens;
        this.started = true;
        return [this.chunk({ role: 'assistant', content: '' })];
      }
      case 'content_block_start': {
        this.requireStarted(event.type);
        const index = this.index(event);
        const block = event.content_block;
        if (!isObject(block) || typeof block.type !== 'string') throw new MalformedAnswerError('content_block_start has no content_block');
        if (block.type === 'tool_use') {
          if (typeof block.id !== 'string' || typeof block.name !== 'string') throw new MalformedAnswerError('a tool_use block has no id or name');
          const n = this.toolIndex.size;
          this.toolIndex.set(index, n);
          return [this.chunk({ tool_calls: [{ index: n, id: block.id, type: 'function', function: { name: block.name, arguments: '' } }] })];
        }
        if (block.type === 'text' && typeof block.text === 'string' && block.text !== '') return [this.chunk({ content: block.text })];
        return [];
      }
      case 'content_block_delta': {
        this.requireStarted(event.type);
        const index = this.index(event);
        const delta = event.delta;
        if (!isObject(delta) || typeof delta.type !== 'string') throw new MalformedAnswerError('content_block_delta has no delta');
        if (delta.type === 'text_delta') {
          if (typeof delta.text !== 'string') throw new MalformedAnswerError('a text_delta has no text');
          return [this.chunk({ content: delta.text })];
        }
        if (delta.type === 'input_json_delta') {
          if (typeof delta.partial_json !== 'string') throw new MalformedAnswerError('an input_json_delta has no partial_json');
          const n = this.toolIndex.get(index);
          if (n === undefined) throw new MalformedAnswerError(`an input_json_delta for block ${index}, which is not a tool_use block`);
          return [this.chunk({ tool_calls: [{ index: n, function: { arguments: delta.partial_json } }] })];
        }
        // thinking_delta, signature_delta, citations_delta: no OpenAI chat counterpart.
        return [];
      }
      case 'content_block_stop':
        this.requireStarted(event.type);
        this.index(event);
        return [];
      case 'message_delta': {
        this.requireStarted(event.type);
        if (!isObject(event.delta)) throw new MalformedAnswerError('message_delta has no delta');
        if (isObject(event.usage) && typeof event.usage.output_tokens === 'number') this.outputTokens = event.usage.output_tokens;
        const finish = finishReason(event.delta.stop_reason);
        return finish === null ? [] : [this.chunk({}, finish)];
      }
      case 'message_stop': {
        this.requireStarted(event.type);
        this.ended = true;
        // The usage chunk OpenAI sends with include_usage (the upstream hides it from callers who did not ask).
        const usage = toOpenAIUsage(Object.assign({}, isObject(this.inputUsage) ? this.inputUsage : {}, { output_tokens: this.outputTokens }));
        return [{ id: this.id, object: 'chat.completion.chunk', created: this.created, model: this.model || this.fallbackModel, choices: [], usage }];
      }
      default:
        return [];
    }
  }

  private requireStarted(type: string): void {
    if (!this.started) throw new MalformedAnswerError(`${type} before message_start`);
  }
}
