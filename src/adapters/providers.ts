/**
 * The providers Triage can call, by LiteLLM provider prefix, and the api_base each uses when a
 * deployment gives none. One table for the loader (which deployments load, which are skipped with a
 * warning) and the upstream adapters; a provider added here with its adapter becomes callable.
 */

export interface ProviderSpec {
  /** Used when the deployment gives no api_base; undefined: api_base is required. */
  defaultApiBase?: string;
}

export const PROVIDERS: Readonly<Record<string, ProviderSpec>> = {
  openai: { defaultApiBase: 'https://api.openai.com/v1' },
  azure: {},
  azure_ai: {},
  anthropic: { defaultApiBase: 'https://api.anthropic.com' },
  hosted_vllm: {},
  vllm: {},
  openai_compatible: {},
  custom_openai: {},
  ollama_chat: { defaultApiBase: 'http://localhost:11434/v1' },
  groq: { defaultApiBase: 'https://api.groq.com/openai/v1' },
  together_ai: { defaultApiBase: 'https://api.together.xyz/v1' },
  deepseek: { defaultApiBase: 'https://api.deepseek.com/v1' },
  mistral: { defaultApiBase: 'https://api.mistral.ai/v1' },
  fireworks_ai: { defaultApiBase: 'https://api.fireworks.ai/inference/v1' },
  xai: { defaultApiBase: 'https://api.x.ai/v1' },
  openrouter: { defaultApiBase: 'https://openrouter.ai/api/v1' },
  perplexity: { defaultApiBase: 'https://api.perplexity.ai' },
  gemini: { defaultApiBase: 'https://generativelanguage.googleapis.com/v1beta/openai' },
};

/** The provider prefixes Triage has an adapter for (deployments with a `mock_response` need none). */
export const CALLABLE_PROVIDERS: readonly string[] = Object.keys(PROVIDERS);

export function providerSpec(provider: string): ProviderSpec | undefined {
  return Object.hasOwn(PROVIDERS, provider) ? PROVIDERS[provider] : undefined;
}
