/**
 * The process environment as a LiteLLM config sees it: `environment_variables` is applied first (so
 * `os.environ/NAME` elsewhere may name a variable it sets), and a missing `os.environ/` variable stops
 * the start only where Triage reads the value.
 */
import { childPath, describeValue, isAbsent, isMap } from './config-checks.js';
import type { ConfigIssue } from '../core/config-types.js';

const ENV_PREFIX = 'os.environ/';

/** An `os.environ/NAME` reference whose variable is not set, where it was found. */
export interface MissingVariable {
  path: string;
  variable: string;
}

/**
 * Sets each `environment_variables` entry in `env`, as LiteLLM does at start-up: values become strings
 * and replace a variable already set (a replaced, different value is a warning, so it is never a
 * surprise). A value written `os.environ/OTHER` copies OTHER, and is skipped with a warning when OTHER
 * is not set (LiteLLM skips it silently).
 */
export function applyEnvironmentVariables(value: unknown, env: NodeJS.ProcessEnv, issues: ConfigIssue[], warnings: ConfigIssue[]): void {
  const path = 'environment_variables';
  if (isAbsent(value)) return;
  if (!isMap(value)) {
    issues.push({ path, message: `expected a map of variable names to values, got ${describeValue(value)}` });
    return;
  }
  for (const [name, raw] of Object.entries(value)) {
    const at = childPath(path, name);
    let text: string;
    if (typeof raw === 'string' && raw.startsWith(ENV_PREFIX)) {
      const source = env[raw.slice(ENV_PREFIX.length)];
      if (source === undefined) {
        warnings.push({ path: at, message: `${raw.slice(ENV_PREFIX.length)} is not set; ${name} is left as it is` });
        continue;
      }
      text = source;
    } else if (typeof raw === 'string' || typeof raw === 'number' || typeof raw === 'boolean') {
      // PyYAML's true is Python's True, and LiteLLM writes str(True).
      text = typeof raw === 'boolean' ? (raw ? 'True' : 'False') : String(raw);
    } else if (isAbsent(raw)) {
      warnings.push({ path: at, message: 'has no value; not set' });
      continue;
    } else {
      issues.push({ path: at, message: `expected a string, number or boolean, got ${describeValue(raw)}` });
      continue;
    }
    const before = env[name];
    if (before !== undefined && before !== text) {
      // The value is not echoed: environment variables often hold keys.
      warnings.push({ path: at, message: `replaces the value ${name} already had in the environment (as LiteLLM does)` });
    }
    env[name] = text;
  }
}

/**
 * A missing variable that some check read is already an issue at its path. The others are in parts of
 * the file Triage does not read (guardrails, callbacks, database_url, a skipped deployment): a warning.
 */
export function settleMissingVariables(missing: readonly MissingVariable[], issues: readonly ConfigIssue[], warnings: ConfigIssue[]): void {
  const reported = new Set(issues.map((i) => i.path));
  for (const m of missing) {
    if (reported.has(m.path)) continue;
    warnings.push({ path: m.path, message: `environment variable ${m.variable} is not set (Triage does not use this setting, so it does not stop the start)` });
  }
}
