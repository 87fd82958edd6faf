/**
 * The provider registry: for each LiteLLM provider prefix Triage can call, its wire format, its default
 * api_base, how its key is sent and which environment variables LiteLLM reads the key from. One table,
 * mirrored in the README's provider table.
 */

/** How requests and answers look on the wire: OpenAI's chat completions, or Anthropic's Messages API. */
export type WireFormat = 'openai' | 'anthropic';

/** Where the deployment's key goes: `Authorization: Bearer`, Azure's `api-key`, or Anthropic's `x-api-key`. */
export type AuthStyle = 'bearer' | 'api-key' | 'x-api-key';

/** How an endpoint path becomes a URL: appended to api_base, or Azure OpenAI's per-deployment layout. */
export type UrlStyle = 'append' | 'azure-deployment';

export interface ProviderSpec {
  wire: WireFormat;
  url: UrlStyle;
  auth: AuthStyle;
  /** Used when the deployment gives no api_base; undefined: api_base is required. */
  defaultApiBase?: string;
  /** Environment variables read, in order, for the key when the deployment gives no api_key (as LiteLLM). */
  keyEnv: readonly string[];
  /** Environment variables read for api_base when the deployment gives none (before defaultApiBase). */
  baseEnv?: readonly string[];
  /** false: the API refuses `stream_options` (Mistral: 422 "Extra inputs are not permitted"; it reports usage in its last chunk anyway). */
  streamOptions?: false;
}

/** Azure OpenAI's api-version when neither `api_version` nor AZURE_API_VERSION gives one (the latest GA version). */
export const AZURE_DEFAULT_API_VERSION = '2024-10-21';
export const ANTHROPIC_VERSION = '2023-06-01';

const openai = (defaultApiBase: string | undefined, keyEnv: readonly string[], baseEnv?: readonly string[]): ProviderSpec =>
  baseEnv === undefined ? { wire: 'openai', url: 'append', auth: 'bearer', defaultApiBase, keyEnv } : { wire: 'openai', url: 'append', auth: 'bearer', defaultApiBase, keyEnv, baseEnv };

export const PROVIDERS: Readonly<Record<string, ProviderSpec>> = {
  openai: openai('https://api.openai.com/v1', ['OPENAI_API_KEY'], ['OPENAI_BASE_URL', 'OPENAI_API_BASE']),
  azure: { wire: 'openai', url: 'azure-deployment', auth: 'api-key', keyEnv: ['AZURE_API_KEY', 'AZURE_OPENAI_API_KEY'], baseEnv: ['AZURE_API_BASE'] },
  azure_ai: { wire: 'openai', url: 'append', auth: 'api-key', keyEnv: ['AZURE_AI_API_KEY'], baseEnv: ['AZURE_AI_API_BASE'] },
  anthropic: { wire: 'anthropic', url: 'append', auth: 'x-api-key', defaultApiBase: 'https://api.anthropic.com', keyEnv: ['ANTHROPIC_API_KEY'], baseEnv: ['ANTHROPIC_API_BASE'] },
  hosted_vllm: openai(undefined, ['HOSTED_VLLM_API_KEY'], ['HOSTED_VLLM_API_BASE']),
  vllm: openai(undefined, ['HOSTED_VLLM_API_KEY'], ['HOSTED_VLLM_API_BASE']),
  openai_compatible: openai(undefined, []),
  custom_openai: openai(undefined, []),
  ollama_chat: openai('http://localhost:11434/v1', ['OLLAMA_API_KEY'], ['OLLAMA_API_BASE']),
  groq: openai('https://api.groq.com/openai/v1', ['GROQ_API_KEY']),
  together_ai: openai('https://api.together.xyz/v1', ['TOGETHERAI_API_KEY', 'TOGETHER_AI_API_KEY', 'TOGETHER_API_KEY']),
  deepseek: openai('https://api.deepseek.com/v1', ['DEEPSEEK_API_KEY']),
  mistral: Object.assign(openai('https://api.mistral.ai/v1', ['MISTRAL_API_KEY']), { streamOptions: false as const }),
  fireworks_ai: openai('https://api.fireworks.ai/inference/v1', ['FIREWORKS_API_KEY', 'FIREWORKS_AI_API_KEY', 'FIREWORKSAI_API_KEY']),
  xai: openai('https://api.x.ai/v1', ['XAI_API_KEY']),
  openrouter: openai('https://openrouter.ai/api/v1', ['OPENROUTER_API_KEY', 'OR_API_KEY']),
  perplexity: openai('https://api.perplexity.ai', ['PERPLEXITYAI_API_KEY', 'PERPLEXITY_API_KEY']),
  gemini: openai('https://generativelanguage.googleapis.com/v1beta/openai', ['GEMINI_API_KEY']),
};

/** The provider prefixes Triage has an adapter for. */
export const CALLABLE_PROVIDERS: readonly string[] = Object.keys(PROVIDERS);

export function providerSpec(provider: string): ProviderSpec | undefined {
  return Object.hasOwn(PROVIDERS, provider) ? PROVIDERS[provider] : undefined;
}

/** The first non-empty value among `names` in `env`. */
export function firstEnv(env: NodeJS.ProcessEnv, names: readonly string[] | undefined): string | undefined {
  for (const name of names ?? []) {
    const value = env[name];
    if (value !== undefined && value !== '') return value;
  }
  return undefined;
}
