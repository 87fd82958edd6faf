/** Starts a real gateway on a free 127.0.0.1 port for a test, with an official OpenAI client aimed at it. */
import OpenAI from 'openai';
import type { TriageConfig } from '../../src/core/config-types.js';
import { createGateway, type Gateway, type GatewayOptions } from '../../src/gateway.js';

export interface RunningGateway {
  gateway: Gateway;
  url: string;
  client(apiKey?: string): OpenAI;
  stop(): Promise<void>;
}

export async function startGateway(config: TriageConfig, options: Partial<GatewayOptions> = {}): Promise<RunningGateway> {
  const gateway = await createGateway({ ...options, config });
  const url = await gateway.listen(0, '127.0.0.1');
  return {
    gateway,
    url,
    client: (apiKey = 'sk-none') => new OpenAI({ apiKey, baseURL: url, maxRetries: 0, timeout: 20_000 }),
    stop: () => gateway.close(1_000),
  };
}

/** Polls `check` until it returns a value that is not undefined, or fails at the deadline. */
export async function waitFor<T>(check: () => T | undefined | Promise<T | undefined>, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The body a chat completion needs, with Triage's priority (the OpenAI SDK forwards extra fields). */
export function chat(model: string, content: string, priority?: number, extra: Record<string, unknown> = {}) {
  const body: Record<string, unknown> = { model, messages: [{ role: 'user', content }], ...extra };
  if (priority !== undefined) body.priority = priority;
  return body as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming;
}
