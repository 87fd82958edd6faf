/**
 * OpenAI's Responses API for deployments that only speak chat completions (OpenAI-compatible
 * families, Anthropic through its chat adapter, mocks): the common subset translated to a chat
 * request, and the chat answer (or its chunk stream) translated back to a Response (or its events).
 * Pure functions; docs/responses.md lists what is translated and what is refused.
 *
 * Translated: `input` as a string or a list of messages (`system`, `developer`, `user`, `assistant`;
 * content as a string or `input_text` / `input_image` / `output_text` parts), `function_call` and
 * `function_call_output` items, `instructions`, function `tools` and `tool_choice`, `text.format`
 * (json_schema / json_object), `max_output_tokens`, `temperature`, `top_p`, `parallel_tool_calls`,
 * `user`, `reasoning.effort`, `service_tier`, `safety_identifier`, `prompt_cache_key`, `metadata`
 * (echoed back, not sent), `stream`. Anything else is a 400 naming the field; the stateful fields
 * (`previous_response_id`, `conversation`, `store: true`, item references) are a 400 saying the
 * group's deployments keep no state.
 */
import { TriageError } from '../errors.js';
import { newCompletionId } from '../machines/request-id.js';
import type { ChatCompletion, ChatCompletionBody, ChatCompletionChunk, ChatMessage, JsonObject, Usage } from '../core/openai-types.js';

/** What the Response echoes of its request (OpenAI returns these fields on every Response). */
export interface ResponseEcho {
  instructions: string | null;
  max_output_tokens: number | null;
  metadata: JsonObject;
  parallel_tool_calls: boolean;
  temperature: number | null;
  top_p: number | null;
  tool_choice: unknown;
  tools: unknown[];
  text: unknown;
  user: string | null;
}

export interface TranslatedRequest {
  chat: ChatCompletionBody;
  echo: ResponseEcho;
}

/** Fields copied to the chat request under the same name. */
const SAME_NAME = ['temperature', 'top_p', 'parallel_tool_calls', 'user', 'service_tier', 'safety_identifier', 'prompt_cache_key'];
/** Fields read by the translation itself. */
const TRANSLATED = ['model', 'input', 'instructions', 'tools', 'tool_choice', 'text', 'max_output_tokens', 'stream', 'metadata', 'reasoning', 'store', 'include', 'truncation', 'stream_options'];
const STATEFUL = ['previous_response_id', 'conversation'];
const SUPPORTED = new Set([...SAME_NAME, ...TRANSLATED]);

function unsupported(param: string, message: string): TriageError {
  return new TriageError('unsupported_parameter', message, { param });
}

function stateless(param: string): TriageError {
  return unsupported(param, `${param} needs a provider that keeps conversation state; this model group's deployments only speak chat completions (Triage translates the Responses API for them and keeps no state). Send the whole conversation in input instead.`);
}

function invalid(param: string, message: string): TriageError {
  return new TriageError('invalid_request', message, { param });
}

const isObject = (v: unknown): v is JsonObject => v !== null && typeof v === 'object' && !Array.isArray(v);

/** One content part of an input message, as a chat content part. */
function contentPart(part: unknown, param: string): JsonObject {
  if (!isObject(part)) throw invalid(param, `${param} must be an object with a type.`);
  switch (part.type) {
    case 'input_text':
    case 'output_text':
    case 'text':
      if (typeof part.text !== 'string') throw invalid(`${param}.text`, `${param}.text must be a string.`);
      return { type: 'text', text: part.text };
    case 'refusal':
      return { type: 'text', text: typeof part.refusal === 'string' ? part.refusal : '' };
    case 'input_image': {
      if (typeof part.image_url !== 'string') throw unsupported(param, `${param}: only input_image with an image_url can be translated to chat (file_id needs OpenAI's Responses API).`);
      const image: JsonObject = { url: part.image_url };
      if (typeof part.detail === 'string') image.detail = part.detail;
      return { type: 'image_url', image_url: image };
    }
    default:
      throw unsupported(`${param}.type`, `${param}.type ${JSON.stringify(part.type)} cannot be translated to chat completions (supported: input_text, input_image, output_text).`);
  }
}

/** A message's content: a string stays a string; parts become chat parts (all text: one string). */
function messageContent(content: unknown, param: string): unknown {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) throw invalid(param, `${param} must be a string or a list of content parts.`);
  const parts = content.map((p, i) => contentPart(p, `${param}[${i}]`));
  return parts.every((p) => p.type === 'text') ? parts.map((p) => p.text as string).join('') : parts;
}

function outputText(output: unknown, param: string): string {
  if (typeof output === 'string') return output;
  if (Array.isArray(output)) return output.map((p, i) => String(contentPart(p, `${param}[${i}]`).text ?? '')).join('');
  throw invalid(param, `${param} must be a string.`);
}

const ROLES: Record<string, string> = { user: 'user', assistant: 'assistant', system: 'system', developer: 'system' };

/** The Responses `input` as chat messages. */
export function inputToMessages(input: unknown, instructions: unknown): ChatMessage[] {
  const messages: ChatMessage[] = [];
  if (instructions !== undefined && instructions !== null) {
    if (typeof instructions !== 'string') throw invalid('instructions', 'instructions must be a string.');
    messages.push({ role: 'system', content: instructions });
  }
  if (typeof input === 'string') {
    messages.push({ role: 'user', content: input });
    return messages;
  }
  if (!Array.isArray(input) || input.length === 0) throw invalid('input', 'input is required: a string or a non-empty list of input items.');
  input.forEach((item, i) => {
    const param = `input[${i}]`;
    if (!isObject(item)) throw invalid(param, `${param} must be an object.`);
    const type = item.type ?? 'message';
    if (type === 'message') {
      const role = typeof item.role === 'string' ? ROLES[item.role] : undefined;
      if (role === undefined) throw invalid(`${param}.role`, `${param}.role must be one of user, assistant, system, developer.`);
      messages.push({ role, content: messageContent(item.content, `${param}.content`) });
    } else if (type === 'function_call') {
      if (typeof item.call_id !== 'string' || typeof item.name !== 'string') throw invalid(param, `${param} needs a string call_id and name.`);
      const call = { id: item.call_id, type: 'function', function: { name: item.name, arguments: typeof item.arguments === 'string' ? item.arguments : '{}' } };
      // Consecutive calls (and a text answer before them) are one assistant turn in chat.
      const last = messages[messages.length - 1];
      if (last?.role === 'assistant') (last.tool_calls as unknown[] | undefined) ? (last.tool_calls as unknown[]).push(call) : (last.tool_calls = [call]);
      else messages.push({ role: 'assistant', content: null, tool_calls: [call] });
    } else if (type === 'function_call_output') {
      if (typeof item.call_id !== 'string') throw invalid(`${param}.call_id`, `${param}.call_id must be a string.`);
      messages.push({ role: 'tool', tool_call_id: item.call_id, content: outputText(item.output, `${param}.output`) });
    } else if (type === 'item_reference') {
      throw stateless(`${param}`);
    } else {
      throw unsupported(`${param}.type`, `${param}.type ${JSON.stringify(type)} cannot be translated to chat completions (supported: message, function_call, function_call_output).`);
    }
  });
  return messages;
}

function translateTools(tools: unknown): unknown[] {
  if (!Array.isArray(tools)) throw invalid('tools', 'tools must be a list.');
  return tools.map((t, i) => {
    if (!isObject(t) || t.type !== 'function') {
      throw unsupported(`tools[${i}].type`, `tools[${i}]: only function tools can be translated to chat completions, got type ${JSON.stringify(isObject(t) ? t.type : t)}.`);
    }
    if (typeof t.name !== 'string' || t.name === '') throw invalid(`tools[${i}].name`, `tools[${i}].name must be a non-empty string.`);
    const fn: JsonObject = { name: t.name };
    if (t.description !== undefined) fn.description = t.description;
    if (t.parameters !== undefined) fn.parameters = t.parameters;
    if (t.strict !== undefined && t.strict !== null) fn.strict = t.strict;
    return { type: 'function', function: fn };
  });
}

function translateToolChoice(choice: unknown): unknown {
  if (choice === 'auto' || choice === 'none' || choice === 'required') return choice;
  if (isObject(choice) && choice.type === 'function' && typeof choice.name === 'string') return { type: 'function', function: { name: choice.name } };
  throw unsupported('tool_choice', 'tool_choice must be auto, none, required or {"type":"function","name":...} to be translated to chat completions.');
}

function translateFormat(text: unknown): JsonObject | undefined {
  if (!isObject(text)) throw invalid('text', 'text must be an object.');
  for (const key of Object.keys(text)) if (key !== 'format') throw unsupported(`text.${key}`, `text.${key} cannot be translated to chat completions.`);
  const format = text.format;
  if (format === undefined || format === null) return undefined;
  if (!isObject(format)) throw invalid('text.format', 'text.format must be an object.');
  if (format.type === 'text') return undefined;
  if (format.type === 'json_object') return { type: 'json_object' };
  if (format.type === 'json_schema') {
    const schema: JsonObject = { name: typeof format.name === 'string' ? format.name : 'response', schema: format.schema };
    if (format.strict !== undefined && format.strict !== null) schema.strict = format.strict;
    if (typeof format.description === 'string') schema.description = format.description;
    return { type: 'json_schema', json_schema: schema };
  }
  throw unsupported('text.format.type', `text.format.type ${JSON.stringify(format.type)} cannot be translated to chat completions.`);
}

/**
 * A Responses request as a chat completion request, or a TriageError (400) naming the first field
 * that cannot be translated. `body` is the caller's body without Triage's own fields.
 */
export function responsesToChat(body: JsonObject): TranslatedRequest {
  for (const field of STATEFUL) if (body[field] !== undefined && body[field] !== null) throw stateless(field);
  if (body.store === true) throw stateless('store');
  for (const field of Object.keys(body)) {
    if (!SUPPORTED.has(field) && body[field] !== undefined && body[field] !== null) {
      throw unsupported(field, `${field} is not supported when the Responses API is translated to chat completions for this model group's deployments.`);
    }
  }
  if (body.store !== undefined && body.store !== null && typeof body.store !== 'boolean') throw invalid('store', 'store must be a boolean.');
  if (body.include !== undefined && body.include !== null) {
    // Nothing translated produces reasoning items, so asking for their encrypted content changes nothing.
    if (!Array.isArray(body.include) || body.include.some((x) => x !== 'reasoning.encrypted_content')) {
      throw unsupported('include', 'include cannot be translated to chat completions (only reasoning.encrypted_content, which has no effect here).');
    }
  }
  if (body.truncation !== undefined && body.truncation !== null && body.truncation !== 'disabled') throw unsupported('truncation', 'truncation "auto" needs OpenAI\'s Responses API.');
  const chat: ChatCompletionBody = { model: body.model as string, messages: inputToMessages(body.input, body.instructions) };
  for (const field of SAME_NAME) if (body[field] !== undefined && body[field] !== null) chat[field] = body[field];
  if (body.max_output_tokens !== undefined && body.max_output_tokens !== null) {
    if (typeof body.max_output_tokens !== 'number' || !Number.isInteger(body.max_output_tokens) || body.max_output_tokens < 1) {
      throw invalid('max_output_tokens', 'max_output_tokens must be a positive integer.');
    }
    chat.max_tokens = body.max_output_tokens;
  }
  if (body.tools !== undefined && body.tools !== null) chat.tools = translateTools(body.tools);
  if (body.tool_choice !== undefined && body.tool_choice !== null) chat.tool_choice = translateToolChoice(body.tool_choice);
  if (body.text !== undefined && body.text !== null) {
    const format = translateFormat(body.text);
    if (format) chat.response_format = format;
  }
  if (body.reasoning !== undefined && body.reasoning !== null) {
    if (!isObject(body.reasoning)) throw invalid('reasoning', 'reasoning must be an object.');
    for (const key of Object.keys(body.reasoning)) {
      if (key !== 'effort' && body.reasoning[key] != null) throw unsupported(`reasoning.${key}`, `reasoning.${key} cannot be translated to chat completions.`);
    }
    if (body.reasoning.effort != null) chat.reasoning_effort = body.reasoning.effort;
  }
  if (body.stream === true) {
    chat.stream = true;
    // The Response's usage comes from the chat stream's usage chunk.
    chat.stream_options = { include_usage: true };
  }
  const metadata = isObject(body.metadata) ? body.metadata : {};
  return {
    chat,
    echo: {
      instructions: typeof body.instructions === 'string' ? body.instructions : null,
      max_output_tokens: typeof body.max_output_tokens === 'number' ? body.max_output_tokens : null,
      metadata,
      parallel_tool_calls: body.parallel_tool_calls !== false,
      temperature: typeof body.temperature === 'number' ? body.temperature : null,
      top_p: typeof body.top_p === 'number' ? body.top_p : null,
      tool_choice: body.tool_choice ?? 'auto',
      tools: Array.isArray(body.tools) ? body.tools : [],
      text: isObject(body.text) && isObject(body.text.format) ? { format: body.text.format } : { format: { type: 'text' } },
      user: typeof body.user === 'string' ? body.user : null,
    },
  };
}

const hex = (): string => newCompletionId().slice('chatcmpl-'.length);

/** Chat usage as the Responses API reports it. */
export function responseUsage(usage: Usage | undefined | null): JsonObject | null {
  if (!usage) return null;
  return {
    input_tokens: usage.prompt_tokens,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: usage.completion_tokens,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: usage.total_tokens,
  };
}

interface ToolCallItem {
  id: string;
  call_id: string;
  name: string;
  arguments: string;
}

function messageItem(id: string, text: string, status: string): JsonObject {
  return { id, type: 'message', status, role: 'assistant', content: [{ type: 'output_text', text, annotations: [], logprobs: [] }] };
}

function functionCallItem(call: ToolCallItem, status: string): JsonObject {
  return { id: call.id, type: 'function_call', status, call_id: call.call_id, name: call.name, arguments: call.arguments };
}

/** The Response object around `output` (status from the chat finish reason). */
function responseObject(id: string, createdAt: number, model: string, echo: ResponseEcho, output: JsonObject[], finish: string | null, usage: Usage | undefined | null, status?: string): JsonObject {
  const truncated = finish === 'length';
  return {
    id,
    object: 'response',
    created_at: createdAt,
    status: status ?? (truncated ? 'incomplete' : 'completed'),
    background: false,
    error: null,
    incomplete_details: truncated && status === undefined ? { reason: 'max_output_tokens' } : null,
    instructions: echo.instructions,
    max_output_tokens: echo.max_output_tokens,
    metadata: echo.metadata,
    model,
    output,
    parallel_tool_calls: echo.parallel_tool_calls,
    previous_response_id: null,
    reasoning: { effort: null, summary: null },
    store: false,
    temperature: echo.temperature,
    text: echo.text,
    tool_choice: echo.tool_choice,
    tools: echo.tools,
    top_p: echo.top_p,
    truncation: 'disabled',
    usage: responseUsage(usage),
    user: echo.user,
  };
}

/** A chat completion as a Response: its text as a message item, its tool calls as function_call items. */
export function chatToResponse(completion: ChatCompletion, echo: ResponseEcho): JsonObject {
  const choice = completion.choices?.[0];
  const message = (choice?.message ?? {}) as { content?: unknown; tool_calls?: unknown };
  const output: JsonObject[] = [];
  if (typeof message.content === 'string' && message.content !== '') output.push(messageItem(`msg_${hex()}`, message.content, 'completed'));
  if (Array.isArray(message.tool_calls)) {
    for (const c of message.tool_calls as Array<{ id?: string; function?: { name?: string; arguments?: string } }>) {
      output.push(functionCallItem({ id: `fc_${hex()}`, call_id: c.id ?? `call_${hex()}`, name: c.function?.name ?? '', arguments: c.function?.arguments ?? '' }, 'completed'));
    }
  }
  const createdAt = typeof completion.created === 'number' ? completion.created : Math.floor(Date.now() / 1000);
  return responseObject(`resp_${hex()}`, createdAt, completion.model, echo, output, choice?.finish_reason ?? null, completion.usage);
}

/**
 * Turns chat chunks into the Responses API's stream events, one chunk at a time: response.created and
 * response.in_progress first; output_item.added / content_part.added / output_text.delta for text;
 * output_item.added / function_call_arguments.delta for tool calls; at the end each item's .done
 * events and response.completed (response.incomplete when the model hit max_output_tokens) with usage.
 */
export class ResponsesStreamTranslator {
  private seq = 0;
  private readonly id = `resp_${hex()}`;
  private model = '';
  private readonly createdAt: number;
  private text: { id: string; index: number; text: string } | undefined;
  /** Tool calls by their chat index. */
  private readonly calls = new Map<number, ToolCallItem & { index: number }>();
  private nextIndex = 0;
  private finish: string | null = null;
  private usage: Usage | undefined;

  constructor(
    private readonly echo: ResponseEcho,
    now: number,
  ) {
    this.createdAt = Math.floor(now / 1000);
  }

  private event(type: string, fields: JsonObject): JsonObject {
    return Object.assign({ type, sequence_number: this.seq++ }, fields);
  }

  private snapshot(status: string, output: JsonObject[] = []): JsonObject {
    return responseObject(this.id, this.createdAt, this.model, this.echo, output, null, null, status);
  }

  /** The events a chat chunk makes (the first chunk also opens the response). */
  chunk(chunk: ChatCompletionChunk): JsonObject[] {
    const out: JsonObject[] = [];
    if (this.seq === 0) {
      this.model = chunk.model ?? '';
      out.push(this.event('response.created', { response: this.snapshot('in_progress') }), this.event('response.in_progress', { response: this.snapshot('in_progress') }));
    }
    if (chunk.usage) this.usage = chunk.usage;
    const choice = chunk.choices?.find((c) => c.index === 0);
    if (choice === undefined) return out;
    if (choice.finish_reason) this.finish = choice.finish_reason;
    const delta = choice.delta ?? {};
    if (typeof delta.content === 'string' && delta.content !== '') {
      if (this.text === undefined) {
        this.text = { id: `msg_${hex()}`, index: this.nextIndex++, text: '' };
        out.push(
          this.event('response.output_item.added', { output_index: this.text.index, item: { id: this.text.id, type: 'message', status: 'in_progress', role: 'assistant', content: [] } }),
          this.event('response.content_part.added', { item_id: this.text.id, output_index: this.text.index, content_index: 0, part: { type: 'output_text', text: '', annotations: [], logprobs: [] } }),
        );
      }
      this.text.text += delta.content;
      out.push(this.event('response.output_text.delta', { item_id: this.text.id, output_index: this.text.index, content_index: 0, delta: delta.content, logprobs: [] }));
    }
    const toolCalls = delta.tool_calls as Array<{ index?: number; id?: string; function?: { name?: string; arguments?: string } }> | undefined;
    if (Array.isArray(toolCalls)) {
      for (const tc of toolCalls) {
        const key = tc.index ?? 0;
        let call = this.calls.get(key);
        if (call === undefined) {
          call = { id: `fc_${hex()}`, call_id: tc.id ?? `call_${hex()}`, name: tc.function?.name ?? '', arguments: '', index: this.nextIndex++ };
          this.calls.set(key, call);
          out.push(this.event('response.output_item.added', { output_index: call.index, item: functionCallItem(call, 'in_progress') }));
        }
        const args = tc.function?.arguments;
        if (typeof args === 'string' && args !== '') {
          call.arguments += args;
          out.push(this.event('response.function_call_arguments.delta', { item_id: call.id, output_index: call.index, delta: args }));
        }
      }
    }
    return out;
  }

  /** The closing events once the chat stream ended. */
  end(): JsonObject[] {
    const out: JsonObject[] = [];
    if (this.seq === 0) out.push(this.event('response.created', { response: this.snapshot('in_progress') }));
    const items: Array<{ index: number; item: JsonObject }> = [];
    if (this.text) {
      const { id, index, text } = this.text;
      const part = { type: 'output_text', text, annotations: [], logprobs: [] };
      const item = messageItem(id, text, 'completed');
      out.push(
        this.event('response.output_text.done', { item_id: id, output_index: index, content_index: 0, text, logprobs: [] }),
        this.event('response.content_part.done', { item_id: id, output_index: index, content_index: 0, part }),
        this.event('response.output_item.done', { output_index: index, item }),
      );
      items.push({ index, item });
    }
    for (const call of this.calls.values()) {
      const item = functionCallItem(call, 'completed');
      out.push(
        this.event('response.function_call_arguments.done', { item_id: call.id, output_index: call.index, arguments: call.arguments }),
        this.event('response.output_item.done', { output_index: call.index, item }),
      );
      items.push({ index: call.index, item });
    }
    items.sort((a, b) => a.index - b.index);
    const response = responseObject(this.id, this.createdAt, this.model, this.echo, items.map((i) => i.item), this.finish, this.usage);
    out.push(this.event(response.status === 'incomplete' ? 'response.incomplete' : 'response.completed', { response }));
    return out;
  }
}

/** A chat chunk stream as Responses stream events (closing the chunk stream when the caller stops early). */
export async function* chunksToResponseEvents(chunks: AsyncIterable<ChatCompletionChunk | JsonObject>, echo: ResponseEcho, now: number): AsyncIterable<JsonObject> {
  const translator = new ResponsesStreamTranslator(echo, now);
  for await (const chunk of chunks) yield* translator.chunk(chunk as ChatCompletionChunk);
  yield* translator.end();
}
