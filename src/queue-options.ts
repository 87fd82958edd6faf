/**
 * Where a request's queue options may come from besides the body's own `priority` / `timeout`:
 * `metadata.priority` (as LiteLLM accepts it in `metadata`), and the headers `x-triage-priority` /
 * `x-triage-timeout` (seconds) for clients that cannot add body fields (the AI SDK strips them). The
 * body wins, then metadata, then the header; all go through the Router's one validator. Triage's
 * metadata key is never forwarded upstream.
 */

export const PRIORITY_HEADER = 'x-triage-priority';
export const TIMEOUT_HEADER = 'x-triage-timeout';

/** The key inside `metadata` that Triage reads and removes. */
const METADATA_PRIORITY = 'priority';

/** `metadata.priority`, or undefined. OpenAI's metadata values are strings, so "3" reads as 3. */
export function metadataPriority(metadata: unknown): unknown {
  if (metadata === null || typeof metadata !== 'object') return undefined;
  const value = (metadata as Record<string, unknown>)[METADATA_PRIORITY];
  return typeof value === 'string' ? headerNumber(value) : value;
}

/**
 * `metadata` as forwarded upstream: without Triage's key (undefined when nothing else is left, so an
 * upstream that refuses `metadata` without `store` never sees one Triage alone put there).
 */
export function forwardedMetadata(metadata: unknown): unknown {
  if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata) || !(METADATA_PRIORITY in metadata)) return metadata;
  const rest = Object.assign({}, metadata) as Record<string, unknown>;
  delete rest[METADATA_PRIORITY];
  return Object.keys(rest).length === 0 ? undefined : rest;
}

/**
 * A header's value for the validator: a decimal number becomes that number; anything else is passed
 * as the string it is, so the validator's error names what was sent.
 */
export function headerNumber(value: string | string[] | undefined): unknown {
  if (value === undefined) return undefined;
  const text = (Array.isArray(value) ? value.join(',') : value).trim();
  return /^-?\d+(\.\d+)?$/.test(text) ? Number(text) : text;
}

/** The priority asked for: body, else metadata.priority, else the header. */
export function requestedPriority(body: Record<string, unknown>, header: string | string[] | undefined): unknown {
  const own = body.priority;
  if (own !== undefined && own !== null) return own;
  const meta = metadataPriority(body.metadata);
  if (meta !== undefined && meta !== null) return meta;
  return headerNumber(header);
}
