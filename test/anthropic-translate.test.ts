/** OpenAI chat completions <-> Anthropic Messages, as pure functions: request, answer, stream. */
import { describe, expect, it } from 'vitest';
import {
  AnthropicStreamTranslator,
  finishReason,
  fromAnthropicMessage,
  MalformedAnswerError,
  toAnthropicRequest,
  toOpenAIUsage,
  TranslationError,
} from '../src/adapters/anthropic-translate.js';
import type { ChatCompletionBody, ChatCompletionChunk } from '../src/core/openai-types.js';

const body = (over: Partial<ChatCompletionBody>): ChatCompletionBody => ({ model: 'claude-x', messages: [{ role: 'user', content: 'hi' }], ...over });

describe('toAnthropicRequest', () => {
  it('moves system and developer prompts to the top-level system and defaults max_tokens', () => {
    const out = toAnthropicRequest(
      body({
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'developer', content: [{ type: 'text', text: 'Answer in French.' }] },
          { role: 'user', content: 'hello' },
        ],
      }),
      256,
    );
    expect(out).toEqual({ model: 'claude-x', max_tokens: 256, system: 'Be brief.\n\nAnswer in French.', messages: [{ role: 'user', content: [{ type: 'text', text: 'hello' }] }] });
  });

  it('takes max_completion_tokens, then max_tokens; stop becomes stop_sequences; sampling and user carried', () => {
    expect(toAnthropicRequest(body({ max_tokens: 10, max_completion_tokens: 20, stop: 'END', temperature: 0.2, top_p: 0.9, user: 'u1', stream: true }), 256)).toMatchObject({
      max_tokens: 20,
      stop_sequences: ['END'],
      temperature: 0.2,
      top_p: 0.9,
      metadata: { user_id: 'u1' },
      stream: true,
    });
    expect(toAnthropicRequest(body({ max_tokens: 10, stop: ['a', 'b'] }), 256)).toMatchObject({ max_tokens: 10, stop_sequences: ['a', 'b'] });
  });

  it('multi-part content: text and image_url (data URL -> base64 source, http URL -> url source)', () => {
    const out = toAnthropicRequest(
      body({
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'What is this?' },
              { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
              { type: 'image_url', image_url: { url: 'https://example.com/cat.jpg' } },
            ],
          },
        ],
      }),
      100,
    );
    expect(out.messages).toEqual([
      {
        role: 'user',
        content: [
          { type: 'text', text: 'What is this?' },
          { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } },
          { type: 'image', source: { type: 'url', url: 'https://example.com/cat.jpg' } },
        ],
      },
    ]);
  });

  it('tools, tool_choice, assistant tool_calls and tool results (merged into one user turn)', () => {
    const out = toAnthropicRequest(
      body({
        messages: [
          { role: 'user', content: 'Weather in Paris and Rome?' },
          {
            role: 'assistant',
            content: null,
            tool_calls: [
              { id: 'call_1', type: 'function', function: { name: 'weather', arguments: '{"city":"Paris"}' } },
              { id: 'call_2', type: 'function', function: { name: 'weather', arguments: '{"city":"Rome"}' } },
            ],
          },
          { role: 'tool', tool_call_id: 'call_1', content: '18C' },
          { role: 'tool', tool_call_id: 'call_2', content: [{ type: 'text', text: '24C' }] },
          { role: 'user', content: 'Thanks' },
        ],
        tools: [{ type: 'function', function: { name: 'weather', description: 'Current weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }],
        tool_choice: { type: 'function', function: { name: 'weather' } },
        parallel_tool_calls: false,
      }),
      100,
    );
    expect(out.tools).toEqual([{ name: 'weather', description: 'Current weather', input_schema: { type: 'object', properties: { city: { type: 'string' } } } }]);
    expect(out.tool_choice).toEqual({ type: 'tool', name: 'weather', disable_parallel_tool_use: true });
    expect(out.messages).toEqual([
      { role: 'user', content: [{ type: 'text', text: 'Weather in Paris and Rome?' }] },
      {
        role: 'assistant',
        content: [
          { type: 'tool_use', id: 'call_1', name: 'weather', input: { city: 'Paris' } },
          { type: 'tool_use', id: 'call_2', name: 'weather', input: { city: 'Rome' } },
        ],
      },
      {
        role: 'user',
        content: [
          { type: 'tool_result', tool_use_id: 'call_1', content: '18C' },
          { type: 'tool_result', tool_use_id: 'call_2', content: [{ type: 'text', text: '24C' }] },
          { type: 'text', text: 'Thanks' },
        ],
      },
    ]);
  });

  it('tool_choice strings map to auto / any / none', () => {
    expect(toAnthropicRequest(body({ tool_choice: 'auto' }), 1).tool_choice).toEqual({ type: 'auto' });
    expect(toAnthropicRequest(body({ tool_choice: 'required' }), 1).tool_choice).toEqual({ type: 'any' });
    expect(toAnthropicRequest(body({ tool_choice: 'none' }), 1).tool_choice).toEqual({ type: 'none' });
    expect(toAnthropicRequest(body({}), 1).tool_choice).toBeUndefined();
  });

  it('consecutive messages of one role merge, so roles alternate', () => {
    const out = toAnthropicRequest(body({ messages: [{ role: 'user', content: 'a' }, { role: 'user', content: 'b' }, { role: 'assistant', content: 'c' }] }), 1);
    expect(out.messages).toEqual([
      { role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }] },
      { role: 'assistant', content: [{ type: 'text', text: 'c' }] },
    ]);
  });

  it.each([
    [{ messages: [{ role: 'function', content: 'x' }] }, 'messages[0].role'],
    [{ messages: [{ role: 'tool', content: 'x' }] }, 'messages[0].tool_call_id'],
    [{ messages: [{ role: 'assistant', tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{oops' } }] }] }, 'messages[0].tool_calls[0]'],
    [{ messages: [{ role: 'user', content: [{ type: 'input_audio', input_audio: {} }] }] }, 'messages[0].content[0]'],
    [{ tool_choice: 'sometimes' }, 'tool_choice'],
    [{ tools: [{ type: 'retrieval' }] }, 'tools[0]'],
  ])('what Anthropic cannot express is a TranslationError naming the field (%#)', (over, param) => {
    let error: unknown;
    try {
      toAnthropicRequest(body(over as Partial<ChatCompletionBody>), 1);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(TranslationError);
    expect((error as TranslationError).param).toBe(param);
  });
});

describe('fromAnthropicMessage', () => {
  it('text, tool calls, stop reason and usage (cache reads count as prompt tokens)', () => {
    const out = fromAnthropicMessage({
      id: 'msg_1',
      type: 'message',
      role: 'assistant',
      model: 'claude-x',
      content: [
        { type: 'text', text: 'Let me check. ' },
        { type: 'tool_use', id: 'toolu_1', name: 'weather', input: { city: 'Paris' } },
      ],
      stop_reason: 'tool_use',
      stop_sequence: null,
      usage: { input_tokens: 20, output_tokens: 7, cache_read_input_tokens: 5 },
    });
    expect(out).toMatchObject({
      id: 'msg_1',
      object: 'chat.completion',
      model: 'claude-x',
      choices: [
        {
          index: 0,
          finish_reason: 'tool_calls',
          message: { role: 'assistant', content: 'Let me check. ', tool_calls: [{ id: 'toolu_1', type: 'function', function: { name: 'weather', arguments: '{"city":"Paris"}' } }] },
        },
      ],
      usage: { prompt_tokens: 25, completion_tokens: 7, total_tokens: 32 },
    });
  });

  it.each([
    ['end_turn', 'stop'],
    ['stop_sequence', 'stop'],
    ['max_tokens', 'length'],
    ['tool_use', 'tool_calls'],
    ['refusal', 'content_filter'],
  ])('stop_reason %s -> %s', (reason, finish) => {
    expect(finishReason(reason)).toBe(finish);
  });

  it('usage with missing fields counts them as 0', () => {
    expect(toOpenAIUsage({ input_tokens: 3 })).toEqual({ prompt_tokens: 3, completion_tokens: 0, total_tokens: 3 });
  });

  it.each([[null], [{ type: 'error' }], [{ type: 'message', content: 'text' }], [{ type: 'message', content: [{ type: 'text' }] }]])('a malformed answer throws MalformedAnswerError (%#)', (answer) => {
    expect(() => fromAnthropicMessage(answer)).toThrow(MalformedAnswerError);
  });
});

describe('AnthropicStreamTranslator', () => {
  const events = [
    { type: 'message_start', message: { id: 'msg_s', type: 'message', role: 'assistant', model: 'claude-x', content: [], stop_reason: null, usage: { input_tokens: 11, output_tokens: 1 } } },
    { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
    { type: 'ping' },
    { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Hel' } },
    { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'lo' } },
    { type: 'content_block_stop', index: 0 },
    { type: 'content_block_start', index: 1, content_block: { type: 'tool_use', id: 'toolu_9', name: 'weather', input: {} } },
    { type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json: '{"city":' } },
    { type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json: '"Rome"}' } },
    { type: 'content_block_stop', index: 1 },
    { type: 'message_delta', delta: { stop_reason: 'tool_use', stop_sequence: null }, usage: { output_tokens: 15 } },
    { type: 'message_stop' },
  ];

  it('translates a whole stream into OpenAI chunks, the last one carrying usage', () => {
    const t = new AnthropicStreamTranslator('fallback');
    const chunks: ChatCompletionChunk[] = [];
    for (const e of events) {
      const out = t.push(e);
      if (!Array.isArray(out)) throw new Error('unexpected error');
      chunks.push(...out);
    }
    expect(t.ended).toBe(true);
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === 'msg_s' && c.model === 'claude-x')).toBe(true);
    expect(chunks.map((c) => c.choices[0]?.delta ?? null)).toEqual([
      { role: 'assistant', content: '' },
      { content: 'Hel' },
      { content: 'lo' },
      { tool_calls: [{ index: 0, id: 'toolu_9', type: 'function', function: { name: 'weather', arguments: '' } }] },
      { tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] },
      { tool_calls: [{ index: 0, function: { arguments: '"Rome"}' } }] },
      {},
      null,
    ]);
    expect(chunks[6].choices[0].finish_reason).toBe('tool_calls');
    expect(chunks[7]).toMatchObject({ choices: [], usage: { prompt_tokens: 11, completion_tokens: 15, total_tokens: 26 } });
  });

  it('an error event comes back as an error for the caller to classify', () => {
    const t = new AnthropicStreamTranslator('m');
    t.push(events[0]);
    expect(t.push({ type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } })).toEqual({ error: { type: 'overloaded_error', message: 'Overloaded' } });
  });

  it('event types it does not know are ignored (Anthropic may add some); thinking deltas too', () => {
    const t = new AnthropicStreamTranslator('m');
    t.push(events[0]);
    expect(t.push({ type: 'some_future_event', data: 1 })).toEqual([]);
    expect(t.push({ type: 'content_block_start', index: 0, content_block: { type: 'thinking', thinking: '' } })).toEqual([]);
    expect(t.push({ type: 'content_block_delta', index: 0, delta: { type: 'thinking_delta', thinking: 'hmm' } })).toEqual([]);
  });

  it.each([
    [[], 'not an object', 'x'],
    [[], 'no type', { index: 0 }],
    [[], 'a block before message_start', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'x' } }],
    [[0], 'a delta without index', { type: 'content_block_delta', delta: { type: 'text_delta', text: 'x' } }],
    [[0], 'a text_delta without text', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta' } }],
    [[0], 'json for a block that is not a tool', { type: 'content_block_delta', index: 0, delta: { type: 'input_json_delta', partial_json: '{' } }],
    [[0], 'message_delta without delta', { type: 'message_delta' }],
  ])('a known event of the wrong shape throws MalformedAnswerError (%#: %s)', (before, _what, bad) => {
    const t = new AnthropicStreamTranslator('m');
    for (const i of before as number[]) t.push(events[i]);
    expect(() => t.push(bad)).toThrow(MalformedAnswerError);
  });
});
