/**
 * Token estimates for tpm reservations. A grant reserves prompt + completion tokens before the call;
 * the reservation is reconciled with the upstream's real `usage` when the call ends, so a rough but
 * cheap estimate is enough (no tokenizer dependency): about four characters per token, plus the
 * per-message framing OpenAI's chat format adds.
 */

const CHARS_PER_TOKEN = 4;
const TOKENS_PER_MESSAGE = 4;
const TOKENS_PER_REPLY = 3;

function contentLength(content: unknown): number {
  if (typeof content === 'string') return content.length;
  if (Array.isArray(content)) {
    let n = 0;
    for (const part of content) {
      if (part && typeof part === 'object' && typeof (part as { text?: unknown }).text === 'string') {
        n += (part as { text: string }).text.length;
      }
    }
    return n;
  }
  return 0;
}

export function estimatePromptTokens(messages: ReadonlyArray<{ content?: unknown; name?: unknown }>): number {
  let chars = 0;
  for (const m of messages) {
    chars += contentLength(m.content);
    if (typeof m.name === 'string') chars += m.name.length;
  }
  return Math.ceil(chars / CHARS_PER_TOKEN) + messages.length * TOKENS_PER_MESSAGE + TOKENS_PER_REPLY;
}

/** Prompt estimate plus the completion budget (`max_tokens`, else the configured default). */
export function estimateRequestTokens(
  messages: ReadonlyArray<{ content?: unknown; name?: unknown }>,
  maxTokens: number | undefined,
  defaultMaxTokens: number,
): number {
  return estimatePromptTokens(messages) + (maxTokens ?? defaultMaxTokens);
}
