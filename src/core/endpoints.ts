/**
 * The OpenAI endpoints Triage queues, and which of them a model group serves. A group's `mode`
 * comes from its deployments' `model_info.mode`, as in LiteLLM (`chat`, `embedding`, `responses`,
 * `completion`); without one a group is a chat group. A chat model also answers the Responses API
 * (passed through, or translated to chat for providers that only speak chat) and legacy text
 * completions (OpenAI-compatible servers such as vLLM serve both for any model).
 */

export type Endpoint = 'chat' | 'responses' | 'embeddings' | 'completions';

export type ModelMode = 'chat' | 'embedding' | 'responses' | 'completion';

export const MODEL_MODES: readonly ModelMode[] = ['chat', 'embedding', 'responses', 'completion'];

/** LiteLLM modes Triage does not serve: such deployments are skipped with a warning (config-callable.ts). */
export const UNSERVED_MODES: readonly string[] = ['image_generation', 'audio_transcription', 'audio_speech', 'moderation', 'rerank', 'batch', 'realtime', 'ocr', 'search', 'video_generation'];

export const MODE_ENDPOINTS: Readonly<Record<ModelMode, readonly Endpoint[]>> = {
  chat: ['chat', 'responses', 'completions'],
  responses: ['responses'],
  embedding: ['embeddings'],
  completion: ['completions'],
};

/** The gateway's paths for each endpoint: LiteLLM's `/queue/...` names, the bare ones and the `/v1/...` aliases. */
export const ENDPOINT_PATHS: Readonly<Record<Endpoint, readonly string[]>> = {
  chat: ['/queue/chat/completions', '/chat/completions', '/v1/queue/chat/completions', '/v1/chat/completions'],
  responses: ['/queue/responses', '/responses', '/v1/queue/responses', '/v1/responses'],
  embeddings: ['/queue/embeddings', '/embeddings', '/v1/queue/embeddings', '/v1/embeddings'],
  completions: ['/queue/completions', '/completions', '/v1/queue/completions', '/v1/completions'],
};

/** The path under an OpenAI-compatible api_base (`…/v1`) that serves each endpoint. */
export const UPSTREAM_PATH: Readonly<Record<Endpoint, string>> = {
  chat: '/chat/completions',
  responses: '/responses',
  embeddings: '/embeddings',
  completions: '/completions',
};

/** How an error names an endpoint: its `/v1/...` path. */
export const endpointName = (endpoint: Endpoint): string => `POST ${ENDPOINT_PATHS[endpoint][3]}`;

/** The endpoints a group of this mode serves (none for a LiteLLM mode Triage does not serve). */
export function endpointsOfMode(mode: string): readonly Endpoint[] {
  return (MODE_ENDPOINTS as Record<string, readonly Endpoint[]>)[mode] ?? [];
}

/** Why `endpoint` is the wrong one for a group of `mode`, naming the one to use; undefined when it is right. */
export function wrongEndpoint(model: string, mode: string, endpoint: Endpoint): string | undefined {
  const serves = endpointsOfMode(mode);
  if (serves.includes(endpoint)) return undefined;
  const name = model.slice(0, 200);
  if (serves.length === 0) return `The model '${name}' has mode '${mode}', which Triage does not serve.`;
  return `The model '${name}' is a ${mode} model: call ${endpointName(serves[0])} instead of ${endpointName(endpoint)}.`;
}
