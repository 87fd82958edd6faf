/**
 * Reads YAML as LiteLLM does (PyYAML, YAML 1.1): `20_000` is 20000, `yes`/`on` are true, `017` is
 * octal, and a key given twice keeps its last value. Each duplicate is a warning naming its path and
 * line, so a file that means something else than it seems to is never silent.
 */
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node, type ScalarTag, type Tags, type YAMLError } from 'yaml';
import { childPath, ROOT_PATH } from './config-checks.js';
import { ConfigError, type ConfigIssue } from '../core/config-types.js';

/**
 * PyYAML's booleans: the `yaml` package's YAML 1.1 schema also reads `y`/`n` as booleans, which PyYAML
 * (and so LiteLLM) reads as strings (`model_name: n` is the model "n").
 */
const PYYAML_TRUE = /^(?:yes|Yes|YES|true|True|TRUE|on|On|ON)$/;
const PYYAML_FALSE = /^(?:no|No|NO|false|False|FALSE|off|Off|OFF)$/;

function pyyamlBooleans(tags: Tags): Tags {
  return tags.map((tag) => {
    const scalar = tag as ScalarTag;
    if (scalar.tag !== 'tag:yaml.org,2002:bool' || !(scalar.test instanceof RegExp)) return tag;
    return { ...scalar, test: scalar.identify?.(true) ? PYYAML_TRUE : PYYAML_FALSE };
  });
}

export interface ParsedYaml {
  raw: unknown;
  warnings: ConfigIssue[];
}

/** Parses one YAML text; syntax errors throw a ConfigError at `source` with line and column. */
export function parseYaml11(text: string, source: string): ParsedYaml {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, merge: true, uniqueKeys: false, version: '1.1', customTags: pyyamlBooleans });
  const describe = (error: YAMLError, kind: string): ConfigIssue => {
    const { line, col } = lineCounter.linePos(error.pos[0]);
    // error.message is used without its source excerpt, which could show a secret.
    return { path: source, message: `${kind} at line ${line}, column ${col}: ${error.message}` };
  };
  if (doc.errors.length > 0) throw new ConfigError(doc.errors.map((e) => describe(e, 'YAML syntax error')));
  let raw: unknown;
  try {
    raw = doc.toJS();
  } catch (error) {
    throw new ConfigError([{ path: source, message: `YAML error: ${(error as Error).message}` }]);
  }
  const warnings = doc.warnings.map((w) => describe(w, 'YAML warning'));
  const where = (node: Node | null | undefined): string => {
    const offset = node?.range?.[0];
    return offset === undefined ? '' : ` (line ${lineCounter.linePos(offset).line})`;
  };
  const file = source === ROOT_PATH ? '' : ` of ${source}`;
  findDuplicateKeys(doc.contents, '', (path, key) =>
    warnings.push({ path, message: `key given more than once; the last value is used, as in LiteLLM${where(key).replace(')', `${file})`)}` }),
  );
  return { raw, warnings };
}

/** Walks maps and lists and reports every scalar key that appears again later in the same map. */
function findDuplicateKeys(node: unknown, path: string, report: (path: string, key: Node) => void, depth = 0): void {
  // Aliases are not followed (a cycle would never end); the nesting bound keeps a hostile file shallow.
  if (depth > 200) return;
  if (isSeq(node)) {
    node.items.forEach((item, i) => findDuplicateKeys(item, childPath(path, i), report, depth + 1));
    return;
  }
  if (!isMap(node)) return;
  const seen = new Set<string>();
  for (const pair of node.items) {
    const key = pair.key;
    const name = isScalar(key) && (typeof key.value === 'string' || typeof key.value === 'number') ? String(key.value) : undefined;
    if (name !== undefined) {
      if (seen.has(name)) report(childPath(path, name), key as Node);
      seen.add(name);
    }
    findDuplicateKeys(pair.value, name === undefined ? path : childPath(path, name), report, depth + 1);
  }
}
