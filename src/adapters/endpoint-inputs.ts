/**
 * What the endpoints other than chat take as input, checked before a request is queued, and its size
 * in tokens for the tpm reservation (about four characters per token, as for chat; a token array
 * counts its length). The reservation is reconciled with the upstream's `usage` when the call ends.
 */
import { TriageError } from '../errors.js';

/** Most inputs in one embeddings request (OpenAI's own limit). */
export const MAX_EMBEDDING_INPUTS = 2048;
/** Most prompts in one legacy completions request. */
export const MAX_COMPLETION_PROMPTS = 2048;

const CHARS_PER_TOKEN = 4;

function invalid(param: string, message: string): TriageError {
  return new TriageError('invalid_request', message, { param });
}

const isTokenArray = (v: unknown): v is number[] => Array.isArray(v) && v.length > 0 && v.every((t) => Number.isInteger(t) && (t as number) >= 0);

/**
 * The prompt tokens of an embeddings or completions `input` / `prompt`: a string, a list of strings, a
 * token array, or a list of token arrays. Throws a 400 naming `param` for anything else, an empty
 * input, or more than `maxItems` items.
 */
export function inputTokens(input: unknown, param: string, maxItems: number): number {
  if (input === undefined || input === null) throw invalid(param, `${param} is required: a string, a list of strings, a token array or a list of token arrays.`);
  if (typeof input === 'string') {
    if (input === '') throw invalid(param, `${param} must not be an empty string.`);
    return Math.max(1, Math.ceil(input.length / CHARS_PER_TOKEN));
  }
  if (!Array.isArray(input) || input.length === 0) throw invalid(param, `${param} must be a string, a list of strings, a token array or a list of token arrays (non-empty).`);
  if (isTokenArray(input)) return input.length;
  if (input.length > maxItems) throw invalid(param, `${param} has ${input.length} items; at most ${maxItems} are accepted in one request (split the batch).`);
  let tokens = 0;
  for (let i = 0; i < input.length; i++) {
    const item = input[i];
    if (typeof item === 'string') {
      if (item === '') throw invalid(`${param}[${i}]`, `${param}[${i}] must not be an empty string.`);
      tokens += Math.max(1, Math.ceil(item.length / CHARS_PER_TOKEN));
    } else if (isTokenArray(item)) {
      tokens += item.length;
    } else {
      throw invalid(`${param}[${i}]`, `${param}[${i}] must be a string or a token array (non-negative integers); every item of one list of the same kind.`);
    }
  }
  return tokens;
}

/** The text length of a Responses `input` (strings and text parts) plus `instructions`, in tokens. */
export function responsesInputTokens(input: unknown, instructions: unknown): number {
  let chars = typeof instructions === 'string' ? instructions.length : 0;
  const add = (v: unknown): void => {
    if (typeof v === 'string') chars += v.length;
    else if (Array.isArray(v)) for (const x of v) add(x);
    else if (v !== null && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      add(o.content);
      add(o.text);
      add(o.arguments);
      add(o.output);
    }
  };
  add(input);
  return Math.ceil(chars / CHARS_PER_TOKEN) + 3;
}

/** A Responses request must have an input (a string or a non-empty list). */
export function checkResponsesInput(input: unknown): void {
  if (typeof input === 'string') return;
  if (Array.isArray(input) && input.length > 0) return;
  throw invalid('input', 'input is required: a string or a non-empty list of input items.');
}
