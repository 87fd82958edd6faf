/**
 * Where a deployment's calls go and how they authenticate: the URL of an endpoint path (such as
 * '/chat/completions' or '/embeddings') and the auth headers, per the provider registry. Every HTTP
 * upstream builds its URLs here, so Azure's per-deployment layout and `api-key` header hold for any
 * endpoint.
 */
import type { DeploymentConfig } from '../core/config-types.js';
import { ANTHROPIC_VERSION, AZURE_DEFAULT_API_VERSION, providerSpec, type ProviderSpec } from './providers.js';

export interface UpstreamTarget {
  /** The full URL of `endpointPath` ('/chat/completions', '/v1/messages', ...) for this deployment. */
  url(endpointPath: string): string;
  /** Auth (and protocol-version) headers; secrets, never logged. */
  readonly headers: Readonly<Record<string, string>>;
}

/** Deployments with no registered provider (or an unprefixed model) are called as OpenAI. */
const FALLBACK = providerSpec('openai')!;

export function upstreamTarget(deployment: DeploymentConfig): UpstreamTarget {
  const spec: ProviderSpec = providerSpec(deployment.provider) ?? FALLBACK;
  const base = (deployment.apiBase ?? spec.defaultApiBase ?? FALLBACK.defaultApiBase!).replace(/\/+$/, '');
  const headers: Record<string, string> = {};
  if (deployment.azureAdToken !== undefined) headers.authorization = `Bearer ${deployment.azureAdToken}`;
  else if (deployment.apiKey) {
    if (spec.auth === 'api-key') headers['api-key'] = deployment.apiKey;
    else if (spec.auth === 'x-api-key') headers['x-api-key'] = deployment.apiKey;
    else headers.authorization = `Bearer ${deployment.apiKey}`;
  }
  if (spec.wire === 'anthropic') headers['anthropic-version'] = ANTHROPIC_VERSION;
  const query = deployment.apiVersion !== undefined || spec.url === 'azure-deployment' ? `?api-version=${encodeURIComponent(deployment.apiVersion ?? AZURE_DEFAULT_API_VERSION)}` : '';
  // Azure OpenAI: the deployment name is in the path, not in the body's `model`.
  const prefix = spec.url === 'azure-deployment' ? `${base}/openai/deployments/${encodeURIComponent(deployment.upstreamModel)}` : base;
  if (spec.url === 'azure-deployment') {
    const responses = azureResponsesUrl(base, deployment.apiVersion ?? AZURE_DEFAULT_API_VERSION);
    return { url: (endpointPath) => (endpointPath === '/responses' ? responses : `${prefix}${endpointPath}${query}`), headers };
  }
  return { url: (endpointPath) => `${prefix}${endpointPath}${query}`, headers };
}

/** Azure's first dated API version with the Responses API. */
const AZURE_RESPONSES_SINCE = '2025-03-01';

/**
 * Azure's Responses API is per resource, not per deployment (the deployment goes in the body's
 * `model`, as the openai SDK's AzureOpenAI client sends it): `{api_base}/openai/responses?api-version=V`
 * for a dated version that has it (2025-03-01-preview on), else the v1 API, `{api_base}/openai/v1/responses`,
 * which takes no api-version (`preview` is passed on as its preview channel).
 */
export function azureResponsesUrl(base: string, apiVersion: string): string {
  if (/^\d{4}-\d{2}-\d{2}/.test(apiVersion) && apiVersion.slice(0, 10) >= AZURE_RESPONSES_SINCE) {
    return `${base}/openai/responses?api-version=${encodeURIComponent(apiVersion)}`;
  }
  return apiVersion === 'preview' ? `${base}/openai/v1/responses?api-version=preview` : `${base}/openai/v1/responses`;
}

/** Azure's first API version that takes `stream_options` (older ones refuse it as an unknown argument). */
const AZURE_STREAM_OPTIONS_SINCE = '2024-09-01';

/**
 * Whether the deployment's API takes `stream_options.include_usage`: not Mistral (registry), nor Azure
 * API versions older than 2024-09-01 (versions are dates, `YYYY-MM-DD[-preview]`, so they compare as strings).
 */
export function acceptsStreamOptions(deployment: DeploymentConfig): boolean {
  if (providerSpec(deployment.provider)?.streamOptions === false) return false;
  if (deployment.provider !== 'azure') return true;
  return (deployment.apiVersion ?? AZURE_DEFAULT_API_VERSION).slice(0, 10) >= AZURE_STREAM_OPTIONS_SINCE;
}
