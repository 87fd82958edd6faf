/**
 * Small, pure type checks for the config loader. Each check either returns the typed value or records
 * one issue (path + what was expected + the offending value) and returns undefined, so a caller can run
 * every check and report all problems at once instead of stopping at the first.
 */
import { REDACTED } from '../core/secrets.js';
import type { ConfigIssue } from '../core/config-types.js';

export type RawMap = Record<string, unknown>;

/** Path used for problems with the document as a whole. */
export const ROOT_PATH = '(root)';

/**
 * Stands in for an `os.environ/NAME` reference whose variable is not set. The first check that reads
 * it reports the missing variable at its path; a reference nobody reads (a section Triage ignores) is
 * only a warning, so it never stops the start (config-env.ts).
 */
export class Unresolved {
  constructor(readonly variable: string) {}
}

/** The unset variable a value stands for, when it is an unresolved `os.environ/` reference. */
export const isUnresolved = (value: unknown): value is Unresolved => value instanceof Unresolved;

export interface CheckOptions {
  /** The value is a secret: the issue says what was expected but never echoes the value. */
  secret?: boolean;
}

export interface Check<T> {
  /** What the check accepts, phrased to follow "expected". */
  readonly expected: string;
  (value: unknown, path: string, issues: ConfigIssue[], options?: CheckOptions): T | undefined;
}

export function isMap(value: unknown): value is RawMap {
  // A Date is a YAML 1.1 timestamp (`api_version: 2024-10-21` unquoted), a scalar, not a map.
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array) && !(value instanceof Unresolved) && !(value instanceof Date);
}

/** Absent keys and explicit YAML nulls (`rpm:` with nothing after it) both mean "not set". */
export function isAbsent(value: unknown): boolean {
  return value === undefined || value === null;
}

const PLAIN_KEY = /^[A-Za-z_][\w-]*$/;

/** `model_list` + 0 → `model_list[0]`; `model_list[0]` + `rpm` → `model_list[0].rpm`; odd keys are quoted. */
export function childPath(parent: string, key: string | number): string {
  const top = parent === '' || parent === ROOT_PATH;
  if (typeof key === 'number') return `${top ? '' : parent}[${key}]`;
  if (PLAIN_KEY.test(key)) return top ? key : `${parent}.${key}`;
  return `${top ? '' : parent}[${JSON.stringify(key)}]`;
}

const MAX_ECHO = 80;

/** Hides `user:password@` in URLs so a credential never lands in a message. */
function maskUrlCredentials(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/gi, `$1${REDACTED}@`);
}

/**
 * How an offending value is shown: JSON for scalars (truncated when long), a short description for
 * lists and maps, whose contents could hold a secret.
 */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return `a list of ${value.length} item${value.length === 1 ? '' : 's'}`;
  if (isMap(value)) {
    const keys = Object.keys(value);
    return keys.length === 0 ? 'an empty map' : `a map with keys ${keys.map((k) => JSON.stringify(k)).join(', ')}`;
  }
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  if (typeof value === 'string') {
    const text = JSON.stringify(maskUrlCredentials(value));
    return text.length > MAX_ECHO ? `${text.slice(0, MAX_ECHO - 2)}…"` : text;
  }
  if (typeof value === 'bigint' || typeof value === 'symbol' || typeof value === 'function') return String(value);
  return JSON.stringify(value) ?? String(value);
}

export function mismatch(expected: string, value: unknown, options?: CheckOptions): string {
  return options?.secret ? `expected ${expected}` : `expected ${expected}, got ${describeValue(value)}`;
}

/** The issue of a value that stands for an unset `os.environ/` variable, where the value is read. */
export function reportUnresolved(value: Unresolved, path: string, issues: ConfigIssue[]): void {
  issues.push({ path, message: `environment variable ${value.variable} is not set` });
}

/** Builds a check from a parser that returns undefined for values it rejects. */
export function makeCheck<T>(expected: string, parse: (value: unknown) => T | undefined): Check<T> {
  const check = (value: unknown, path: string, issues: ConfigIssue[], options?: CheckOptions): T | undefined => {
    if (value instanceof Unresolved) return void reportUnresolved(value, path, issues);
    const parsed = parse(value);
    if (parsed === undefined) issues.push({ path, message: mismatch(expected, value, options) });
    return parsed;
  };
  return Object.assign(check, { expected });
}

/**
 * Numbers may also be written as numeric strings, as LiteLLM (pydantic) accepts them; this is what makes
 * `rpm: os.environ/DEPLOYMENT_RPM` usable, since environment values are always strings.
 */
function toNumber(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
  if (typeof value === 'string' && /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/.test(value)) return Number(value);
  return undefined;
}

export function numberCheck(expected: string, accept: (n: number) => boolean): Check<number> {
  return makeCheck(expected, (value) => {
    const n = toNumber(value);
    return n !== undefined && accept(n) ? n : undefined;
  });
}

export const isInteger = (n: number): boolean => Number.isSafeInteger(n);

export const checkString = makeCheck('a string', (v) => (typeof v === 'string' ? v : undefined));
export const checkNonEmptyString = makeCheck('a non-empty string', (v) =>
  typeof v === 'string' && v.trim() !== '' ? v : undefined,
);
export const checkBoolean = makeCheck('a boolean (true or false)', (v) => {
  if (typeof v === 'boolean') return v;
  if (v === 'true') return true;
  if (v === 'false') return false;
  return undefined;
});
export const checkInteger = numberCheck('an integer', isInteger);
export const checkPositiveInteger = numberCheck('a positive integer', (n) => isInteger(n) && n > 0);
export const checkNonNegativeInteger = numberCheck('a non-negative integer', (n) => isInteger(n) && n >= 0);
export const checkPositiveSeconds = numberCheck('a positive number of seconds', (n) => n > 0);
export const checkNonNegativeSeconds = numberCheck('a non-negative number of seconds', (n) => n >= 0);
export const checkPort = numberCheck('an integer port from 1 to 65535', (n) => isInteger(n) && n >= 1 && n <= 65535);

export const checkMap = makeCheck('a map', (v) => (isMap(v) ? v : undefined));
export const checkList = makeCheck('a list', (v) => (Array.isArray(v) ? (v as unknown[]) : undefined));

function urlCheck(expected: string, protocols: readonly string[]): Check<string> {
  return makeCheck(expected, (v) => {
    if (typeof v !== 'string') return undefined;
    try {
      return protocols.includes(new URL(v).protocol) ? v : undefined;
    } catch {
      return undefined;
    }
  });
}

export const checkHttpUrl = urlCheck('an http(s) URL', ['http:', 'https:']);
export const checkRedisUrl = urlCheck('a redis:// or rediss:// URL', ['redis:', 'rediss:']);

/** Runs `check` on `map[key]` when the key is set; an absent key gives undefined and no issue. */
export function optionalField<T>(
  map: RawMap,
  key: string,
  path: string,
  check: Check<T>,
  issues: ConfigIssue[],
  options?: CheckOptions,
): T | undefined {
  const value = map[key];
  if (isAbsent(value)) return undefined;
  return check(value, childPath(path, key), issues, options);
}

/** Like optionalField, but an absent key is an issue too. */
export function requiredField<T>(
  map: RawMap,
  key: string,
  path: string,
  check: Check<T>,
  issues: ConfigIssue[],
  options?: CheckOptions,
): T | undefined {
  if (isAbsent(map[key])) {
    issues.push({ path: childPath(path, key), message: `is required (${check.expected})` });
    return undefined;
  }
  return optionalField(map, key, path, check, issues, options);
}

/** True when the key is absent or its value passed its check (so cross-field rules can run). */
export function absentOrValid(map: RawMap, key: string, parsed: unknown): boolean {
  return isAbsent(map[key]) || parsed !== undefined;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost);
    }
    previous = current;
  }
  return previous[b.length];
}

/** The known key closest to a misspelled one, when it is close enough to be a likely typo. */
export function closestKey(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const distance = editDistance(key.toLowerCase(), candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return bestDistance <= Math.max(1, Math.floor(key.length / 3)) ? best : undefined;
}

/** A warning per key of `map` that is not in `known`. Values are not echoed: a misspelled key may hold a secret. */
export function warnUnknownKeys(map: RawMap, path: string, known: readonly string[], warnings: ConfigIssue[]): void {
  for (const key of Object.keys(map)) {
    if (known.includes(key)) continue;
    const suggestion = closestKey(key, known);
    warnings.push({
      path: childPath(path, key),
      message: `unknown key; ignored${suggestion ? ` (did you mean "${suggestion}"?)` : ''}`,
    });
  }
}

/** Seconds from the YAML to whole-microsecond-precision milliseconds, without float noise (0.07 s → 70). */
export function secondsToMs(seconds: number): number {
  return Math.round(seconds * 1_000_000) / 1_000;
}

/** Drops keys whose value is undefined, so optional fields are absent rather than present-but-undefined. */
export function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
