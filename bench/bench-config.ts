/**
 * Configs for the benchmark, written as the LiteLLM-format YAML a user would write and parsed by the
 * real loader, so every scenario runs on a config the gateway would accept from a file.
 */
import { parseConfig } from '../src/adapters/config-loader.js';
import type { TriageConfig } from '../src/core/config-types.js';

export interface BenchDeployment {
  id?: string;
  rpm?: number;
  tpm?: number;
  maxParallel?: number;
  /** A mock deployment answering this content; without it the deployment calls the upstream factory. */
  mockResponse?: string;
  mockDelayMs?: number;
}

export interface BenchConfigOptions {
  groups: Record<string, BenchDeployment[]>;
  masterKey?: string;
  metrics?: boolean;
  redisUrl?: string;
  redisPrefix?: string;
  maxQueueSize?: number;
  /** Queue-wait deadline, seconds. */
  timeoutSec?: number;
  /** router_settings.polling_interval (seconds): the shared store's safety re-check. */
  pollingIntervalSec?: number;
}

const q = (s: string) => JSON.stringify(s);

export function benchYaml(o: BenchConfigOptions): string {
  const lines: string[] = ['model_list:'];
  for (const [name, deployments] of Object.entries(o.groups)) {
    deployments.forEach((d, i) => {
      lines.push(`  - model_name: ${q(name)}`, '    litellm_params:');
      if (d.mockResponse !== undefined) {
        lines.push(`      model: ${q(`mock/${name}`)}`, `      mock_response: ${q(d.mockResponse)}`, `      mock_delay: ${(d.mockDelayMs ?? 0) / 1000}`);
      } else {
        // Never called over the network: the benchmark passes its own upstream factory.
        lines.push(`      model: ${q(`openai/${name}`)}`, '      api_base: "http://127.0.0.1:9/v1"', '      api_key: "bench-unused"');
      }
      if (d.rpm !== undefined) lines.push(`      rpm: ${d.rpm}`);
      if (d.tpm !== undefined) lines.push(`      tpm: ${d.tpm}`);
      if (d.maxParallel !== undefined) lines.push(`      max_parallel_requests: ${d.maxParallel}`);
      lines.push(`    model_info: { id: ${q(d.id ?? `${name}-${i}`)} }`);
    });
  }
  lines.push('router_settings:', `  timeout: ${o.timeoutSec ?? 600}`, `  max_queue_size: ${o.maxQueueSize ?? 10_000}`, '  num_retries: 0');
  if (o.pollingIntervalSec !== undefined) lines.push(`  polling_interval: ${o.pollingIntervalSec}`);
  if (o.redisUrl !== undefined) lines.push(`  redis_url: ${q(o.redisUrl)}`, `  redis_prefix: ${q(o.redisPrefix ?? 'bench')}`);
  lines.push('general_settings:', `  enable_metrics: ${o.metrics ?? true}`, '  shutdown_grace_seconds: 1');
  if (o.masterKey !== undefined) lines.push(`  master_key: ${q(o.masterKey)}`);
  return `${lines.join('\n')}\n`;
}

export function benchConfig(o: BenchConfigOptions): TriageConfig {
  return parseConfig(benchYaml(o)).config;
}
