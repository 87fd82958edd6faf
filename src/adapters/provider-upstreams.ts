/**
 * The upstream for a deployment by its provider's wire format (providers.ts): Anthropic's Messages
 * API, or OpenAI's chat completions for every other provider (openai, azure, azure_ai, the
 * OpenAI-compatible families, and unknown prefixes, which load with a warning).
 */
import { AnthropicUpstream } from './anthropic-upstream.js';
import { OpenAIUpstream } from './openai-upstream.js';
import { providerSpec } from './providers.js';
import type { UpstreamFactory } from '../core/upstream.js';

/** `defaultMaxTokens`: router_settings.default_max_tokens, Anthropic's required max_tokens when a request sets none. */
export function providerUpstreamFactory(defaultMaxTokens: number): UpstreamFactory {
  return (deployment) => (providerSpec(deployment.provider)?.wire === 'anthropic' ? new AnthropicUpstream(deployment, defaultMaxTokens) : new OpenAIUpstream(deployment));
}
