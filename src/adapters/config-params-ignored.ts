/**
 * litellm_params keys LiteLLM knows and Triage does not apply, each warned about with what LiteLLM
 * would have done, instead of as an "unknown key" (which reads like a typo and may suggest a wrong
 * fix). Any other key still gets warnUnknownKeys' message and suggestion.
 */
import { childPath, warnUnknownKeys, type RawMap } from './config-checks.js';
import type { ConfigIssue } from '../core/config-types.js';

/** Defaults LiteLLM adds to every call of the deployment. */
const CALL_DEFAULTS = [
  'temperature', 'max_tokens', 'max_completion_tokens', 'top_p', 'frequency_penalty', 'presence_penalty', 'stop', 'seed',
  'response_format', 'n', 'extra_headers', 'extra_body', 'reasoning_effort', 'tool_choice',
];

/** LiteLLM deployment settings with no counterpart in Triage. */
const DEPLOYMENT_SETTINGS = [
  'weight', 'order', 'tags', 'stream_timeout', 'max_retries', 'num_retries', 'organization', 'region_name', 'drop_params',
  'additional_drop_params', 'input_cost_per_token', 'output_cost_per_token', 'use_in_pass_through',
  'merge_reasoning_content_in_choices', 'cache_control_injection_points', 'custom_llm_provider',
];

export function warnLitellmParams(params: RawMap, path: string, known: readonly string[], warnings: ConfigIssue[]): void {
  for (const [key, value] of Object.entries(params)) {
    if (known.includes(key)) continue;
    if (CALL_DEFAULTS.includes(key)) {
      warnings.push({ path: childPath(path, key), message: 'LiteLLM adds it to every call of this deployment; Triage sends the caller\'s body as it is, so it is not applied' });
    } else if (DEPLOYMENT_SETTINGS.includes(key)) {
      warnings.push({ path: childPath(path, key), message: 'a LiteLLM deployment setting Triage does not use; ignored' });
    } else {
      // One key at a time keeps the warnings in the file's order.
      warnUnknownKeys({ [key]: value }, path, known, warnings);
    }
  }
}
