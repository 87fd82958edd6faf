/**
 * Which deployments Triage can call. One it cannot (a provider with no adapter, such as bedrock or
 * vertex_ai; an image-generation or audio entry; `azure/` with no deployment name) is skipped with a
 * warning naming it, never refusing the file. A group left with no deployment answers 503
 * `no_callable_deployment` with the reasons (src/model-resolver.ts).
 */
import { isAbsent, isMap, type RawMap } from './config-checks.js';
import { MODEL_MODES, UNSERVED_MODES } from '../core/endpoints.js';
import { CALLABLE_PROVIDERS } from './providers.js';


/** LiteLLM's reading of `provider/model`: an unprefixed model is OpenAI's. */
export function splitModel(model: string): { provider: string; upstreamModel: string } {
  const slash = model.indexOf('/');
  return slash >= 0 ? { provider: model.slice(0, slash), upstreamModel: model.slice(slash + 1) } : { provider: 'openai', upstreamModel: model };
}

/** Why a deployment cannot be called, or undefined when it can. `params` and `info` are the raw maps. */
export function skipReason(params: RawMap, info: RawMap | undefined): string | undefined {
  const mode = info !== undefined && isMap(info) ? info.mode : undefined;
  if (typeof mode === 'string' && UNSERVED_MODES.includes(mode)) return `model_info.mode ${JSON.stringify(mode)} is not served by Triage (${MODEL_MODES.join(', ')})`;
  if (!isAbsent(params.mock_response)) return undefined;
  const model = params.model;
  if (typeof model !== 'string' || model.trim() === '') return undefined; // the loader reports it
  const { provider, upstreamModel } = splitModel(model);
  if (!CALLABLE_PROVIDERS.includes(provider)) return `provider ${JSON.stringify(provider)} has no adapter in Triage (callable: ${CALLABLE_PROVIDERS.join(', ')})`;
  if (upstreamModel.trim() === '') return `model ${JSON.stringify(model)} names no ${provider} model`;
  return undefined;
}
