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
  choices: Array<{ index: number; finish_reason: string | null; delta: { role?: string; content?: string; [k: string]: unknown } }>;
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
