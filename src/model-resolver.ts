/**
 * Which model group answers a requested model name: an exact model_name first, then an alias
 * (`model_group_alias`), then the most specific wildcard (`anthropic/*` before `*`). A wildcard match
 * is a concrete group of its own (its own queue, scheduler and limits: the wildcard's limits apply per
 * model), built on first use from the wildcard's deployments with `*` in their model replaced by what
 * the pattern matched, so `gpt-4o` through `model: openai/*` reaches the upstream as `gpt-4o`.
 */
import type { DeploymentConfig, ModelGroupConfig, TriageConfig } from './core/config-types.js';

export type Resolution =
  /** A configured group (exact name, or an alias of one). */
  | { kind: 'group'; group: string }
  /** A concrete model a wildcard matches; `deployments` are its own (build them once, on first use). */
  | { kind: 'wildcard'; group: string; pattern: string; deployments: () => DeploymentConfig[] }
  /** A configured group none of whose deployments Triage can call. */
  | { kind: 'unavailable'; group: string; reason: string }
  | { kind: 'unknown' };

/** Concrete models one wildcard entry may create groups for by default: each is a queue and a scheduler for the life of the process. */
export const DEFAULT_MAX_WILDCARD_MODELS = 100;

/** Longest model name a wildcard turns into a group of its own. */
export const MAX_WILDCARD_MODEL_LENGTH = 256;

/**
 * What each `*` of `pattern` matched in `name` (`*` matches any run of characters, `/` included), or
 * undefined when the name does not match. A pattern without `*` matches only itself.
 */
export function matchWildcard(pattern: string, name: string): string[] | undefined {
  const parts = pattern.split('*');
  if (parts.length === 1) return pattern === name ? [] : undefined;
  const first = parts[0];
  const last = parts[parts.length - 1];
  if (name.length < first.length + last.length || !name.startsWith(first) || !name.endsWith(last)) return undefined;
  const captures: string[] = [];
  let at = first.length;
  const end = name.length - last.length;
  // Middle literals match leftmost, so earlier stars take the shortest run (a deterministic reading).
  for (let i = 1; i < parts.length - 1; i++) {
    const found = name.indexOf(parts[i], at);
    if (found < 0 || found + parts[i].length > end) return undefined;
    captures.push(name.slice(at, found));
    at = found + parts[i].length;
  }
  captures.push(name.slice(at, end));
  return captures;
}

/** More literal characters is more specific; `*` alone is the least specific of all. */
export function specificity(pattern: string): number {
  return pattern.replaceAll('*', '').length;
}

/** A wildcard deployment made concrete for one requested model. */
export function concreteDeployment(d: DeploymentConfig, model: string, captures: readonly string[]): DeploymentConfig {
  let star = 0;
  const resolved = d.model.includes('*') ? d.model.replace(/\*/g, () => captures[Math.min(star++, captures.length - 1)] ?? model) : d.model;
  // The provider (and so the endpoint read at load) stays the wildcard's own: `openai/*` serving `x/y`
  // sends OpenAI `x/y`, and an unprefixed `*` stays OpenAI's, sending the whole name.
  const slash = d.model.indexOf('/');
  const hasPrefix = slash >= 0 && !d.model.slice(0, slash).includes('*');
  const upstreamModel = hasPrefix ? resolved.slice(slash + 1) : resolved;
  return { ...d, id: `${d.id}/${model}`, modelName: model, model: resolved, upstreamModel };
}

/** Control characters (and DEL) never name a model; a wildcard does not make a group for them. */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

export class ModelResolver {
  private readonly exact = new Set<string>();
  private readonly aliases = new Map<string, string>();
  private readonly unavailable = new Map<string, string>();
  /** Most specific first; config order between equals. */
  private readonly wildcards: ModelGroupConfig[];

  constructor(config: TriageConfig) {
    for (const g of config.modelGroups) this.exact.add(g.name);
    for (const u of config.unavailableGroups ?? []) this.unavailable.set(u.name, u.reason);
    for (const a of config.aliases ?? []) this.aliases.set(a.name, a.target);
    this.wildcards = [...(config.wildcards ?? [])]
      .map((g, i) => ({ g, i }))
      .sort((a, b) => specificity(b.g.name) - specificity(a.g.name) || a.i - b.i)
      .map(({ g }) => g);
  }

  resolve(name: string): Resolution {
    const configured = this.configured(name);
    if (configured !== undefined) return configured;
    // An alias wins over a wildcard: it is a name the file spells out.
    const target = this.aliases.get(name);
    if (target !== undefined) return this.configured(target) ?? this.wildcard(target);
    return this.wildcard(name);
  }

  private configured(name: string): Resolution | undefined {
    if (this.exact.has(name)) return { kind: 'group', group: name };
    const reason = this.unavailable.get(name);
    if (reason !== undefined) return { kind: 'unavailable', group: name, reason };
    return undefined;
  }

  private wildcard(name: string): Resolution {
    if (name.length > MAX_WILDCARD_MODEL_LENGTH || CONTROL.test(name)) return { kind: 'unknown' };
    for (const w of this.wildcards) {
      const captures = matchWildcard(w.name, name);
      if (captures === undefined) continue;
      return { kind: 'wildcard', group: name, pattern: w.name, deployments: () => w.deployments.map((d) => concreteDeployment(d, name, captures)) };
    }
    return { kind: 'unknown' };
  }

  /** Names /v1/models lists: the groups, unavailable ones included, and the aliases not hidden. */
  listed(config: TriageConfig): string[] {
    const hidden = new Set((config.aliases ?? []).filter((a) => a.hidden).map((a) => a.name));
    return [...this.exact, ...this.unavailable.keys(), ...[...this.aliases.keys()].filter((a) => !hidden.has(a))];
  }
}
