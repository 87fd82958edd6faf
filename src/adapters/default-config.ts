/**
 * The config Triage runs with when none is given: mock model groups (two chat, one embedding), so the
 * gateway, its queue, its rate limits and every endpoint can be tried without any upstream or API key. The YAML doubles as a starter file.
 */
import { parseConfig } from './config-loader.js';
import type { LoadedConfig } from '../core/config-types.js';

export const DEFAULT_CONFIG_YAML = `# Triage configuration (LiteLLM proxy format).
#
# Triage queues chat-completion requests by priority (lower number = served first) in front of
# rate-limited deployments, instead of answering 429. This starter file needs no upstream and no API
# key: the model groups below are mocks (the chat ones answer with a fixed text).
#
# Any string written exactly as os.environ/NAME is replaced by the environment variable NAME.
# Durations are in seconds, as in LiteLLM.

model_list:
  # A fast mock without limits: requests are answered after 50 ms.
  - model_name: triage-mock
    litellm_params:
      model: mock/triage-mock
      mock_response: "Hello from Triage!"
      mock_delay: 0.05

  # A slow, rate-limited mock: at most 60 requests per minute and 2 in flight at once. Send it more
  # than that and the extra requests wait in the queue, best priority first.
  - model_name: triage-mock-limited
    litellm_params:
      model: mock/triage-mock-limited
      mock_response: "Hello from a rate-limited deployment."
      mock_delay: 0.5
      rpm: 60
      max_parallel_requests: 2

  # A mock embedding model (/v1/embeddings): deterministic vectors of 8 dimensions (unless the request
  # asks for \`dimensions\`). model_info.mode says which endpoint a group serves; mock_response marks
  # a mock (its text is unused for embeddings).
  - model_name: triage-mock-embedding
    litellm_params:
      model: mock/triage-mock-embedding
      mock_response: ""
      mock_delay: 0.02
    model_info: { mode: embedding, output_vector_size: 8 }

  # A real upstream looks like this (any OpenAI-compatible API: openai, azure, hosted_vllm, ...):
  # - model_name: gpt-4o-mini
  #   litellm_params:
  #     model: openai/gpt-4o-mini
  #     api_key: os.environ/OPENAI_API_KEY
  #     rpm: 500
  #     tpm: 200000

router_settings:
  # Priority range a request may ask for, and the priority of requests that do not ask.
  default_priority: 0
  min_priority: 0
  max_priority: 1000
  # Longest a request waits in the queue before it times out (seconds).
  timeout: 600
  # Waiting requests per model group before new ones are refused with 429.
  max_queue_size: 10000
  # Share the queue and the limits between several Triage replicas:
  # redis_url: os.environ/REDIS_URL

# general_settings:
#   # Without a master key (or TRIAGE_MASTER_KEY / LITELLM_MASTER_KEY in the environment) the
#   # gateway is open to anyone who can reach it.
#   master_key: os.environ/TRIAGE_MASTER_KEY
#   keys:
#     - key: os.environ/BATCH_JOBS_KEY
#       name: batch-jobs
#       models: [triage-mock-limited]
#       max_priority: 100   # this key's requests never get a better priority than 100
`;

/**
 * Loads DEFAULT_CONFIG_YAML. The master key still comes from TRIAGE_MASTER_KEY or LITELLM_MASTER_KEY
 * in \`env\` when one is set there.
 */
export function loadDefaultConfig(env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  return parseConfig(DEFAULT_CONFIG_YAML, { env, source: 'default config' });
}
