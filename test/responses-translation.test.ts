/** The Responses API ↔ chat completions translation, alone: requests, answers and stream events. */
import { describe, expect, it } from 'vitest';
import type { ChatCompletion, ChatCompletionChunk } from '../src/core/openai-types.js';
import { chatToResponse, ResponsesStreamTranslator, responsesToChat } from '../src/adapters/responses-translation.js';
import { TriageError } from '../src/errors.js';

function refusal(body: Record<string, unknown>): { code: string; param: string | null } {
  try {
    responsesToChat({ model: 'm', ...body });
  } catch (e) {
    const t = e as TriageError;
    return { code: t.code, param: t.param };
  }
  throw new Error('translated');
}

describe('responsesToChat', () => {
  it('a string input with instructions becomes a system and a user message; options map to chat names', () => {
    const { chat, echo } = responsesToChat({
      model: 'm',
      input: 'hi',
      instructions: 'Be brief.',
      max_output_tokens: 50,
      temperature: 0.2,
      user: 'u1',
      reasoning: { effort: 'low' },
      text: { format: { type: 'json_schema', name: 'w', schema: { type: 'object' }, strict: true } },
      metadata: { trace: 't' },
    });
    expect(chat).toEqual({
      model: 'm',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'hi' },
      ],
      temperature: 0.2,
      user: 'u1',
      max_tokens: 50,
      response_format: { type: 'json_schema', json_schema: { name: 'w', schema: { type: 'object' }, strict: true } },
      reasoning_effort: 'low',
    });
    expect(echo.metadata).toEqual({ trace: 't' });
    expect(echo.instructions).toBe('Be brief.');
  });

  it('messages, content parts, function calls and their outputs become one chat conversation', () => {
    const { chat } = responsesToChat({
      model: 'm',
      input: [
        { role: 'developer', content: 'rules' },
        { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'look ' }, { type: 'input_text', text: 'here' }] },
        { role: 'user', content: [{ type: 'input_image', image_url: 'https://x/y.png', detail: 'low' }] },
        { role: 'assistant', content: [{ type: 'output_text', text: 'checking' }] },
        { type: 'function_call', call_id: 'c1', name: 'f', arguments: '{"a":1}' },
        { type: 'function_call', call_id: 'c2', name: 'g', arguments: '{}' },
        { type: 'function_call_output', call_id: 'c1', output: 'one' },
        { type: 'function_call_output', call_id: 'c2', output: [{ type: 'input_text', text: 'two' }] },
      ],
      tools: [{ type: 'function', name: 'f', description: 'does f', parameters: { type: 'object' }, strict: false }],
      tool_choice: { type: 'function', name: 'f' },
      stream: true,
    });
    expect(chat.messages).toEqual([
      { role: 'system', content: 'rules' },
      { role: 'user', content: 'look here' },
      { role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://x/y.png', detail: 'low' } }] },
      {
        role: 'assistant',
        content: 'checking',
        tool_calls: [
          { id: 'c1', type: 'function', function: { name: 'f', arguments: '{"a":1}' } },
          { id: 'c2', type: 'function', function: { name: 'g', arguments: '{}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'c1', content: 'one' },
      { role: 'tool', tool_call_id: 'c2', content: 'two' },
    ]);
    expect(chat.tools).toEqual([{ type: 'function', function: { name: 'f', description: 'does f', parameters: { type: 'object' }, strict: false } }]);
    expect(chat.tool_choice).toEqual({ type: 'function', function: { name: 'f' } });
    expect(chat.stream).toBe(true);
    expect(chat.stream_options).toEqual({ include_usage: true });
  });

  it('refuses what it cannot translate with a 400 naming the field', () => {
    expect(refusal({ input: 'x', tools: [{ type: 'file_search' }] })).toEqual({ code: 'unsupported_parameter', param: 'tools[0].type' });
    expect(refusal({ input: 'x', prompt: { id: 'p' } })).toEqual({ code: 'unsupported_parameter', param: 'prompt' });
    expect(refusal({ input: 'x', text: { verbosity: 'low' } })).toEqual({ code: 'unsupported_parameter', param: 'text.verbosity' });
    expect(refusal({ input: 'x', include: ['file_search_call.results'] })).toEqual({ code: 'unsupported_parameter', param: 'include' });
    expect(refusal({ input: 'x', truncation: 'auto' })).toEqual({ code: 'unsupported_parameter', param: 'truncation' });
    expect(refusal({ input: 'x', reasoning: { summary: 'auto' } })).toEqual({ code: 'unsupported_parameter', param: 'reasoning.summary' });
    expect(refusal({ input: [{ type: 'item_reference', id: 'msg_1' }] })).toEqual({ code: 'unsupported_parameter', param: 'input[0]' });
    expect(refusal({ input: 'x', previous_response_id: 'r' })).toEqual({ code: 'unsupported_parameter', param: 'previous_response_id' });
    expect(refusal({ input: 'x', store: true })).toEqual({ code: 'unsupported_parameter', param: 'store' });
    expect(refusal({ input: [] })).toEqual({ code: 'invalid_request', param: 'input' });
    expect(refusal({ input: [{ type: 'function_call_output', output: 'x' }] })).toEqual({ code: 'invalid_request', param: 'input[0].call_id' });
  });

  it('store: false and an include of reasoning.encrypted_content are accepted (nothing to keep or encrypt)', () => {
    expect(responsesToChat({ model: 'm', input: 'x', store: false, include: ['reasoning.encrypted_content'] }).chat.messages).toEqual([{ role: 'user', content: 'x' }]);
  });
});

const echo = responsesToChat({ model: 'm', input: 'x' }).echo;

describe('chatToResponse', () => {
  it('text and tool calls become output items; usage is renamed; a length stop is incomplete', () => {
    const completion: ChatCompletion = {
      id: 'chatcmpl-1',
      object: 'chat.completion',
      created: 1700000000,
      model: 'up',
      choices: [{ index: 0, finish_reason: 'length', message: { role: 'assistant', content: 'partial', tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{}' } }] } }],
      usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
    };
    const r = chatToResponse(completion, echo);
    expect(r).toMatchObject({
      object: 'response',
      created_at: 1700000000,
      status: 'incomplete',
      incomplete_details: { reason: 'max_output_tokens' },
      model: 'up',
      output: [
        { type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: 'partial', annotations: [] }] },
        { type: 'function_call', call_id: 'c1', name: 'f', arguments: '{}', status: 'completed' },
      ],
      usage: { input_tokens: 3, output_tokens: 2, total_tokens: 5 },
    });
    expect(String(r.id)).toMatch(/^resp_[0-9a-f]{24}$/);
  });
});

describe('ResponsesStreamTranslator', () => {
  const chunk = (delta: Record<string, unknown>, finish: string | null = null): ChatCompletionChunk => ({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'up', choices: [{ index: 0, delta, finish_reason: finish }] });

  it('text deltas: created, in_progress, item and part added, deltas, then the done events and completed with usage', () => {
    const t = new ResponsesStreamTranslator(echo, 1_700_000_000_000);
    const events = [
      ...t.chunk(chunk({ role: 'assistant', content: '' })),
      ...t.chunk(chunk({ content: 'Hel' })),
      ...t.chunk(chunk({ content: 'lo' })),
      ...t.chunk(chunk({}, 'stop')),
      ...t.chunk({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'up', choices: [], usage: { prompt_tokens: 2, completion_tokens: 1, total_tokens: 3 } }),
      ...t.end(),
    ];
    expect(events.map((e) => e.type)).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
      'response.output_text.delta',
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.completed',
    ]);
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
    expect(events[6]).toMatchObject({ text: 'Hello' });
    const completed = events.at(-1)!.response as { status: string; output: unknown[]; usage: unknown; id: string };
    expect(completed).toMatchObject({ status: 'completed', output: [{ type: 'message', content: [{ text: 'Hello' }] }], usage: { input_tokens: 2, output_tokens: 1, total_tokens: 3 } });
    expect(completed.id).toBe((events[0].response as { id: string }).id);
  });

  it('tool call deltas become a function_call item with argument deltas', () => {
    const t = new ResponsesStreamTranslator(echo, 0);
    const events = [
      ...t.chunk(chunk({ role: 'assistant', content: null })),
      ...t.chunk(chunk({ tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'f', arguments: '' } }] })),
      ...t.chunk(chunk({ tool_calls: [{ index: 0, function: { arguments: '{"a"' } }] })),
      ...t.chunk(chunk({ tool_calls: [{ index: 0, function: { arguments: ':1}' } }] })),
      ...t.chunk(chunk({}, 'tool_calls')),
      ...t.end(),
    ];
    expect(events.map((e) => e.type)).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.done',
      'response.output_item.done',
      'response.completed',
    ]);
    expect(events.at(-3)).toMatchObject({ arguments: '{"a":1}' });
    expect(events.at(-1)!.response).toMatchObject({ output: [{ type: 'function_call', call_id: 'call_1', name: 'f', arguments: '{"a":1}' }] });
  });

  it('a stream cut by max tokens ends with response.incomplete', () => {
    const t = new ResponsesStreamTranslator(echo, 0);
    const events = [...t.chunk(chunk({ content: 'abc' })), ...t.chunk(chunk({}, 'length')), ...t.end()];
    expect(events.at(-1)).toMatchObject({ type: 'response.incomplete', response: { status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } } });
  });
});
