/**
 * Query parameters that say what they do: an endpoint that takes query parameters refuses one it does
 * not know (a 400 naming it) instead of ignoring it, so `?modle=x` or a filter under the wrong name is
 * a visible mistake rather than a silently wider answer.
 */
import { TriageError } from '../errors.js';

/** The first query parameter not in `allowed`, or undefined. */
export function unknownQueryParam(query: unknown, allowed: ReadonlySet<string>): string | undefined {
  if (query === null || typeof query !== 'object') return undefined;
  for (const name in query as Record<string, unknown>) if (!allowed.has(name)) return name;
  return undefined;
}

/** Throws invalid_request (400) naming the first unknown query parameter. */
export function checkQueryParams(query: unknown, allowed: ReadonlySet<string>): void {
  const name = unknownQueryParam(query, allowed);
  if (name === undefined) return;
  const known = allowed.size === 0 ? 'none' : [...allowed].join(', ');
  throw new TriageError('invalid_request', `Unknown query parameter '${name.slice(0, 100)}'. Accepted here: ${known}.`, { param: name.slice(0, 100) });
}
