/**
 * The provider-specific litellm_params of a deployment that calls an upstream: api_base and api_key with
 * the registry's environment fallbacks (as LiteLLM reads them), Azure's api_version and azure_ad_token,
 * and respect_upstream_rate_limit_headers. Kept apart from config-loader.ts so the registry
 * (providers.ts) is the one place that knows providers.
 */
import { checkBoolean, checkHttpUrl, checkNonEmptyString, childPath, describeValue, isAbsent, makeCheck, optionalField, type RawMap } from './config-checks.js';
import type { ConfigIssue, DeploymentConfig } from '../core/config-types.js';
import { AZURE_DEFAULT_API_VERSION, CALLABLE_PROVIDERS, firstEnv, providerSpec } from './providers.js';

/** litellm_params keys read here (appended to the loader's known keys). */
export const PROVIDER_PARAMS_KEYS = ['api_version', 'azure_ad_token', 'respect_upstream_rate_limit_headers'];

/**
 * An api-version string. An unquoted `api_version: 2024-10-21` is a date to a YAML 1.1 reader (as
 * PyYAML reads LiteLLM's files): it is taken back as the date it was written as.
 */
const checkApiVersion = makeCheck('an api-version string such as "2024-10-21"', (v) => {
  if (v instanceof Date && !Number.isNaN(v.getTime())) return v.toISOString().slice(0, 10);
  return typeof v === 'string' && v.trim() !== '' ? v.trim() : undefined;
});

export type ProviderParams = Pick<DeploymentConfig, 'apiBase' | 'apiKey' | 'apiVersion' | 'azureAdToken' | 'respectUpstreamRateLimitHeaders'>;

export interface ProviderParamsContext {
  issues: ConfigIssue[];
  warnings: ConfigIssue[];
  env: NodeJS.ProcessEnv;
  /** Registers a secret so no message shows it. */
  secret(value: string): void;
}

/**
 * Reads the provider params of a deployment with no mock_response. `apiBase` and `apiKey` are the values
 * already read from the file (undefined when absent). An unknown provider is a warning (the deployment
 * loads; its calls fail); a provider with no default api_base and none given is an issue.
 */
export function readProviderParams(
  params: RawMap,
  path: string,
  model: string,
  provider: string,
  upstreamModel: string,
  given: { apiBase?: string; apiKey?: string },
  ctx: ProviderParamsContext,
): ProviderParams {
  const { issues } = ctx;
  const apiVersion = optionalField(params, 'api_version', path, checkApiVersion, issues);
  if (typeof params.azure_ad_token === 'string') ctx.secret(params.azure_ad_token);
  const azureAdToken = optionalField(params, 'azure_ad_token', path, checkNonEmptyString, issues, { secret: true });
  const respect = optionalField(params, 'respect_upstream_rate_limit_headers', path, checkBoolean, issues);
  const out: ProviderParams = {};
  if (respect === false) out.respectUpstreamRateLimitHeaders = false;

  const spec = providerSpec(provider);
  if (spec === undefined) {
    const which = provider === '' ? `model ${JSON.stringify(model)} has no provider prefix` : `provider ${JSON.stringify(provider)}`;
    ctx.warnings.push({
      path: childPath(path, 'model'),
      message: `${which}: Triage has no adapter for it (callable: ${CALLABLE_PROVIDERS.join(', ')}); the deployment is loaded, but calls to it fail`,
    });
    return Object.assign(out, { apiBase: given.apiBase, apiKey: given.apiKey, apiVersion, azureAdToken });
  }
  if (upstreamModel === '') issues.push({ path: childPath(path, 'model'), message: `expected "${provider}/<model name>", got ${describeValue(model)}` });

  let apiBase = given.apiBase;
  if (apiBase === undefined && isAbsent(params.api_base)) {
    const fromEnv = firstEnv(ctx.env, spec.baseEnv);
    if (fromEnv !== undefined) apiBase = checkHttpUrl(fromEnv, `${childPath(path, 'api_base')} (from ${spec.baseEnv!.find((n) => ctx.env[n] === fromEnv)})`, issues);
    else apiBase = spec.defaultApiBase;
    if (apiBase === undefined && fromEnv === undefined) {
      const env = spec.baseEnv?.length ? ` or ${spec.baseEnv.join(' / ')} in the environment` : '';
      issues.push({ path: childPath(path, 'api_base'), message: `is required for provider ${JSON.stringify(provider)} when there is no mock_response (an http(s) URL${env})` });
    }
  }
  if (apiBase !== undefined) out.apiBase = apiBase.replace(/\/+$/, '');

  // An absent api_key falls back to the provider's environment variable, as in LiteLLM.
  let apiKey = given.apiKey;
  if (apiKey === undefined && isAbsent(params.api_key)) apiKey = firstEnv(ctx.env, spec.keyEnv);
  if (apiKey !== undefined) {
    ctx.secret(apiKey);
    out.apiKey = apiKey;
  }
  if (provider === 'azure') out.apiVersion = apiVersion ?? firstEnv(ctx.env, ['AZURE_API_VERSION']) ?? AZURE_DEFAULT_API_VERSION;
  else if (apiVersion !== undefined) out.apiVersion = apiVersion;
  if (azureAdToken !== undefined) out.azureAdToken = azureAdToken;
  else if (provider === 'azure' && apiKey === undefined) {
    const token = firstEnv(ctx.env, ['AZURE_AD_TOKEN']);
    if (token !== undefined) {
      ctx.secret(token);
      out.azureAdToken = token;
    }
  }
  return out;
}
