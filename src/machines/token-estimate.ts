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

/** OpenAI's most choices per request (`n`). */
export const MAX_CHOICES = 128;

/**
 * How many answers a request asks for: `n` (and for legacy completions `best_of`, which the provider
 * generates and bills in full though it returns fewer); 1 when unset. Values out of OpenAI's range are
 * refused before this (router.ts), so anything else counts as 1.
 */
export function completionChoices(n: unknown, bestOf?: unknown): number {
  const count = (v: unknown) => (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= MAX_CHOICES ? v : 1);
  return Math.max(count(n), count(bestOf));
}

/**
 * Prompt estimate plus the completion budget (`max_tokens`, else the configured default) once per
 * answer: with `n` > 1 the provider generates (and counts against tpm) n completions of one prompt.
 */
export function estimateRequestTokens(
  messages: ReadonlyArray<{ content?: unknown; name?: unknown }>,
  maxTokens: number | undefined,
  defaultMaxTokens: number,
  choices = 1,
): number {
  return estimatePromptTokens(messages) + choices * (maxTokens ?? defaultMaxTokens);
}
