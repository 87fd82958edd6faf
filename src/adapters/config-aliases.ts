/**
 * `router_settings.model_group_alias`: a name that answers as another model group, written as LiteLLM
 * does, `alias: group` or `alias: { model: group, hidden: true }` (hidden: served but not listed by
 * /v1/models). An alias naming no group (and matching no wildcard) is a config error.
 */
import { checkBoolean, checkMap, checkNonEmptyString, childPath, describeValue, isAbsent, isMap, optionalField, requiredField, warnUnknownKeys } from './config-checks.js';
import type { ConfigIssue, ModelAlias } from '../core/config-types.js';
import { matchWildcard } from '../model-resolver.js';

export const ALIAS_KEY = 'model_group_alias';

export function readAliases(
  value: unknown,
  groups: { names: ReadonlySet<string>; patterns: readonly string[] },
  issues: ConfigIssue[],
  warnings: ConfigIssue[],
): ModelAlias[] {
  const path = childPath('router_settings', ALIAS_KEY);
  if (isAbsent(value)) return [];
  const map = checkMap(value, path, issues);
  if (!map) return [];
  const aliases: ModelAlias[] = [];
  for (const [name, entry] of Object.entries(map)) {
    const at = childPath(path, name);
    let target: string | undefined;
    let hidden = false;
    if (isMap(entry)) {
      warnUnknownKeys(entry, at, ['model', 'hidden'], warnings);
      target = requiredField(entry, 'model', at, checkNonEmptyString, issues);
      hidden = optionalField(entry, 'hidden', at, checkBoolean, issues) ?? false;
    } else {
      target = checkNonEmptyString(entry, at, issues);
    }
    if (target === undefined) continue;
    if (groups.names.has(name)) {
      warnings.push({ path: at, message: `${JSON.stringify(name)} is also a model_name; the model_name's own deployments answer it, not ${JSON.stringify(target)}` });
      continue;
    }
    if (!groups.names.has(target) && !groups.patterns.some((p) => matchWildcard(p, target) !== undefined)) {
      const known = [...groups.names].map((n) => JSON.stringify(n)).join(', ') || 'none';
      issues.push({ path: at, message: `names model group ${describeValue(target)}, which model_list does not define (it defines: ${known})` });
      continue;
    }
    aliases.push({ name, target, hidden });
  }
  return aliases;
}
