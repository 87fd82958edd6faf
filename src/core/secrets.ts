/**
 * The one way secrets (keys, upstream api keys, the Redis password) are kept out of anything that
 * echoes a caller, an upstream or a config: config errors, HTTP error messages, events, logs.
 */

/** What a secret is replaced with, everywhere. */
export const REDACTED = '[redacted]';

/** Secrets shorter than this are not redacted: they would mangle ordinary words. */
export const MIN_SECRET_LENGTH = 4;

/** The distinct secrets among `values` worth redacting, longest first (a secret containing another goes first). */
export function secretList(values: Iterable<unknown>): string[] {
  const secrets = new Set<string>();
  for (const v of values) if (typeof v === 'string' && v.length >= MIN_SECRET_LENGTH) secrets.add(v);
  return [...secrets].sort((a, b) => b.length - a.length);
}

/** `text` with every occurrence of each secret (from secretList) replaced by REDACTED. */
export function redactSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) if (out.includes(secret)) out = out.split(secret).join(REDACTED);
  return out;
}
