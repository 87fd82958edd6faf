/** The slice of OpenAI's chat completion wire format that Triage reads or produces. */

export interface ChatMessage {
  role: string;
  content?: unknown;
  name?: string;
  [extra: string]: unknown;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: Array<{ index: number; finish_reason: string | null; message: { role: string; content: string | null; [k: string]: unknown } }>;
  usage?: Usage;
  [extra: string]: unknown;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: Array<{ index: number; finish_reason: string | null; delta: { role?: string; content?: string | null; [k: string]: unknown } }>;
  usage?: Usage | null;
  [extra: string]: unknown;
}

/** A chat completion request as forwarded upstream: the caller's body without Triage's own fields. */
export interface ChatCompletionBody {
  model: string;
  messages: ChatMessage[];
  stream?: boolean;
  max_tokens?: number;
  max_completion_tokens?: number;
  [extra: string]: unknown;
}

export type JsonObject = Record<string, unknown>;

/** A request body for an endpoint other than chat (Responses, embeddings, completions), without Triage's fields. */
export interface EndpointBody {
  model: string;
  stream?: boolean;
  [extra: string]: unknown;
}

/** What an answer's `usage` may hold, across endpoints: chat/completions/embeddings name prompt tokens, the Responses API input tokens. */
export interface AnyUsage {
  prompt_tokens?: number;
  completion_tokens?: number;
  input_tokens?: number;
  output_tokens?: number;
  total_tokens?: number;
}

/**
 * Any endpoint's usage as chat's Usage (tpm is reconciled with total_tokens; events report all three),
 * or undefined when it has no usable numbers.
 */
export function normalizeUsage(usage: unknown): Usage | undefined {
  if (usage === null || typeof usage !== 'object') return undefined;
  const u = usage as AnyUsage;
  if (typeof u.prompt_tokens === 'number' && typeof u.total_tokens === 'number' && typeof u.completion_tokens === 'number') return u as Usage;
  const prompt = typeof u.prompt_tokens === 'number' ? u.prompt_tokens : typeof u.input_tokens === 'number' ? u.input_tokens : 0;
  const completion = typeof u.completion_tokens === 'number' ? u.completion_tokens : typeof u.output_tokens === 'number' ? u.output_tokens : 0;
  const total = typeof u.total_tokens === 'number' ? u.total_tokens : prompt + completion;
  if (!Number.isFinite(total)) return undefined;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: total };
}
