/**
 * `litellm_settings`: LiteLLM's module settings. Triage reads the two that mean the same thing for it,
 * `request_timeout` (the upstream call timeout) and `num_retries`, as defaults that router_settings
 * overrides (as LiteLLM's Router does). Every other key is named in a warning: ignored.
 */
import { checkNonNegativeInteger, checkPositiveSeconds, childPath, isAbsent, optionalField, secondsToMs, type RawMap } from './config-checks.js';
import type { ConfigIssue, RouterSettings } from '../core/config-types.js';

export const LITELLM_SETTINGS_READ = ['request_timeout', 'num_retries'];

/** Applies litellm_settings' defaults to `router` (router_settings wins) and warns about the rest. */
export function applyLitellmSettings(settings: RawMap, routerMap: RawMap, router: RouterSettings, issues: ConfigIssue[], warnings: ConfigIssue[]): void {
  const path = 'litellm_settings';
  const timeout = optionalField(settings, 'request_timeout', path, checkPositiveSeconds, issues);
  const retries = optionalField(settings, 'num_retries', path, checkNonNegativeInteger, issues);
  if (timeout !== undefined && isAbsent(routerMap.request_timeout)) router.requestTimeoutMs = secondsToMs(timeout);
  if (retries !== undefined && isAbsent(routerMap.num_retries)) router.numRetries = retries;
  for (const key of Object.keys(settings)) {
    if (LITELLM_SETTINGS_READ.includes(key)) continue;
    warnings.push({ path: childPath(path, key), message: 'a LiteLLM module setting Triage does not use; ignored' });
  }
}
