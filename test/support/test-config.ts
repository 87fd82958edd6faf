/** Builds validated configs in tests without YAML: defaults as the loader applies them. */
import type { DeploymentConfig, DeploymentLimits, TriageConfig, RouterSettings, GeneralSettings } from '../../src/core/config-types.js';

export interface TestDeployment extends DeploymentLimits {
  id?: string;
  mockResponse?: string;
  mockDelayMs?: number;
}

export function testConfig(
  groups: Record<string, TestDeployment[]>,
  router: Partial<RouterSettings> = {},
  general: Partial<GeneralSettings> = {},
): TriageConfig {
  return {
    modelGroups: Object.entries(groups).map(([name, deployments]) => ({
      name,
      deployments: deployments.map((d, i): DeploymentConfig => {
        const limits: DeploymentLimits = {};
        if (d.rpm !== undefined) limits.rpm = d.rpm;
        if (d.tpm !== undefined) limits.tpm = d.tpm;
        if (d.maxParallelRequests !== undefined) limits.maxParallelRequests = d.maxParallelRequests;
        return {
          id: d.id ?? `${name}#${i}`,
          modelName: name,
          model: `mock/${name}`,
          provider: 'mock',
          upstreamModel: name,
          limits,
          mockResponse: d.mockResponse ?? 'ok',
          mockDelayMs: d.mockDelayMs ?? 0,
        };
      }),
    })),
    router: {
      routingStrategy: 'usage-based-routing',
      pollingIntervalMs: 30,
      queueTimeoutMs: 600_000,
      requestTimeoutMs: 600_000,
      defaultPriority: 0,
      minPriority: 0,
      maxPriority: 1000,
      cooldownTimeMs: 5_000,
      allowedFails: 3,
      numRetries: 2,
      maxQueueSize: 10_000,
      defaultMaxTokens: 256,
      ...router,
    },
    general: {
      keys: [],
      maxRequestBodyBytes: 4 * 1024 * 1024,
      publicMetrics: false,
      metrics: true,
      shutdownGraceMs: 30_000,
      ...general,
    },
  };
}

/** An `openai/up-<name>` deployment of `group` calling an OpenAI-compatible server at `apiBase` (a test's fake). */
export function openAIDeployment(apiBase: string, group: string, name: string, over: Partial<DeploymentConfig> = {}): DeploymentConfig {
  return {
    id: `${group}-${name}`,
    modelName: group,
    model: `openai/up-${name}`,
    provider: 'openai',
    upstreamModel: `up-${name}`,
    limits: {},
    mockDelayMs: 0,
    apiBase,
    apiKey: `sk-${name}`,
    ...over,
  };
}

/** A config whose only model group is `group` with these deployments. */
export function singleGroupConfig(group: string, deployments: DeploymentConfig[], router: Partial<RouterSettings> = {}): TriageConfig {
  const config = testConfig({}, router);
  config.modelGroups = [{ name: group, deployments }];
  return config;
}
