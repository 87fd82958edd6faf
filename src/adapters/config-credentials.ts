/**
 * LiteLLM's `credential_list` and `litellm_params.litellm_credential_name`: a deployment takes the named
 * entry's `credential_values` (api_key, api_base, api_version, ...) as if written in its own
 * litellm_params. A key the deployment sets itself wins over the credential's (the more specific
 * setting). An unknown credential name is a config error naming both paths.
 */
import { checkList, checkMap, checkNonEmptyString, childPath, describeValue, isAbsent, isMap, optionalField, requiredField, type RawMap } from './config-checks.js';
import type { ConfigIssue } from '../core/config-types.js';

export const CREDENTIAL_NAME_KEY = 'litellm_credential_name';

/** `root` with each deployment's credential merged into its litellm_params (new maps; the input is not changed). */
export function applyCredentials(root: RawMap, issues: ConfigIssue[]): RawMap {
  const credentials = readCredentialList(root.credential_list, issues);
  if (!Array.isArray(root.model_list)) return root;
  let changed = false;
  const modelList = root.model_list.map((entry, index) => {
    if (!isMap(entry) || !isMap(entry.litellm_params) || isAbsent(entry.litellm_params[CREDENTIAL_NAME_KEY])) return entry;
    const paramsPath = childPath(childPath('model_list', index), 'litellm_params');
    const params = entry.litellm_params;
    const name = optionalField(params, CREDENTIAL_NAME_KEY, paramsPath, checkNonEmptyString, issues);
    const rest: RawMap = { ...params };
    delete rest[CREDENTIAL_NAME_KEY];
    changed = true;
    if (name === undefined) return { ...entry, litellm_params: rest };
    const values = credentials.get(name);
    if (values === undefined) {
      const known = [...credentials.keys()].map((n) => JSON.stringify(n)).join(', ') || 'none';
      issues.push({ path: childPath(paramsPath, CREDENTIAL_NAME_KEY), message: `no credential_list entry is named ${JSON.stringify(name)}; credential_list defines: ${known}` });
      return { ...entry, litellm_params: rest };
    }
    const merged: RawMap = { ...values };
    for (const [key, value] of Object.entries(rest)) if (!isAbsent(value) || !(key in merged)) merged[key] = value;
    return { ...entry, litellm_params: merged };
  });
  return changed ? { ...root, model_list: modelList } : root;
}

function readCredentialList(value: unknown, issues: ConfigIssue[]): Map<string, RawMap> {
  const out = new Map<string, RawMap>();
  if (isAbsent(value)) return out;
  const list = checkList(value, 'credential_list', issues) ?? [];
  list.forEach((entry, index) => {
    const path = childPath('credential_list', index);
    const map = checkMap(entry, path, issues);
    if (!map) return;
    const name = requiredField(map, 'credential_name', path, checkNonEmptyString, issues);
    const values = requiredField(map, 'credential_values', path, checkMap, issues);
    if (name === undefined || values === undefined) return;
    if (out.has(name)) {
      issues.push({ path: childPath(path, 'credential_name'), message: `duplicate credential name ${describeValue(name)}` });
      return;
    }
    out.set(name, values);
  });
  return out;
}
