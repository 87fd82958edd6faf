/**
 * `router_settings.default_max_parallel_requests`: LiteLLM's Router gives it to a deployment that sets
 * none of max_parallel_requests, rpm and tpm (its calculate_max_parallel_requests). Triage does the
 * same, so such a deployment is not left unlimited. (LiteLLM also derives a parallel cap from rpm or
 * tpm when max_parallel_requests is absent; Triage enforces rpm and tpm as windows instead.)
 */
import { checkPositiveInteger, optionalField, type RawMap } from './config-checks.js';
import type { ConfigIssue, ModelGroupConfig } from '../core/config-types.js';

export const DEFAULT_MAX_PARALLEL_KEY = 'default_max_parallel_requests';

export function applyDefaultMaxParallel(groups: ModelGroupConfig[], routerMap: RawMap, issues: ConfigIssue[]): void {
  const limit = optionalField(routerMap, DEFAULT_MAX_PARALLEL_KEY, 'router_settings', checkPositiveInteger, issues);
  if (limit === undefined) return;
  for (const group of groups) {
    for (const d of group.deployments) {
      const { rpm, tpm, maxParallelRequests } = d.limits;
      if (rpm === undefined && tpm === undefined && maxParallelRequests === undefined) d.limits = { ...d.limits, maxParallelRequests: limit };
    }
  }
}
