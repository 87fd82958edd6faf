import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, expect } from 'vitest';
import { loadConfigFile, normalizeConfig, parseConfig, resolveEnvReferences } from '../src/adapters/config-loader.js';
import { ConfigError, type ConfigIssue } from '../src/core/config-types.js';
import { issuesOf } from './support/config-issues.js';
import { DEFAULT_CONFIG_YAML, loadDefaultConfig } from '../src/adapters/default-config.js';

function issueAt(issues: ConfigIssue[], path: string): ConfigIssue {
  const found = issues.find((i) => i.path === path);
  if (!found) throw new Error(`no issue at ${path}; issues: ${JSON.stringify(issues, null, 2)}`);
  return found;
}

const mockModel = (extra = '') => `
model_list:
  - model_name: m
    litellm_params:
      model: mock/m
      mock_response: hi
${extra}`;

describe('LiteLLM compatibility', () => {
  it('loads the LiteLLM proxy quick-start config (azure, os.environ references, api_version)', () => {
    const yaml = `
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: azure/my_azure_deployment
      api_base: os.environ/AZURE_API_BASE
      api_key: "os.environ/AZURE_API_KEY"
      api_version: "2025-01-01-preview"
`;
    const env = { AZURE_API_BASE: 'https://example-resource.openai.azure.com/', AZURE_API_KEY: 'azure-secret-123' };
    const { config, warnings } = parseConfig(yaml, { env });
    expect(warnings).toEqual([]);
    expect(config.modelGroups).toEqual([
      {
        name: 'gpt-4o',
        deployments: [
          {
            id: 'gpt-4o#0',
            modelName: 'gpt-4o',
            model: 'azure/my_azure_deployment',
            provider: 'azure',
            upstreamModel: 'my_azure_deployment',
            limits: {},
            mockDelayMs: 0,
            apiBase: 'https://example-resource.openai.azure.com',
            apiKey: 'azure-secret-123',
            apiVersion: '2025-01-01-preview',
          },
        ],
      },
    ]);
    expect(config.general).toEqual({ keys: [], maxRequestBodyBytes: 4194304, publicMetrics: false, metrics: true, shutdownGraceMs: 30000 });
    expect(config.router).toEqual({
      routingStrategy: 'usage-based-routing',
      pollingIntervalMs: 30,
      queueTimeoutMs: 600000,
      requestTimeoutMs: 600000,
      defaultPriority: 0,
      minPriority: 0,
      maxPriority: 1000,
      cooldownTimeMs: 5000,
      allowedFails: 3,
      numRetries: 2,
      maxQueueSize: 10000,
      defaultMaxTokens: 256,
    });
  });

  it('reads rpm/tpm/max_parallel_requests from litellm_params and from model_info, litellm_params winning', () => {
    const yaml = `
model_list:
  - model_name: gpt
    litellm_params: { model: openai/gpt-4o-mini, api_key: sk-abcdef, rpm: 10, tpm: 1000, max_parallel_requests: 3, timeout: 2.5 }
  - model_name: gpt
    litellm_params: { model: hosted_vllm/llama, api_base: "http://vllm:8000/v1", rpm: 7 }
    model_info: { id: vllm-a, rpm: 99, tpm: 5000, max_parallel_requests: 4, description: ignored silently }
  - model_name: other
    litellm_params: { model: mock/x, mock_response: ok, mock_delay: 0.07 }
    model_info: { rpm: 20 }
`;
    const { config, warnings } = parseConfig(yaml, { env: {} });
    expect(warnings).toEqual([]);
    expect(config.modelGroups.map((g) => g.name)).toEqual(['gpt', 'other']);
    const [openai, vllm] = config.modelGroups[0].deployments;
    expect(openai).toMatchObject({
      id: 'gpt#0',
      provider: 'openai',
      upstreamModel: 'gpt-4o-mini',
      apiBase: 'https://api.openai.com/v1',
      limits: { rpm: 10, tpm: 1000, maxParallelRequests: 3 },
      requestTimeoutMs: 2500,
    });
    expect(vllm).toMatchObject({ id: 'vllm-a', apiBase: 'http://vllm:8000/v1', limits: { rpm: 7, tpm: 5000, maxParallelRequests: 4 } });
    expect(config.modelGroups[1].deployments[0]).toMatchObject({
      id: 'other#0',
      mockResponse: 'ok',
      mockDelayMs: 70,
      limits: { rpm: 20 },
    });
  });

  it('numbers the deployments of each group separately, in order of appearance', () => {
    const yaml = `
model_list:
  - { model_name: a, litellm_params: { model: mock/a, mock_response: x } }
  - { model_name: b, litellm_params: { model: mock/b, mock_response: x } }
  - { model_name: a, litellm_params: { model: mock/a, mock_response: x } }
`;
    const { config } = parseConfig(yaml, { env: {} });
    expect(config.modelGroups.map((g) => [g.name, g.deployments.map((d) => d.id)])).toEqual([
      ['a', ['a#0', 'a#1']],
      ['b', ['b#0']],
    ]);
  });

  it('skips, with a warning and without failing, a deployment whose provider has no adapter', () => {
    const yaml = `
model_list:
  - model_name: claude
    litellm_params: { model: bedrock/anthropic.claude-3-sonnet, aws_access_key_id: os.environ/AWS_KEY }
`;
    const { config, warnings } = parseConfig(yaml, { env: {} });
    expect(config.modelGroups).toEqual([]);
    expect(config.unavailableGroups).toEqual([{ name: 'claude', reason: expect.stringMatching(/^model_list\[0\] provider "bedrock" has no adapter/) }]);
    expect(warnings).toEqual([
      { path: 'model_list[0]', message: expect.stringMatching(/^deployment of "claude" skipped: provider "bedrock" has no adapter/) },
      // Its unset variable is never read, so it is a warning, not a refusal.
      { path: 'model_list[0].litellm_params.aws_access_key_id', message: expect.stringMatching(/^environment variable AWS_KEY is not set \(Triage does not use/) },
    ]);
  });

  it('parses router_settings and general_settings', () => {
    const yaml = `${mockModel()}
router_settings:
  routing_strategy: usage-based-routing
  polling_interval: 0.1
  timeout: 30
  request_timeout: 20
  default_priority: 5
  min_priority: -10
  max_priority: 10
  cooldown_time: 0
  allowed_fails: 0
  num_retries: 1
  max_queue_size: 50
  priority_aging_seconds: 2
  default_max_tokens: 512
  redis_host: redis
  redis_password: redis-secret
general_settings:
  master_key: sk-master-1234
  public_metrics: true
  enable_metrics: false
  max_request_body_bytes: 1024
  shutdown_grace_seconds: 0
  client_request_timeout_seconds: 10
  client_headers_timeout_seconds: 5
  keep_alive_timeout_seconds: 0.5
  stream_stall_timeout_seconds: 120
  keys:
    - key: sk-team-a
      models: [m]
      max_priority: 3
      rpm: 100
    - key: sk-team-b
      name: team-b
`;
    const { config, warnings } = parseConfig(yaml, { env: {} });
    expect(warnings).toEqual([]);
    expect(config.router).toEqual({
      routingStrategy: 'usage-based-routing',
      pollingIntervalMs: 100,
      queueTimeoutMs: 30000,
      requestTimeoutMs: 20000,
      defaultPriority: 5,
      minPriority: -10,
      maxPriority: 10,
      cooldownTimeMs: 0,
      allowedFails: 0,
      numRetries: 1,
      maxQueueSize: 50,
      priorityAgingMs: 2000,
      defaultMaxTokens: 512,
      redis: { host: 'redis', port: 6379, password: 'redis-secret', prefix: 'triage' },
    });
    expect(config.general).toEqual({
      masterKey: 'sk-master-1234',
      publicMetrics: true,
      metrics: false,
      maxRequestBodyBytes: 1024,
      shutdownGraceMs: 0,
      clientTimeouts: { requestTimeoutMs: 10_000, headersTimeoutMs: 5_000, keepAliveTimeoutMs: 500, streamStallMs: 120_000 },
      keys: [
        { key: 'sk-team-a', name: 'key-0', models: ['m'], maxPriority: 3, rpm: 100 },
        { key: 'sk-team-b', name: 'team-b' },
      ],
    });
  });

  it('takes the master key from TRIAGE_MASTER_KEY, then LITELLM_MASTER_KEY, when the config has none', () => {
    const yaml = mockModel();
    expect(parseConfig(yaml, { env: { TRIAGE_MASTER_KEY: 'sk-t', LITELLM_MASTER_KEY: 'sk-l' } }).config.general.masterKey).toBe('sk-t');
    expect(parseConfig(yaml, { env: { LITELLM_MASTER_KEY: 'sk-l' } }).config.general.masterKey).toBe('sk-l');
    expect(parseConfig(yaml, { env: {} }).config.general.masterKey).toBeUndefined();
    const fromFile = parseConfig(`${yaml}\ngeneral_settings: { master_key: sk-file }`, { env: { TRIAGE_MASTER_KEY: 'sk-t' } });
    expect(fromFile.config.general.masterKey).toBe('sk-file');
  });

  it('passes redis_url through, with the prefix defaulted', () => {
    const { config } = parseConfig(`${mockModel()}\nrouter_settings: { redis_url: "rediss://cache:6380/0", redis_prefix: prod }`, { env: {} });
    expect(config.router.redis).toEqual({ url: 'rediss://cache:6380/0', prefix: 'prod' });
  });

  it('reads redis_lease_seconds as the instance lease (positive seconds; absent = the store default)', () => {
    const ok = parseConfig(`${mockModel()}\nrouter_settings: { redis_url: "redis://cache:6379", redis_lease_seconds: 2.5 }`, { env: {} });
    expect(ok.config.router.redis).toEqual({ url: 'redis://cache:6379', prefix: 'triage', leaseMs: 2500 });
    expect(parseConfig(`${mockModel()}\nrouter_settings: { redis_url: "redis://cache:6379" }`, { env: {} }).config.router.redis?.leaseMs).toBeUndefined();
    for (const [value, got] of [['0', '0'], ['-1', '-1'], ['soon', '"soon"']]) {
      const issues = issuesOf(() => parseConfig(`${mockModel()}\nrouter_settings: { redis_url: "redis://cache:6379", redis_lease_seconds: ${value} }`, { env: {} }));
      expect(issues).toEqual([{ path: 'router_settings.redis_lease_seconds', message: `expected a positive number of seconds, got ${got}` }]);
    }
    const ignored = parseConfig(`${mockModel()}\nrouter_settings: { redis_lease_seconds: 3 }`, { env: {} });
    expect(ignored.config.router.redis).toBeUndefined();
    expect(ignored.warnings).toEqual([{ path: 'router_settings.redis_lease_seconds', message: 'ignored: neither redis_url nor redis_host is set' }]);
  });
});

describe('os.environ references', () => {
  it('are replaced in lists and nested maps', () => {
    const yaml = `
model_list:
  - model_name: os.environ/GROUP
    litellm_params:
      model: os.environ/MODEL
      mock_response: os.environ/GREETING
      rpm: os.environ/RPM
general_settings:
  keys:
    - key: os.environ/TEAM_KEY
      models: [os.environ/GROUP, "os.environ/GROUP"]
`;
    const env = { GROUP: 'g', MODEL: 'mock/g', GREETING: 'hello', RPM: '42', TEAM_KEY: 'sk-team' };
    const { config } = parseConfig(yaml, { env });
    expect(config.modelGroups[0]).toMatchObject({
      name: 'g',
      deployments: [{ id: 'g#0', model: 'mock/g', mockResponse: 'hello', limits: { rpm: 42 } }],
    });
    expect(config.general.keys).toEqual([{ key: 'sk-team', name: 'key-0', models: ['g', 'g'] }]);
  });

  it('resolveEnvReferences works on any tree and leaves other strings alone', () => {
    const issues: ConfigIssue[] = [];
    const out = resolveEnvReferences(
      { a: ['os.environ/X', 'x os.environ/X', { b: 'os.environ/X' }], n: 1, t: true },
      { X: 'value' },
      '',
      issues,
    );
    expect(out).toEqual({ a: ['value', 'x os.environ/X', { b: 'value' }], n: 1, t: true });
    expect(issues).toEqual([]);
  });

  it('a missing variable is reported at its path, once', () => {
    const yaml = `
model_list:
  - model_name: m
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/OPENAI_API_KEY
general_settings:
  keys:
    - key: sk-a
      models: [m, os.environ/SECOND_MODEL]
`;
    const issues = issuesOf(() => parseConfig(yaml, { env: {} }));
    expect(issues).toEqual([
      { path: 'model_list[0].litellm_params.api_key', message: 'environment variable OPENAI_API_KEY is not set' },
      { path: 'general_settings.keys[0].models[1]', message: 'environment variable SECOND_MODEL is not set' },
    ]);
  });
});

describe('invalid values', () => {
  const deployment = (params: string, extra = '') => `
model_list:
  - model_name: m
    litellm_params: { model: mock/m, mock_response: hi, ${params} }
${extra}`;

  it.each([
    ['rpm: ten', 'model_list[0].litellm_params.rpm', 'expected a positive integer, got "ten"'],
    ['rpm: 1.5', 'model_list[0].litellm_params.rpm', 'expected a positive integer, got 1.5'],
    ['tpm: -100', 'model_list[0].litellm_params.tpm', 'expected a positive integer, got -100'],
    ['max_parallel_requests: 0', 'model_list[0].litellm_params.max_parallel_requests', 'expected a positive integer, got 0'],
    ['mock_delay: -1', 'model_list[0].litellm_params.mock_delay', 'expected a non-negative number of seconds, got -1'],
    ['timeout: 0', 'model_list[0].litellm_params.timeout', 'expected a positive number of seconds, got 0'],
    ['api_base: "not a url"', 'model_list[0].litellm_params.api_base', 'expected an http(s) URL, got "not a url"'],
    ['api_base: "ftp://host/v1"', 'model_list[0].litellm_params.api_base', 'expected an http(s) URL, got "ftp://host/v1"'],
  ])('%s', (params, path, message) => {
    expect(issuesOf(() => parseConfig(deployment(params), { env: {} }))).toEqual([{ path, message }]);
  });

  it.each([
    ['redis_host: r, redis_port: 70000', 'router_settings.redis_port', 'expected an integer port from 1 to 65535, got 70000'],
    ['redis_host: r, redis_port: "abc"', 'router_settings.redis_port', 'expected an integer port from 1 to 65535, got "abc"'],
    ['redis_url: "http://cache:6379"', 'router_settings.redis_url', 'expected a redis:// or rediss:// URL, got "http://cache:6379"'],
    ['min_priority: 10, max_priority: 5', 'router_settings.max_priority', 'must be >= min_priority (10), got 5'],
    ['default_priority: 50, max_priority: 10', 'router_settings.default_priority', 'must lie within [min_priority 0, max_priority 10], got 50'],
    ['default_priority: 1.5', 'router_settings.default_priority', 'expected an integer, got 1.5'],
    ['polling_interval: 0', 'router_settings.polling_interval', 'expected a positive number of seconds, got 0'],
    ['cooldown_time: -5', 'router_settings.cooldown_time', 'expected a non-negative number of seconds, got -5'],
    ['max_queue_size: 0', 'router_settings.max_queue_size', 'expected a positive integer, got 0'],
  ])('router_settings { %s }', (settings, path, message) => {
    expect(issuesOf(() => parseConfig(deployment('', `router_settings: { ${settings} }`), { env: {} }))).toEqual([
      { path, message },
    ]);
  });

  it('an unknown model in keys[].models names its path', () => {
    const yaml = deployment('', 'general_settings: { keys: [ { key: sk-1, models: [m, gpt-5] } ] }');
    expect(issuesOf(() => parseConfig(yaml, { env: {} }))).toEqual([
      { path: 'general_settings.keys[0].models[1]', message: 'unknown model "gpt-5"; model_list defines: "m"' },
    ]);
  });

  it('duplicate deployment ids are errors', () => {
    const yaml = `
model_list:
  - { model_name: a, litellm_params: { model: mock/a, mock_response: x }, model_info: { id: same } }
  - { model_name: b, litellm_params: { model: mock/b, mock_response: x }, model_info: { id: same } }
  - { model_name: c, litellm_params: { model: mock/c, mock_response: x }, model_info: { id: "a#1" } }
  - { model_name: a, litellm_params: { model: mock/a, mock_response: x } }
`;
    expect(issuesOf(() => parseConfig(yaml, { env: {} }))).toEqual([
      { path: 'model_list[1].model_info.id', message: 'duplicate deployment id "same" (already used by model_list[0])' },
      { path: 'model_list[3]', message: 'duplicate deployment id "a#1" (already used by model_list[2])' },
    ]);
  });

  it('a list where a map is expected (and the reverse) is an issue', () => {
    const yaml = `
model_list:
  - model_name: m
    litellm_params:
      - model: mock/m
router_settings: [a, b]
general_settings:
  keys: { key: sk-1 }
`;
    expect(issuesOf(() => parseConfig(yaml, { env: {} }))).toEqual([
      { path: 'model_list[0].litellm_params', message: 'expected a map, got a list of 1 item' },
      { path: 'router_settings', message: 'expected a map, got a list of 2 items' },
      { path: 'general_settings.keys', message: 'expected a list, got a map with keys "key"' },
    ]);
  });

  it('a missing or empty model_list is an issue', () => {
    expect(issuesOf(() => parseConfig('router_settings: {}', { env: {} }))).toEqual([
      { path: 'model_list', message: 'is required (a non-empty list of deployments)' },
    ]);
    expect(issuesOf(() => parseConfig('model_list: []', { env: {} }))).toEqual([
      { path: 'model_list', message: 'expected a non-empty list of deployments, got []' },
    ]);
    expect(issuesOf(() => parseConfig('', { env: {} }))[0].path).toBe('(root)');
    expect(issuesOf(() => parseConfig('- a\n', { env: {} }))).toEqual([
      { path: '(root)', message: 'expected a map, got a list of 1 item' },
    ]);
  });

  it('an OpenAI-compatible deployment without mock_response needs api_base unless its provider is openai', () => {
    const yaml = `
model_list:
  - model_name: m
    litellm_params: { model: hosted_vllm/llama }
`;
    expect(issuesOf(() => parseConfig(yaml, { env: {} }))).toEqual([
      {
        path: 'model_list[0].litellm_params.api_base',
        message: 'is required for provider "hosted_vllm" when there is no mock_response (an http(s) URL or HOSTED_VLLM_API_BASE in the environment)',
      },
    ]);
  });

  it('reports every problem at once', () => {
    const yaml = `
model_list:
  - model_name: a
    litellm_params: { model: mock/a, mock_response: x, rpm: ten, tpm: -1, mock_delay: -1 }
  - model_name: ""
    litellm_params: { model: openai/gpt-4o, api_base: "nope" }
  - litellm_params: { mock_response: x }
router_settings:
  min_priority: 10
  max_priority: 1
  redis_host: r
  redis_port: 0
general_settings:
  stream_stall_timeout_seconds: 0
  keep_alive_timeout_seconds: soon
  keys:
    - key: sk-a
      models: [nope]
    - key: sk-a
`;
    const error = (() => {
      try {
        parseConfig(yaml, { env: {} });
      } catch (e) {
        return e as ConfigError;
      }
      throw new Error('expected a ConfigError');
    })();
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.issues.map((i) => i.path).sort()).toEqual([
      'model_list[0].litellm_params.mock_delay',
      'model_list[0].litellm_params.rpm',
      'model_list[0].litellm_params.tpm',
      'model_list[1].model_name',
      'model_list[1].litellm_params.api_base',
      'model_list[2].model_name',
      'model_list[2].litellm_params.model',
      'router_settings.max_priority',
      'router_settings.redis_port',
      'general_settings.keys[0].models[0]',
      'general_settings.keys[1].key',
      'general_settings.stream_stall_timeout_seconds',
      'general_settings.keep_alive_timeout_seconds',
    ].sort());
    expect(issueAt(error.issues, 'general_settings.stream_stall_timeout_seconds').message).toBe('expected a positive number of seconds, got 0');
    expect(issueAt(error.issues, 'general_settings.keep_alive_timeout_seconds').message).toBe('expected a positive number of seconds, got "soon"');
    expect(issueAt(error.issues, 'model_list[1].model_name').message).toBe('expected a non-empty string, got ""');
    expect(issueAt(error.issues, 'model_list[2].litellm_params.model').message).toBe('is required (a non-empty string)');
    // The error message lists them all too.
    for (const issue of error.issues) expect(error.message).toContain(`${issue.path}: ${issue.message}`);
  });

  it('a YAML syntax error names the source and its line and column', () => {
    const issues = issuesOf(() => parseConfig('model_list:\n  - model_name: [a\nb: c\n', { env: {}, source: 'triage.yaml' }));
    expect(issues.length).toBeGreaterThan(0);
    expect(issues[0].path).toBe('triage.yaml');
    expect(issues[0].message).toMatch(/^YAML syntax error at line \d+, column \d+: /);
    // A duplicate key is no syntax error: the last value wins (PyYAML), with a warning naming its line.
    const { warnings } = parseConfig('model_list: []\nmodel_list:\n  - { model_name: m, litellm_params: { model: mock/m, mock_response: x } }\n', { env: {} });
    expect(warnings).toEqual([{ path: 'model_list', message: expect.stringContaining('last value is used, as in LiteLLM (line 2)') }]);
  });
});

describe('warnings', () => {
  it('unknown keys and ignored sections are warnings, not errors', () => {
    const yaml = `
model_list:
  - model_name: m
    litellm_params: { model: mock/m, mock_response: hi, rpmm: 5, temperature: 0.2 }
    extra: 1
router_settings:
  routing_strategy: simple-shuffle
  enable_pre_call_checks: true
general_settings:
  database_url: postgres://x
litellm_settings:
  drop_params: true
environment_variables:
  FOO: bar
`;
    const { config, warnings } = parseConfig(yaml, { env: {} });
    expect(config.router.routingStrategy).toBe('simple-shuffle');
    expect(warnings.map((w) => w.path)).toEqual([
      'model_list[0].extra',
      'model_list[0].litellm_params.rpmm',
      'model_list[0].litellm_params.temperature',
      'router_settings.enable_pre_call_checks',
      'router_settings.routing_strategy',
      'litellm_settings.drop_params',
      'general_settings.database_url',
    ]);
    expect(warnings.find((w) => w.path === 'model_list[0].litellm_params.rpmm')?.message).toBe(
      'unknown key; ignored (did you mean "rpm"?)',
    );
    expect(warnings.find((w) => w.path === 'router_settings.routing_strategy')?.message).toMatch(/least-loaded/);
    expect(warnings.find((w) => w.path === 'litellm_settings.drop_params')?.message).toMatch(/ignored/);
  });
});

describe('secrets', () => {
  it('are never echoed in issue messages', () => {
    const yaml = `
model_list:
  - model_name: m
    litellm_params: { model: mock/m, mock_response: hi, api_key: 12345678 }
  - model_name: n
    litellm_params: { model: mock/n, mock_response: hi, api_key: "" }
router_settings:
  redis_host: r
  redis_password: 987654321
  redis_url: "http://user:hunter2-pass@cache"
general_settings:
  master_key: sk-master-secret
  master_kye: sk-misspelled-secret
  keys:
    - key: sk-master-secret
    - key: sk-shared-secret
    - key: sk-shared-secret
      models: [sk-shared-secret]
    - key: [sk-in-a-list]
`;
    const issues = issuesOf(() => parseConfig(yaml, { env: {} }));
    const text = JSON.stringify(issues);
    for (const secret of ['12345678', '987654321', 'hunter2-pass', 'sk-master-secret', 'sk-shared-secret', 'sk-in-a-list']) {
      expect(text).not.toContain(secret);
    }
    expect(issueAt(issues, 'model_list[0].litellm_params.api_key').message).toBe('expected a non-empty string');
    // api_key: "" is no key, as in LiteLLM: not an issue.
    expect(issues.find((i) => i.path === 'model_list[1].litellm_params.api_key')).toBeUndefined();
    expect(issueAt(issues, 'router_settings.redis_password').message).toBe('expected a string');
    expect(issueAt(issues, 'general_settings.keys[0].key').message).toBe('must differ from general_settings.master_key');
    expect(issueAt(issues, 'general_settings.keys[2].key').message).toBe(
      'duplicate key (the same as general_settings.keys[1].key)',
    );
    expect(issueAt(issues, 'general_settings.keys[3].key').message).toBe('expected a non-empty string');
  });

  it('are not echoed by warnings or by the env master-key check either', () => {
    const yaml = `${mockModel()}
general_settings:
  master_kye: sk-misspelled-secret
  keys: [ { key: sk-from-env } ]
`;
    const issues = issuesOf(() => parseConfig(yaml, { env: { TRIAGE_MASTER_KEY: 'sk-from-env' } }));
    expect(issues).toEqual([
      { path: 'general_settings.keys[0].key', message: 'must differ from the master key (from TRIAGE_MASTER_KEY)' },
    ]);
    const { warnings } = parseConfig(`${mockModel()}\ngeneral_settings: { master_kye: sk-misspelled-secret }`, { env: {} });
    expect(warnings).toEqual([
      { path: 'general_settings.master_kye', message: 'unknown key; ignored (did you mean "master_key"?)' },
    ]);
  });
});

describe('files and the default config', () => {
  it('loadConfigFile reads a file, and a missing file is a ConfigError at its path', () => {
    const dir = mkdtempSync(join(tmpdir(), 'triage-config-'));
    try {
      const file = join(dir, 'config.yaml');
      writeFileSync(file, mockModel());
      expect(loadConfigFile(file, {}).config.modelGroups[0].name).toBe('m');
      const missing = join(dir, 'missing.yaml');
      expect(issuesOf(() => loadConfigFile(missing, {}))).toEqual([
        { path: missing, message: 'cannot read config file: file not found' },
      ]);
      writeFileSync(file, 'model_list: [');
      expect(issuesOf(() => loadConfigFile(file, {}))[0].path).toBe(file);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('normalizeConfig accepts an already-parsed object', () => {
    const { config } = normalizeConfig({ model_list: [{ model_name: 'x', litellm_params: { model: 'mock/x', mock_response: 'y' } }] }, { env: {} });
    expect(config.modelGroups[0].deployments[0].id).toBe('x#0');
  });

  it('the default config loads with two mock chat groups, one rate-limited, a mock embedding group, and no master key', () => {
    const { config, warnings } = loadDefaultConfig({});
    expect(warnings).toEqual([]);
    expect(config.general.masterKey).toBeUndefined();
    expect(config.modelGroups).toEqual([
      {
        name: 'triage-mock',
        deployments: [
          {
            id: 'triage-mock#0',
            modelName: 'triage-mock',
            model: 'mock/triage-mock',
            provider: 'mock',
            upstreamModel: 'triage-mock',
            limits: {},
            mockResponse: 'Hello from Triage!',
            mockDelayMs: 50,
          },
        ],
      },
      {
        name: 'triage-mock-limited',
        deployments: [
          {
            id: 'triage-mock-limited#0',
            modelName: 'triage-mock-limited',
            model: 'mock/triage-mock-limited',
            provider: 'mock',
            upstreamModel: 'triage-mock-limited',
            limits: { rpm: 60, maxParallelRequests: 2 },
            mockResponse: 'Hello from a rate-limited deployment.',
            mockDelayMs: 500,
          },
        ],
      },
      {
        name: 'triage-mock-embedding',
        deployments: [
          {
            id: 'triage-mock-embedding#0',
            modelName: 'triage-mock-embedding',
            model: 'mock/triage-mock-embedding',
            provider: 'mock',
            upstreamModel: 'triage-mock-embedding',
            limits: {},
            mockResponse: '',
            mockDelayMs: 20,
            mode: 'embedding',
            embeddingDimensions: 8,
          },
        ],
      },
    ]);
    expect(parseConfig(DEFAULT_CONFIG_YAML, { env: {} }).config).toEqual(config);
    expect(DEFAULT_CONFIG_YAML).toContain('# ');
  });
});
