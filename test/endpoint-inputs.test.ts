/** The pure pieces of the endpoints work: input sizes, queue options, modes, mock vectors and answers, config keys. */
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../src/adapters/config-loader.js';
import { ConfigError } from '../src/core/config-types.js';
import { inputTokens, responsesInputTokens } from '../src/adapters/endpoint-inputs.js';
import { endpointsOfMode, wrongEndpoint } from '../src/core/endpoints.js';
import { base64Embedding, mockEmbedding } from '../src/adapters/mock-embeddings.js';
import { truncateToTokens } from '../src/adapters/mock-upstream.js';
import { normalizeUsage } from '../src/core/openai-types.js';
import { forwardedMetadata, headerNumber, requestedPriority } from '../src/queue-options.js';

describe('inputTokens', () => {
  it('strings at ~4 characters a token, token arrays by length, single or batched', () => {
    expect(inputTokens('abcdefgh', 'input', 10)).toBe(2);
    expect(inputTokens(['abcd', 'abcdefgh'], 'input', 10)).toBe(3);
    expect(inputTokens([1, 2, 3], 'input', 10)).toBe(3);
    expect(inputTokens([[1, 2], [3]], 'input', 10)).toBe(3);
  });

  it('refuses empty, mixed, wrong-typed and oversized inputs, naming the item', () => {
    const param = (input: unknown) => {
      try {
        inputTokens(input, 'input', 2);
      } catch (e) {
        return (e as { param: string }).param;
      }
      return 'accepted';
    };
    expect(param(undefined)).toBe('input');
    expect(param('')).toBe('input');
    expect(param([])).toBe('input');
    expect(param(['a', 'b', 'c'])).toBe('input');
    expect(param(['a', 3.5])).toBe('input[1]');
    expect(param([[1], ['x']])).toBe('input[1]');
    expect(param({ text: 'a' })).toBe('input');
    // A token array is one input however long.
    expect(param([1, 2, 3, 4])).toBe('accepted');
  });

  it('a Responses input counts its text, function arguments and outputs, and the instructions', () => {
    expect(responsesInputTokens('abcd', 'abcd')).toBe(2 + 3);
    expect(responsesInputTokens([{ role: 'user', content: [{ type: 'input_text', text: 'abcdefgh' }] }, { type: 'function_call_output', output: 'abcd' }], undefined)).toBe(3 + 3);
  });
});

describe('queue options', () => {
  it('body, then metadata.priority, then the header; header text stays text for the validator', () => {
    expect(requestedPriority({ priority: 1, metadata: { priority: 2 } }, '3')).toBe(1);
    expect(requestedPriority({ metadata: { priority: '2' } }, '3')).toBe(2);
    expect(requestedPriority({}, ' 3 ')).toBe(3);
    expect(requestedPriority({}, 'high')).toBe('high');
    expect(requestedPriority({}, undefined)).toBeUndefined();
    expect(headerNumber('2.5')).toBe(2.5);
  });

  it("metadata loses Triage's key; an object left empty is not forwarded", () => {
    expect(forwardedMetadata({ priority: 1, trace: 't' })).toEqual({ trace: 't' });
    expect(forwardedMetadata({ priority: 1 })).toBeUndefined();
    const untouched = { trace: 't' };
    expect(forwardedMetadata(untouched)).toBe(untouched);
  });
});

describe('modes and endpoints', () => {
  it('chat groups also serve responses and completions; the others one endpoint each', () => {
    expect(endpointsOfMode('chat')).toEqual(['chat', 'responses', 'completions']);
    expect(endpointsOfMode('embedding')).toEqual(['embeddings']);
    expect(endpointsOfMode('image_generation')).toEqual([]);
    expect(wrongEndpoint('m', 'chat', 'responses')).toBeUndefined();
    expect(wrongEndpoint('e', 'embedding', 'chat')).toBe("The model 'e' is a embedding model: call POST /v1/embeddings instead of POST /v1/chat/completions.");
    expect(wrongEndpoint('i', 'image_generation', 'chat')).toContain('does not serve');
  });

  it('every endpoint usage reads as chat usage for tpm', () => {
    expect(normalizeUsage({ input_tokens: 3, output_tokens: 2, total_tokens: 5 })).toEqual({ prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 });
    expect(normalizeUsage({ prompt_tokens: 4, total_tokens: 4 })).toEqual({ prompt_tokens: 4, completion_tokens: 0, total_tokens: 4 });
    expect(normalizeUsage(null)).toBeUndefined();
  });
});

describe('mock answers', () => {
  it('embeddings are deterministic unit vectors; base64 is little-endian float32', () => {
    const a = mockEmbedding('hello', 16);
    expect(mockEmbedding('hello', 16)).toEqual(a);
    expect(mockEmbedding('hellp', 16)).not.toEqual(a);
    expect(mockEmbedding([1, 2], 16)).not.toEqual(mockEmbedding('1,2', 16));
    expect(Math.hypot(...a)).toBeCloseTo(1, 5);
    const decoded = Array.from(new Float32Array(Uint8Array.from(Buffer.from(base64Embedding(a), 'base64')).buffer));
    expect(decoded).toEqual(a);
  });

  it('max_tokens truncates at ~4 characters a token', () => {
    expect(truncateToTokens('Hello world!', 2)).toEqual({ text: 'Hello wo', truncated: true });
    expect(truncateToTokens('Hello', 2)).toEqual({ text: 'Hello', truncated: false });
    expect(truncateToTokens('Hello world!', undefined)).toEqual({ text: 'Hello world!', truncated: false });
  });
});

describe('config keys', () => {
  const load = (deployment: string) => parseConfig(`model_list:\n${deployment}`, { env: {} });

  it('mode, output_vector_size, mock_tool_calls, forward_priority and an object mock_response', () => {
    const { config } = load(`  - model_name: e
    litellm_params: { model: mock/e, mock_response: { a: 1 }, forward_priority: true, mock_tool_calls: [{ function: { name: f, arguments: { x: 1 } } }] }
    model_info: { mode: embedding, output_vector_size: 8 }`);
    expect(config.modelGroups[0].deployments[0]).toMatchObject({
      mode: 'embedding',
      embeddingDimensions: 8,
      forwardPriority: true,
      mockResponse: '{"a":1}',
      mockResponseIsJson: true,
      mockToolCalls: [{ id: 'call_mock0', type: 'function', function: { name: 'f', arguments: '{"x":1}' } }],
    });
  });

  it('a bad mode, a bad tool call and disagreeing modes in one group are errors naming their path', () => {
    let error: ConfigError | undefined;
    try {
      load(`  - model_name: a
    litellm_params: { model: mock/a, mock_response: x, mock_tool_calls: [{ name: f }] }
    model_info: { mode: chatty }
  - model_name: b
    litellm_params: { model: mock/b, mock_response: x }
  - model_name: b
    litellm_params: { model: mock/b, mock_response: x }
    model_info: { mode: embedding }`);
    } catch (e) {
      error = e as ConfigError;
    }
    expect(error?.issues.map((i) => i.path)).toEqual(['model_list[0].litellm_params.mock_tool_calls[0]', 'model_list[0].model_info.mode', 'model_list']);
    expect(error?.message).toContain('"chatty"');
    expect(error?.message).toContain('disagree on model_info.mode');
  });

  it('a LiteLLM mode Triage does not serve is skipped with a warning, its group answering 503 with the reason', () => {
    const { warnings, config } = load(`  - model_name: img
    litellm_params: { model: mock/img, mock_response: x }
    model_info: { mode: image_generation }`);
    expect(config.modelGroups).toEqual([]);
    expect(config.unavailableGroups).toEqual([{ name: 'img', reason: expect.stringContaining('model_info.mode "image_generation" is not served by Triage') }]);
    expect(warnings.map((w) => w.path)).toContain('model_list[0]');
  });
});
