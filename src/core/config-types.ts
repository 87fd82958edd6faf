/**
 * The validated, normalized configuration Triage runs on. The YAML a user writes follows LiteLLM's
 * format (snake_case, seconds); everything here is already checked, defaulted and in milliseconds, so
 * the rest of the code never re-validates or converts units.
 */

export interface DeploymentLimits {
  /** Dispatches allowed in any sliding 60 s window; undefined = unlimited. */
  rpm?: number;
  /** Tokens (reserved estimate, reconciled with real usage) in any sliding 60 s window; undefined = unlimited. */
  tpm?: number;
  /** Calls in flight at once; undefined = unlimited. */
  maxParallelRequests?: number;
}

export interface DeploymentConfig {
  /** Stable id: model_info.id, else `${model_name}#${index within the group}`. */
  id: string;
  /** The group (LiteLLM `model_name`) this deployment serves. */
  modelName: string;
  /** LiteLLM `litellm_params.model`, e.g. `openai/gpt-4o-mini` or `mock/anything`. */
  model: string;
  /** Provider prefix of `model` (`openai`, `azure`, ...), or '' when none. */
  provider: string;
  /** `model` without its provider prefix: what is sent upstream as `model`. */
  upstreamModel: string;
  limits: DeploymentLimits;
  /** When set, the deployment answers with this content instead of calling an upstream. */
  mockResponse?: string;
  /** Delay before a mock answers (ms). */
  mockDelayMs: number;
  apiBase?: string;
  /** Secret: never log, echo or emit it. */
  apiKey?: string;
  /** Upstream call timeout (ms) for this deployment, overriding router_settings.request_timeout. */
  requestTimeoutMs?: number;
  /** Azure's `api-version` query parameter (always set for `azure/`: litellm_params, AZURE_API_VERSION, or the default). */
  apiVersion?: string;
  /** Secret: an Entra ID token sent as `Authorization: Bearer` instead of the `api-key` header (Azure). */
  azureAdToken?: string;
  /** false: the provider's rate-limit headers do not block the deployment (`respect_upstream_rate_limit_headers`). */
  respectUpstreamRateLimitHeaders?: false;
  /** `model_info.mode` (LiteLLM): chat, embedding, responses, completion; undefined = chat (src/core/endpoints.ts). */
  mode?: string;
  /** `mock_response` was written as an object: mockResponse holds its JSON text (structured outputs). */
  mockResponseIsJson?: boolean;
  /** `litellm_params.mock_tool_calls`: the tool calls a mock answers with when the request offers tools. */
  mockToolCalls?: MockToolCall[];
  /** `litellm_params.forward_priority`: send the request's priority upstream as `priority` (vLLM's field). */
  forwardPriority?: boolean;
  /** `model_info.output_vector_size` (LiteLLM): a mock embedding's dimensions when the request names none. */
  embeddingDimensions?: number;
}

/** One tool call as chat completions return it (arguments as JSON text). */
export interface MockToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

export interface ModelGroupConfig {
  name: string;
  deployments: DeploymentConfig[];
}

export interface VirtualKeyConfig {
  /** Secret: never log, echo or emit it. */
  key: string;
  /** Display name used in logs, events and metrics instead of the key. */
  name: string;
  /** Model groups this key may call; undefined = all. */
  models?: string[];
  /** Best (lowest) priority this key may claim; a better one is clamped to this. */
  maxPriority?: number;
  /** Requests per minute allowed to this key across all models; undefined = unlimited. */
  rpm?: number;
}

export interface RedisNode {
  host: string;
  port: number;
}

export interface RedisExtras {
  /** Cluster start-up nodes: the store runs on a Redis Cluster. */
  clusterNodes?: RedisNode[];
  username?: string;
  db?: number;
  /** TLS on (also implied by a rediss:// URL). */
  ssl?: boolean;
  /** A PEM file of CA certificates to trust instead of the system CAs. */
  sslCaCerts?: string;
}

export interface RedisSettings extends RedisExtras {
  url?: string;
  host?: string;
  port?: number;
  password?: string;
  /** Key prefix for everything Triage stores (default `triage`). */
  prefix: string;
  /** Instance lease, ms (`redis_lease_seconds`); undefined = the store's default, 4 s. */
  leaseMs?: number;
}

/** One bound: waiters of priority >= minPriority hold at most maxWaiting places. */
export interface QueueBound {
  minPriority: number;
  maxWaiting: number;
}

export interface RouterSettings {
  routingStrategy: string;
  /** Fallback re-check period for shared (Redis) state, ms. LiteLLM default 0.03 s. */
  pollingIntervalMs: number;
  /** Default queue-wait deadline, ms. */
  queueTimeoutMs: number;
  /** Default upstream call timeout, ms. */
  requestTimeoutMs: number;
  defaultPriority: number;
  minPriority: number;
  maxPriority: number;
  cooldownTimeMs: number;
  allowedFails: number;
  numRetries: number;
  /** Waiting requests per model group before new ones get 429 queue_full. */
  maxQueueSize: number;
  /** Concrete models one wildcard entry (`model_name: "*"`) may create queues for (`max_wildcard_models`); absent: 100. */
  maxWildcardModels?: number;
  /** Per-priority bounds within it (config-queue-bounds.ts); absent when not set. */
  maxQueueSizeByPriority?: QueueBound[];
  /** Aging interval in ms; undefined = aging off. */
  priorityAgingMs?: number;
  /** Completion tokens assumed for the tpm reservation when a request sets no max_tokens. */
  defaultMaxTokens: number;
  redis?: RedisSettings;
}

export interface GeneralSettings {
  /** Secret: never log, echo or emit it. */
  masterKey?: string;
  keys: VirtualKeyConfig[];
  /** Largest accepted request body, bytes. */
  maxRequestBodyBytes: number;
  /** Serve /metrics without a key even when keys are configured. */
  publicMetrics: boolean;
  /** Collect and serve Prometheus metrics (`enable_metrics`, default true). */
  metrics: boolean;
  /** Grace period for dispatched calls on shutdown, ms. */
  shutdownGraceMs: number;
  /** Client-facing server timeouts given in general_settings; absent ones keep DEFAULT_SERVER_TIMEOUTS (src/server/app.ts). */
  clientTimeouts?: ClientTimeoutSettings;
}

/** The server timeouts a config may set (ms), named as in ServerTimeouts (src/server/app.ts). */
export interface ClientTimeoutSettings {
  /** `client_request_timeout_seconds`: headers and body must arrive within this. */
  requestTimeoutMs?: number;
  /** `client_headers_timeout_seconds`: headers must arrive within this. */
  headersTimeoutMs?: number;
  /** `keep_alive_timeout_seconds`: an idle keep-alive connection is closed after this. */
  keepAliveTimeoutMs?: number;
  /** `stream_stall_timeout_seconds`: a streamed answer's stalled reader is waited for this long. */
  streamStallMs?: number;
}

export interface TriageConfig {
  modelGroups: ModelGroupConfig[];
  router: RouterSettings;
  general: GeneralSettings;
  /**
   * Groups whose model_name is a pattern (`*`, `anthropic/*`): each requested model that matches gets
   * a group of its own, created on first use (src/model-resolver.ts). Their deployments' `model` may
   * hold `*` too, replaced by what the pattern's `*` matched.
   */
  wildcards?: ModelGroupConfig[];
  /** `router_settings.model_group_alias`: names that answer as another group. */
  aliases?: ModelAlias[];
  /** Groups every deployment of which was skipped (Triage cannot call them): answered 503 with the reason. */
  unavailableGroups?: UnavailableGroup[];
}

export interface ModelAlias {
  name: string;
  /** The model name it answers as (a group, or a name a wildcard matches). */
  target: string;
  /** LiteLLM's `{model: x, hidden: true}`: served, but not listed by /v1/models. */
  hidden: boolean;
}

export interface UnavailableGroup {
  name: string;
  /** Why no deployment of it can be called, naming the skipped deployments. */
  reason: string;
}

export interface ConfigIssue {
  /** Dotted path into the YAML, e.g. `model_list[0].litellm_params.rpm`. */
  path: string;
  message: string;
}

/** Thrown with every problem found at once; the process refuses to start on it. */
export class ConfigError extends Error {
  readonly issues: ConfigIssue[];
  constructor(issues: ConfigIssue[]) {
    super(`invalid config:\n${issues.map((i) => `  ${i.path}: ${i.message}`).join('\n')}`);
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

export interface LoadedConfig {
  config: TriageConfig;
  /** Unknown keys and ignored settings, each naming its path. */
  warnings: ConfigIssue[];
}
