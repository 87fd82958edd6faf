import { describe, it, expect } from 'vitest';
import { completionChoices, estimatePromptTokens, estimateRequestTokens } from '../src/machines/token-estimate.js';

describe('token estimates', () => {
  it('counts about four characters per token plus per-message and reply framing', () => {
    // 13 chars → 4 tokens, + 4 per message, + 3 for the reply.
    expect(estimatePromptTokens([{ content: 'hello world!!' }])).toBe(4 + 4 + 3);
    // Two messages: 8 + 4 chars = 12 → 3 tokens, + 2 × 4, + 3.
    expect(estimatePromptTokens([{ content: 'abcdefgh' }, { content: 'abcd' }])).toBe(3 + 8 + 3);
    // Characters are summed before rounding up.
    expect(estimatePromptTokens([{ content: 'a' }, { content: 'b' }])).toBe(1 + 8 + 3);
  });

  it('empty and missing content cost only the framing', () => {
    expect(estimatePromptTokens([])).toBe(3);
    expect(estimatePromptTokens([{ content: '' }])).toBe(7);
    expect(estimatePromptTokens([{}])).toBe(7);
    expect(estimatePromptTokens([{ content: null }])).toBe(7);
    expect(estimatePromptTokens([{ content: 42 }])).toBe(7);
  });

  it('reads the text of content parts and ignores non-text parts', () => {
    const content = [
      { type: 'text', text: 'abcdefgh' },
      { type: 'image_url', image_url: { url: 'https://example.com/x.png' } },
      { type: 'text', text: 'ijkl' },
      null,
      'stray',
    ];
    expect(estimatePromptTokens([{ content }])).toBe(3 + 4 + 3);
  });

  it('counts a message name', () => {
    expect(estimatePromptTokens([{ content: 'abcd', name: 'abcd' }])).toBe(2 + 4 + 3);
    expect(estimatePromptTokens([{ content: 'abcd', name: 7 }])).toBe(1 + 4 + 3);
  });

  it('a request reserves the prompt plus max_tokens, else the configured default', () => {
    const messages = [{ role: 'user', content: 'hello world!!' }];
    expect(estimateRequestTokens(messages, 100, 256)).toBe(11 + 100);
    expect(estimateRequestTokens(messages, undefined, 256)).toBe(11 + 256);
  });

  it('with n answers the completion budget is reserved n times, the prompt once', () => {
    const messages = [{ role: 'user', content: 'hello world!!' }];
    expect(estimateRequestTokens(messages, 100, 256, 3)).toBe(11 + 300);
    expect(estimateRequestTokens(messages, undefined, 256, 2)).toBe(11 + 512);
  });

  it('counts the answers asked for: n, or best_of when larger; 1 when unset or out of range', () => {
    expect(completionChoices(undefined)).toBe(1);
    expect(completionChoices(4)).toBe(4);
    expect(completionChoices(2, 5)).toBe(5);
    expect(completionChoices(3, null)).toBe(3);
    for (const bad of [0, -2, 1.5, '3', 129, null]) expect(completionChoices(bad)).toBe(1);
  });

  it('grows with the prompt', () => {
    const short = estimatePromptTokens([{ content: 'x'.repeat(100) }]);
    const long = estimatePromptTokens([{ content: 'x'.repeat(10_000) }]);
    expect(short).toBe(25 + 7);
    expect(long).toBe(2_500 + 7);
  });
});
