/**
 * A corpus of configs written in LiteLLM's documented styles (test/fixtures/litellm-configs): per file,
 * the deployments Triage builds with their provider, upstream model, endpoint and limits; the groups
 * it skips and why; every warning by path; and for the files it must refuse, each refusal by path.
 * A file that loads must load with exactly these warnings: a new silent difference fails here.
 */
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadConfigFile } from '../src/adapters/config-loader.js';
import { ConfigError, type DeploymentConfig, type LoadedConfig } from '../src/core/config-types.js';

const DIR = fileURLToPath(new URL('./fixtures/litellm-configs/', import.meta.url));

/** Variables a deployment of the corpus reads; the ones a file leaves unset are left out on purpose. */
const SET = ['OPENAI_API_KEY', 'AZURE_API_KEY', 'AZURE_API_KEY_EU', 'AZURE_API_KEY_CA', 'ANTHROPIC_API_KEY', 'GROQ_API_KEY', 'TOGETHERAI_API_KEY', 'DEEPSEEK_API_KEY', 'XAI_API_KEY', 'MISTRAL_API_KEY', 'OPENROUTER_API_KEY', 'GEMINI_API_KEY', 'PERPLEXITYAI_API_KEY', 'FIREWORKS_API_KEY', 'AZURE_AI_API_KEY', 'LITELLM_MASTER_KEY', 'REDIS_PASSWORD'];
function environment(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = Object.fromEntries(SET.map((k) => [k, `secret-${k.toLowerCase()}`]));
  return { ...env, AZURE_API_BASE: 'https://example.openai.azure.com/', AZURE_API_VERSION: '2024-06-01', REDIS_HOST: 'redis.internal', REDIS_PORT: '6380' };
}

/** `group | id provider:upstreamModel endpoint-or-mock limits`, one line per deployment. */
function describeDeployment(d: DeploymentConfig): string {
  const limits = [d.limits.rpm && `rpm=${d.limits.rpm}`, d.limits.tpm && `tpm=${d.limits.tpm}`, d.limits.maxParallelRequests && `parallel=${d.limits.maxParallelRequests}`].filter(Boolean).join(' ');
  return `${d.modelName} | ${d.id} ${d.provider}:${d.upstreamModel} ${d.mockResponse !== undefined ? `mock "${d.mockResponse}"` : d.apiBase}${limits ? ` ${limits}` : ''}`;
}

const deployments = (loaded: LoadedConfig) => [...loaded.config.modelGroups, ...(loaded.config.wildcards ?? [])].flatMap((g) => g.deployments.map(describeDeployment));

interface Expectation {
  deployments?: string[];
  /** Skipped groups (503 no_callable_deployment) and a pattern of their reason. */
  unavailable?: Record<string, RegExp>;
  /** Every warning's path, in order, and a pattern its message must match. */
  warnings?: Array<[string, RegExp]>;
  /** The file is refused: each issue's path and a pattern of its message. */
  refused?: Array<[string, RegExp]>;
  /** Started with --allow-unenforced-auth. */
  allowUnenforcedAuth?: boolean;
  check?: (loaded: LoadedConfig, env: NodeJS.ProcessEnv) => void;
}

const IGNORED = /unknown key; ignored/;
const MODULE_SETTING = /a LiteLLM module setting Triage does not use; ignored/;
const UNSET_IGNORED = (name: string) => new RegExp(`environment variable ${name} is not set \\(Triage does not use this setting`);
const NO_ADAPTER = (provider: string) => new RegExp(`skipped: provider "${provider}" has no adapter in Triage \\(callable: openai, azure, `);
const REFUSED = /Triage does not implement it and refuses to start .*--allow-unenforced-auth/;

const CORPUS: Record<string, Expectation> = {
  '01-openai-quickstart.yaml': {
    deployments: ['gpt-4o | gpt-4o#0 openai:gpt-4o https://api.openai.com/v1 rpm=500 tpm=30000'],
    warnings: [],
    check: ({ config }) => {
      expect(config.modelGroups[0].deployments[0].apiKey).toBe('secret-openai_api_key');
      expect(config.general.masterKey).toBe('sk-1234');
    },
  },
  '02-azure-load-balancing.yaml': {
    deployments: [
      'gpt-4o | gpt-4o#0 azure:gpt-4o-eu https://my-endpoint-europe-berri-992.openai.azure.com rpm=6',
      'gpt-4o | gpt-4o#1 azure:gpt-4o-ca https://my-endpoint-canada-berri992.openai.azure.com rpm=6',
      'gpt-4o | gpt-4o#2 openai:gpt-4o https://api.openai.com/v1 rpm=1440',
    ],
    warnings: [['router_settings.routing_strategy', /"usage-based-routing-v2" is accepted, but Triage always routes to the least-loaded deployment/]],
    check: ({ config }) => expect(config.router).toMatchObject({ numRetries: 2, queueTimeoutMs: 30_000 }),
  },
  '03-deployment-level-limits.yaml': {
    // rpm 3 beside litellm_params beats litellm_params' 100 and model_info's 1000; tpm likewise; the
    // parallel limit is only in litellm_params and model_info, and litellm_params wins.
    deployments: [
      'gpt-3.5-turbo | primary openai:gpt-3.5-turbo https://api.openai.com/v1 rpm=3 tpm=1000 parallel=4',
      'gpt-3.5-turbo | gpt-3.5-turbo#1 azure:chatgpt-v-2 https://example.openai.azure.com tpm=240000 parallel=2',
    ],
    warnings: [],
  },
  '04-model-info-limits.yaml': {
    deployments: ['claude-3-haiku | haiku-main anthropic:claude-3-haiku-20240307 https://api.anthropic.com rpm=50 tpm=50000'],
    warnings: [],
  },
  '05-yaml11-scalars.yaml': {
    deployments: ['n | n#0 openai:gpt-4o-mini https://api.openai.com/v1 rpm=1000 tpm=20000 parallel=16'],
    warnings: [],
    check: ({ config }) => expect(config.general).toMatchObject({ publicMetrics: true, metrics: true }),
  },
  '06-duplicate-keys.yaml': {
    deployments: ['gpt-4o | gpt-4o#0 openai:gpt-4o https://api.openai.com/v1 rpm=60'],
    warnings: [
      ['model_list[0].litellm_params.rpm', /key given more than once; the last value is used, as in LiteLLM \(line 7 of .*06-duplicate-keys\.yaml\)/],
      ['router_settings', /key given more than once; the last value is used, as in LiteLLM \(line 10 of /],
    ],
    check: ({ config }) => expect(config.router.numRetries).toBe(5),
  },
  '07-vllm-empty-key.yaml': {
    deployments: [
      'llama-3-8b | llama-3-8b#0 hosted_vllm:meta-llama/Meta-Llama-3-8B-Instruct http://vllm.internal:8000/v1 parallel=16',
      'opt | opt#0 vllm:facebook/opt-125m http://vllm.internal:8001/v1',
    ],
    warnings: [],
    check: ({ config }) => expect(config.modelGroups.map((g) => g.deployments[0].apiKey)).toEqual([undefined, undefined]),
  },
  '08-anthropic.yaml': {
    deployments: ['claude-3-5-sonnet | claude-3-5-sonnet#0 anthropic:claude-3-5-sonnet-20240620 https://api.anthropic.com rpm=50 tpm=40000'],
    warnings: [['model_list[0].litellm_params.max_tokens', /LiteLLM adds it to every call of this deployment; Triage sends the caller's body as it is, so it is not applied/]],
  },
  '09-ollama.yaml': {
    deployments: ['llama3 | llama3#0 ollama_chat:llama3 http://localhost:11434'],
    unavailable: { llama2: /^model_list\[1\] provider "ollama" has no adapter/ },
    warnings: [['model_list[1]', NO_ADAPTER('ollama')]],
  },
  '10-groq-together-deepseek.yaml': {
    deployments: [
      'llama3-70b | llama3-70b#0 groq:llama3-70b-8192 https://api.groq.com/openai/v1 rpm=30',
      'mixtral | mixtral#0 together_ai:mistralai/Mixtral-8x7B-Instruct-v0.1 https://api.together.xyz/v1',
      'deepseek-chat | deepseek-chat#0 deepseek:deepseek-chat https://api.deepseek.com/v1',
    ],
    warnings: [],
  },
  '11-bedrock-vertex.yaml': {
    deployments: ['gpt-4o | gpt-4o#0 openai:gpt-4o https://api.openai.com/v1'],
    unavailable: { 'claude-bedrock': /provider "bedrock" has no adapter/, 'gemini-pro': /provider "vertex_ai" has no adapter/ },
    warnings: [
      ['model_list[0]', NO_ADAPTER('bedrock')],
      ['model_list[1]', NO_ADAPTER('vertex_ai')],
      ['model_list[0].litellm_params.aws_access_key_id', UNSET_IGNORED('AWS_ACCESS_KEY_ID')],
      ['model_list[0].litellm_params.aws_secret_access_key', UNSET_IGNORED('AWS_SECRET_ACCESS_KEY')],
      ['model_list[1].litellm_params.vertex_credentials', UNSET_IGNORED('VERTEX_CREDENTIALS')],
    ],
  },
  '12-image-and-audio.yaml': {
    deployments: ['gpt-4o | gpt-4o#0 azure:gpt-4o https://openai-gpt-4-test-v-1.openai.azure.com'],
    unavailable: { 'dall-e-3': /model_info\.mode "image_generation" is not served/, 'dall-e-2': /model "azure\/" names no azure model/, whisper: /model_info\.mode "audio_transcription" is not served/ },
    warnings: [
      ['model_list[0]', /deployment of "dall-e-3" skipped: model_info\.mode "image_generation"/],
      ['model_list[1]', /deployment of "dall-e-2" skipped: model "azure\/" names no azure model/],
      ['model_list[2]', /deployment of "whisper" skipped: model_info\.mode "audio_transcription"/],
    ],
  },
  '13-wildcard-openai.yaml': {
    deployments: ['* | *#0 openai:* https://api.openai.com/v1 rpm=100'],
    warnings: [],
    check: ({ config }) => expect(config.modelGroups).toEqual([]),
  },
  '14-wildcard-providers.yaml': {
    deployments: [
      'anthropic/claude-3-haiku-20240307 | anthropic/claude-3-haiku-20240307#0 anthropic:claude-3-haiku-20240307 https://api.anthropic.com rpm=5',
      'anthropic/* | anthropic/*#0 anthropic:* https://api.anthropic.com',
      'groq/* | groq/*#0 groq:* https://api.groq.com/openai/v1 tpm=6000',
    ],
    warnings: [],
  },
  '15-model-group-alias.yaml': {
    deployments: ['gpt-4o-mini | gpt-4o-mini#0 openai:gpt-4o-mini https://api.openai.com/v1'],
    warnings: [],
    check: ({ config }) =>
      expect(config.aliases).toEqual([
        { name: 'gpt-3.5-turbo', target: 'gpt-4o-mini', hidden: false },
        { name: 'gpt-4', target: 'gpt-4o-mini', hidden: true },
      ]),
  },
  '16-include.yaml': {
    deployments: [
      'gpt-4o | gpt-4o#0 openai:gpt-4o https://exampleopenaiendpoint-production.up.railway.app',
      'fake-anthropic-endpoint | fake-anthropic-endpoint#0 anthropic:fake https://exampleanthropicendpoint-production.up.railway.app',
    ],
    warnings: [['litellm_settings.callbacks', MODULE_SETTING]],
  },
  '17-include-missing.yaml': { refused: [['include', /cannot read included file .*included\/not-there\.yaml: file not found/]] },
  '18-include-recursive.yaml': { refused: [['include[0]', /included file .*18-include-recursive\.yaml has an include of its own/]] },
  '19-credentials.yaml': {
    // The second deployment's own api_base wins over the credential's.
    deployments: ['gpt-4o | gpt-4o#0 azure:gpt-4o https://example.openai.azure.com rpm=60', 'gpt-4o | gpt-4o#1 azure:gpt-4o-east https://east.openai.azure.com'],
    warnings: [],
    check: ({ config }) => expect(config.modelGroups[0].deployments.map((d) => d.apiKey)).toEqual(['secret-azure_api_key', 'secret-azure_api_key']),
  },
  '20-credential-unknown.yaml': { refused: [['model_list[0].litellm_params.litellm_credential_name', /no credential_list entry is named "azure_us"; credential_list defines: "azure_eu"/]] },
  '21-environment-variables.yaml': {
    deployments: ['gpt-4o | gpt-4o#0 openai:gpt-4o https://api.openai.com/v1', 'local | local#0 hosted_vllm:qwen http://vllm.internal:8000/v1'],
    warnings: [['environment_variables.REDIS_PORT', /replaces the value REDIS_PORT already had in the environment \(as LiteLLM does\)/]],
    check: ({ config }, env) => {
      expect(config.modelGroups[0].deployments[0].apiKey).toBe('sk-from-the-config-file');
      expect(env).toMatchObject({ OPENAI_KEY_FROM_CONFIG: 'sk-from-the-config-file', REDIS_PORT: '6379', LITELLM_LOG: 'DEBUG' });
    },
  },
  '22-litellm-settings.yaml': {
    deployments: ['gpt-4o | gpt-4o#0 openai:gpt-4o https://api.openai.com/v1'],
    warnings: [
      ['litellm_settings.drop_params', MODULE_SETTING],
      ['litellm_settings.set_verbose', MODULE_SETTING],
      ['litellm_settings.success_callback', MODULE_SETTING],
      ['litellm_settings.cache', MODULE_SETTING],
      ['litellm_settings.cache_params', MODULE_SETTING],
    ],
    check: ({ config }) => expect(config.router).toMatchObject({ requestTimeoutMs: 45_000, numRetries: 4 }),
  },
  '23-guardrails.yaml': {
    deployments: ['gpt-4o | gpt-4o#0 openai:gpt-4o https://api.openai.com/v1'],
    warnings: [
      ['guardrails', IGNORED],
      ['litellm_settings.callbacks', MODULE_SETTING],
      ['litellm_settings.langfuse_public_key', MODULE_SETTING],
      ['guardrails[0].litellm_params.api_key', UNSET_IGNORED('LAKERA_API_KEY')],
      ['guardrails[0].litellm_params.api_base', UNSET_IGNORED('LAKERA_API_BASE')],
      ['litellm_settings.langfuse_public_key', UNSET_IGNORED('LANGFUSE_PUBLIC_KEY')],
    ],
  },
  '24-router-settings.yaml': {
    // default_max_parallel_requests goes only to the deployment with no limit of its own, as in LiteLLM.
    deployments: ['gpt-4o | gpt-4o#0 openai:gpt-4o https://api.openai.com/v1 rpm=100', 'gpt-4o | gpt-4o#1 azure:gpt-4o https://eastus.openai.azure.com parallel=10'],
    warnings: [
      ['router_settings.enable_pre_call_checks', IGNORED],
      ['router_settings.fallbacks', IGNORED],
      ['router_settings.routing_strategy', /"simple-shuffle" is accepted/],
    ],
    check: ({ config }) =>
      expect(config.router).toMatchObject({ numRetries: 3, queueTimeoutMs: 30_000, allowedFails: 3, cooldownTimeMs: 30_000, redis: { host: 'redis.internal', port: 6380, password: 'secret-redis_password' } }),
  },
  '25-general-settings-db.yaml': {
    deployments: ['gpt-4o | gpt-4o#0 openai:gpt-4o https://api.openai.com/v1'],
    warnings: [
      ['general_settings.database_url', IGNORED],
      ['general_settings.store_model_in_db', IGNORED],
      ['general_settings.alerting', IGNORED],
      ['general_settings.database_url', UNSET_IGNORED('DATABASE_URL')],
    ],
    check: ({ config }) => expect(config.general.masterKey).toBe('secret-litellm_master_key'),
  },
  '26-jwt-auth.yaml': { refused: [['general_settings.enable_jwt_auth', REFUSED], ['general_settings.litellm_jwtauth', REFUSED]] },
  '27-custom-auth.yaml': { refused: [['general_settings.custom_auth', REFUSED]] },
  '28-allowed-routes.yaml': { refused: [['general_settings.allowed_routes', REFUSED], ['general_settings.litellm_key_header_name', REFUSED]] },
  '29-jwt-auth-off.yaml': { deployments: ['gpt-4o | gpt-4o#0 openai:gpt-4o https://api.openai.com/v1'], warnings: [] },
  '30-mock-responses.yaml': {
    deployments: ['fake-openai-endpoint | fake-openai-endpoint#0 openai:fake mock "Hello from the mock" rpm=1000', 'rate-limited | rate-limited#0 openai:gpt-3.5-turbo mock "litellm.RateLimitError"'],
    warnings: [],
    check: ({ config }) => expect(config.modelGroups[0].deployments[0].mockDelayMs).toBe(500),
  },
  '31-unprefixed-models.yaml': {
    deployments: ['gpt-3.5-turbo | gpt-3.5-turbo#0 openai:gpt-3.5-turbo https://api.openai.com/v1', 'gpt-4-turbo | gpt-4-turbo#0 openai:gpt-4-turbo-preview https://openai-proxy.internal/v1'],
    warnings: [],
  },
  '32-openai-compatible.yaml': {
    deployments: [
      'my-model | my-model#0 openai:my-model http://0.0.0.0:8080/v1',
      'opt-125m | opt-125m#0 openai_compatible:facebook/opt-125m https://my-endpoint.example.com/v1',
      'custom | custom#0 custom_openai:my-tuned-model https://custom.example.com/v1',
    ],
    warnings: [],
  },
  '33-production-mix.yaml': {
    deployments: [
      'gpt-4o | gpt-4o#0 azure:gpt-4o-prod https://example.openai.azure.com rpm=480 tpm=80000',
      'gpt-4o | gpt-4o#1 openai:gpt-4o https://api.openai.com/v1 rpm=500',
      'claude | claude#0 anthropic:claude-3-5-sonnet-20240620 https://api.anthropic.com',
      'embedding | embedding#0 openai:text-embedding-3-small https://api.openai.com/v1',
    ],
    warnings: [
      ['model_list[0].litellm_params.stream_timeout', /a LiteLLM deployment setting Triage does not use; ignored/],
      ['router_settings.fallbacks', IGNORED],
      ['router_settings.context_window_fallbacks', IGNORED],
      ['router_settings.routing_strategy', /"least-busy" is accepted/],
      ['litellm_settings.max_budget', MODULE_SETTING],
      ['litellm_settings.budget_duration', MODULE_SETTING],
      ['litellm_settings.success_callback', MODULE_SETTING],
      ['general_settings.proxy_batch_write_at', IGNORED],
    ],
    check: ({ config }) => expect(config.modelGroups[0].deployments[0].requestTimeoutMs).toBe(60_000),
  },
  '34-more-providers.yaml': {
    deployments: [
      'grok | grok#0 xai:grok-2-latest https://api.x.ai/v1',
      'mistral-large | mistral-large#0 mistral:mistral-large-latest https://api.mistral.ai/v1',
      'openrouter-llama | openrouter-llama#0 openrouter:meta-llama/llama-3-70b-instruct https://openrouter.ai/api/v1',
      'gemini-flash | gemini-flash#0 gemini:gemini-1.5-flash https://generativelanguage.googleapis.com/v1beta/openai',
      'sonar | sonar#0 perplexity:sonar https://api.perplexity.ai',
      'fireworks-llama | fireworks-llama#0 fireworks_ai:accounts/fireworks/models/llama-v3-70b-instruct https://api.fireworks.ai/inference/v1',
    ],
    unavailable: { cohere: /provider "cohere" has no adapter/ },
    warnings: [
      ['model_list[6]', NO_ADAPTER('cohere')],
      ['model_list[6].litellm_params.api_key', UNSET_IGNORED('COHERE_API_KEY')],
    ],
  },
  '35-azure-ai.yaml': { deployments: ['mistral-azure | mistral-azure#0 azure_ai:mistral-large-latest https://my-endpoint.eastus2.inference.ai.azure.com rpm=20'], warnings: [] },
  '36-missing-secret-where-read.yaml': {
    refused: [
      ['model_list[0].litellm_params.api_key', /^environment variable NOT_SET_OPENAI_KEY is not set$/],
      ['general_settings.master_key', /^environment variable NOT_SET_MASTER_KEY is not set$/],
    ],
  },
  '37-include-override.yaml': {
    deployments: ['gpt-4o | gpt-4o#0 openai:gpt-4o https://api.openai.com/v1', 'gpt-4o | gpt-4o#1 openai:gpt-4o-2024-08-06 https://api.openai.com/v1'],
    warnings: [['router_settings', /set in the main config and again in included file .*included\/settings\.yaml; the included file's value replaces it, as in LiteLLM/]],
    check: ({ config }) => expect(config.router).toMatchObject({ numRetries: 6, queueTimeoutMs: 12_000 }),
  },
  // The refused auth files start with --allow-unenforced-auth, each setting then a warning.
  '26-jwt-auth.yaml --allow-unenforced-auth': {
    allowUnenforcedAuth: true,
    deployments: ['gpt-4o | gpt-4o#0 openai:gpt-4o https://api.openai.com/v1'],
    warnings: [
      ['general_settings.enable_jwt_auth', /asks LiteLLM to accept and check JWTs; Triage does not, and runs without it \(--allow-unenforced-auth\)/],
      ['general_settings.litellm_jwtauth', /runs without it/],
    ],
    check: ({ config }) => expect(config.general.masterKey).toBe('sk-1234'),
  },
  '28-allowed-routes.yaml --allow-unenforced-auth': {
    allowUnenforcedAuth: true,
    deployments: ['gpt-4o | gpt-4o#0 openai:gpt-4o https://api.openai.com/v1'],
    warnings: [
      ['general_settings.allowed_routes', /runs without it/],
      ['general_settings.litellm_key_header_name', /runs without it/],
      ['general_settings.public_routes', IGNORED],
    ],
  },
};

function load(name: string, expectation: Expectation, env: NodeJS.ProcessEnv): LoadedConfig {
  const file = name.split(' ')[0];
  return loadConfigFile(`${DIR}${file}`, env, { allowUnenforcedAuth: expectation.allowUnenforcedAuth === true });
}

describe('LiteLLM config corpus', () => {
  it('has an expectation for every file and at least 30 files', () => {
    const files = readdirSync(DIR).filter((f) => f.endsWith('.yaml')).sort();
    expect(files.length).toBeGreaterThanOrEqual(30);
    expect(files).toEqual([...new Set(Object.keys(CORPUS).map((k) => k.split(' ')[0]))].sort());
  });

  for (const [name, expectation] of Object.entries(CORPUS)) {
    it(name, () => {
      const env = environment();
      if (expectation.refused) {
        let error: unknown;
        try {
          load(name, expectation, env);
        } catch (e) {
          error = e;
        }
        expect(error).toBeInstanceOf(ConfigError);
        const issues = (error as ConfigError).issues;
        expect(issues.map((i) => i.path)).toEqual(expectation.refused.map(([path]) => path));
        issues.forEach((issue, i) => expect(issue.message).toMatch(expectation.refused![i][1]));
        return;
      }
      const loaded = load(name, expectation, env);
      expect(deployments(loaded)).toEqual(expectation.deployments);
      const unavailable = Object.fromEntries((loaded.config.unavailableGroups ?? []).map((g) => [g.name, g.reason]));
      expect(Object.keys(unavailable)).toEqual(Object.keys(expectation.unavailable ?? {}));
      for (const [group, reason] of Object.entries(expectation.unavailable ?? {})) expect(unavailable[group]).toMatch(reason);
      expect(loaded.warnings.map((w) => w.path)).toEqual((expectation.warnings ?? []).map(([path]) => path));
      loaded.warnings.forEach((w, i) => expect(w.message).toMatch(expectation.warnings![i][1]));
      // No secret the environment holds shows in a warning.
      for (const w of loaded.warnings) expect(`${w.path} ${w.message}`).not.toMatch(/secret-/);
      expectation.check?.(loaded, env);
    });
  }
});
