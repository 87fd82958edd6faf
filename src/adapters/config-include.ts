/**
 * LiteLLM's `include:` (one file or a list), paths relative to the including config's folder. As in
 * LiteLLM, an included file's lists (model_list, credential_list) are appended to the main file's, and
 * its other top-level keys replace the main file's: a replaced section is a warning naming both files.
 * An included file may not include again (LiteLLM does not follow it either), and a file that cannot
 * be read or parsed is a config error naming its path.
 */
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { childPath, describeValue, isAbsent, isMap, type RawMap } from './config-checks.js';
import { ConfigError, type ConfigIssue } from '../core/config-types.js';
import { parseYaml11 } from './config-yaml.js';

export interface IncludeResult {
  root: unknown;
  warnings: ConfigIssue[];
}

/** Reads a file's text; a seam for tests. */
export type ReadText = (path: string) => string;

const readText: ReadText = (path) => readFileSync(path, 'utf8');

/** Merges the files `root.include` names into `root` (a new map); `root` without `include` comes back as is. */
export function applyIncludes(root: unknown, baseDir: string, read: ReadText = readText): IncludeResult {
  if (!isMap(root) || isAbsent(root.include)) return { root, warnings: [] };
  const issues: ConfigIssue[] = [];
  const warnings: ConfigIssue[] = [];
  const names = Array.isArray(root.include) ? root.include : [root.include];
  const merged: RawMap = { ...root };
  delete merged.include;
  const origin = new Map<string, string>(Object.keys(merged).map((k) => [k, 'the main config']));

  names.forEach((name, i) => {
    const path = Array.isArray(root.include) ? childPath('include', i) : 'include';
    if (typeof name !== 'string' || name.trim() === '') {
      issues.push({ path, message: `expected a file name (a string), got ${describeValue(name)}` });
      return;
    }
    const file = isAbsolute(name) ? name : resolve(baseDir, name);
    let text: string;
    try {
      text = read(file);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      issues.push({ path, message: `cannot read included file ${file}: ${code === 'ENOENT' ? 'file not found' : (code ?? (error as Error).message)}` });
      return;
    }
    let parsed;
    try {
      parsed = parseYaml11(text, file);
    } catch (error) {
      if (error instanceof ConfigError) return void issues.push(...error.issues);
      throw error;
    }
    warnings.push(...parsed.warnings);
    if (isAbsent(parsed.raw)) return;
    if (!isMap(parsed.raw)) {
      issues.push({ path, message: `included file ${file} must hold a map of config sections, got ${describeValue(parsed.raw)}` });
      return;
    }
    for (const [key, value] of Object.entries(parsed.raw)) {
      if (key === 'include') {
        issues.push({ path, message: `included file ${file} has an include of its own; includes are followed one level deep (as in LiteLLM): list every file in the main config` });
        continue;
      }
      const before = merged[key];
      if (Array.isArray(before) && Array.isArray(value)) {
        merged[key] = [...before, ...value];
      } else {
        if (!isAbsent(before)) {
          warnings.push({ path: key, message: `set in ${origin.get(key)} and again in included file ${file}; the included file's value replaces it, as in LiteLLM` });
        }
        merged[key] = value;
        origin.set(key, `included file ${file}`);
      }
    }
  });
  if (issues.length > 0) throw new ConfigError(issues);
  return { root: merged, warnings };
}
