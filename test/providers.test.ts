/**
 * Providers end to end over real sockets: the official OpenAI client calls the gateway, loaded from a
 * LiteLLM config.yaml, whose deployments call in-process fakes of Azure OpenAI, Anthropic and an
 * OpenAI-compatible family, each refusing a wrong path, header or body as the real service does.
 */
import OpenAI, { APIError } from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { normalizeConfig, parseConfig } from '../src/adapters/config-loader.js';
import { PROVIDERS } from '../src/adapters/providers.js';
import { upstreamTarget } from '../src/adapters/upstream-target.js';
import type { DeploymentConfig } from '../src/core/config-types.js';
import type { QueueEvent } from '../src/events.js';
import { FakeAnthropic, anthropicError, anthropicMessage, reply, sse, anthropicStreamEvents } from './support/fake-anthropic.js';
import { FakeAzure, azureCompletion } from './support/fake-azure.js';
import { FakeOpenAI, respond, type Handler } from './support/fake-openai.js';
import { chat, startGateway, waitFor, type RunningGateway } from './support/gateway.js';
import { freshPrefix, sharedRedisUrl } from './support/redis.js';
import { createRedisStoreFactory } from '../src/adapters/redis-connection.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function gatewayFor(yaml: string, env: NodeJS.ProcessEnv = {}): Promise<RunningGateway> {
  const { config } = parseConfig(yaml, { env });
  const g = await startGateway(config);
  cleanups.push(() => g.stop());
  return g;
}

async function rejection(work: Promise<unknown>): Promise<APIError> {
  const e = await work.then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(e).toBeInstanceOf(APIError);
  return e as APIError;
}

function eventsOf(g: RunningGateway): QueueEvent[] {
  const seen: QueueEvent[] = [];
  const off = g.gateway.router.events.subscribe((e) => seen.push(e));
  cleanups.push(async () => void off());
  return seen;
}

type Chunk = OpenAI.Chat.Completions.ChatCompletionChunk;

async function collect(stream: AsyncIterable<Chunk>): Promise<Chunk[]> {
  const out: Chunk[] = [];
  for await (const c of stream) out.push(c);
  return out;
}

const deployment = (provider: string, over: Partial<DeploymentConfig> = {}): DeploymentConfig => ({
  id: 'd',
  modelName: 'm',
  model: `${provider}/model-x`,
  provider,
  upstreamModel: 'model-x',
  limits: {},
  mockDelayMs: 0,
  ...over,
});

describe('the fakes refuse what the real services refuse', () => {
  const post = (url: string, headers: Record<string, string>, body: unknown) =>
    fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) }).then(async (r) => ({ status: r.status, body: (await r.json()) as any }));

  it('Azure Responses API: refused at a deployment path, at a version before 2025-03-01, or for an unknown deployment', async () => {
    const azure = await FakeAzure.start({ deployments: ['d1'], apiKey: 'k', apiVersions: ['2024-10-21', '2025-04-01-preview'] });
    cleanups.push(() => azure.close());
    const body = { model: 'd1', input: 'hi' };
    expect((await post(`${azure.apiBase}/openai/responses?api-version=2025-04-01-preview`, { 'api-key': 'k' }, body)).status).toBe(200);
    expect((await post(`${azure.apiBase}/openai/v1/responses`, { 'api-key': 'k' }, body)).status).toBe(200);
    expect((await post(`${azure.apiBase}/openai/deployments/d1/responses?api-version=2025-04-01-preview`, { 'api-key': 'k' }, body)).status).toBe(404);
    expect((await post(`${azure.apiBase}/openai/responses?api-version=2024-10-21`, { 'api-key': 'k' }, body)).status).toBe(404);
    expect((await post(`${azure.apiBase}/openai/v1/responses`, { 'api-key': 'k' }, { model: 'd2', input: 'hi' })).body.error.code).toBe('DeploymentNotFound');
    expect((await post(`${azure.apiBase}/openai/v1/responses`, { 'api-key': 'k' }, { model: 'd1' })).status).toBe(400);
  });

  it('Azure: path, api-version, api-key, deployment, body', async () => {
    const azure = await FakeAzure.start({ deployments: ['d1'], apiKey: 'k' });
    cleanups.push(() => azure.close());
    const ok = { messages: [{ role: 'user', content: 'hi' }] };
    const base = `${azure.apiBase}/openai/deployments/d1/chat/completions`;
    expect((await post(`${base}?api-version=2024-10-21`, { 'api-key': 'k' }, ok)).status).toBe(200);
    expect((await post(base, { 'api-key': 'k' }, ok)).status).toBe(404);
    expect((await post(`${base}?api-version=1999-01-01`, { 'api-key': 'k' }, ok)).status).toBe(404);
    expect((await post(`${base}?api-version=2024-10-21`, { authorization: 'Bearer k' }, ok)).status).toBe(401);
    expect((await post(`${azure.apiBase}/openai/deployments/d2/chat/completions?api-version=2024-10-21`, { 'api-key': 'k' }, ok)).body.error.code).toBe('DeploymentNotFound');
    expect((await post(`${azure.apiBase}/chat/completions?api-version=2024-10-21`, { 'api-key': 'k' }, ok)).status).toBe(404);
    expect((await post(`${base}?api-version=2024-10-21`, { 'api-key': 'k' }, { prompt: 'hi' })).status).toBe(400);
  });

  it.each([
    ['a system role inside messages', { messages: [{ role: 'system', content: 'x' }, { role: 'user', content: 'hi' }] }],
    ['no max_tokens', { max_tokens: undefined }],
    ['roles that do not alternate', { messages: [{ role: 'user', content: 'a' }, { role: 'user', content: 'b' }] }],
    ['an assistant first', { messages: [{ role: 'assistant', content: 'a' }, { role: 'user', content: 'b' }] }],
    ['an OpenAI field', { stream_options: { include_usage: true } }],
    ['an OpenAI content part', { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://x/y.png' } }] }] }],
    ['a tool_result answering nothing', { messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: 'x' }] }] }],
    ['an OpenAI-style tool', { tools: [{ type: 'function', function: { name: 'f', parameters: {} } }] }],
  ])('Anthropic: %s is a 400 invalid_request_error', async (_what, over) => {
    const anthropic = await FakeAnthropic.start({ apiKey: 'k' });
    cleanups.push(() => anthropic.close());
    const body = { model: 'claude-x', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }], ...over };
    const r = await post(`${anthropic.apiBase}/v1/messages`, { 'x-api-key': 'k', 'anthropic-version': '2023-06-01' }, body);
    expect(r).toMatchObject({ status: 400, body: { type: 'error', error: { type: 'invalid_request_error' } } });
  });

  it('Anthropic: path, x-api-key and anthropic-version', async () => {
    const anthropic = await FakeAnthropic.start({ apiKey: 'k' });
    cleanups.push(() => anthropic.close());
    const body = { model: 'claude-x', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] };
    const good = { 'x-api-key': 'k', 'anthropic-version': '2023-06-01' };
    expect((await post(`${anthropic.apiBase}/v1/messages`, good, body)).status).toBe(200);
    expect((await post(`${anthropic.apiBase}/v1/chat/completions`, good, body)).status).toBe(404);
    expect((await post(`${anthropic.apiBase}/v1/messages`, { authorization: 'Bearer k', 'anthropic-version': '2023-06-01' }, body)).status).toBe(401);
    expect((await post(`${anthropic.apiBase}/v1/messages`, { 'x-api-key': 'k' }, body)).status).toBe(400);
  });
});

describe('upstream targets (URL and auth per provider)', () => {
  it('Azure: the deployment in the path, api-version in the query, the key in api-key; an Entra token as Bearer instead', () => {
    const t = upstreamTarget(deployment('azure', { upstreamModel: 'my dep', apiBase: 'https://r.openai.azure.com/', apiKey: 'k1', apiVersion: '2025-01-01-preview' }));
    expect(t.url('/chat/completions')).toBe('https://r.openai.azure.com/openai/deployments/my%20dep/chat/completions?api-version=2025-01-01-preview');
    expect(t.url('/embeddings')).toBe('https://r.openai.azure.com/openai/deployments/my%20dep/embeddings?api-version=2025-01-01-preview');
    expect(t.headers).toEqual({ 'api-key': 'k1' });
    // The Responses API is per resource; only dated versions from 2025-03-01 have it, older ones use the v1 API.
    expect(t.url('/responses')).toBe('https://r.openai.azure.com/openai/v1/responses');
    const dated = upstreamTarget(deployment('azure', { upstreamModel: 'd', apiBase: 'https://r', apiKey: 'k1', apiVersion: '2025-03-01-preview' }));
    expect(dated.url('/responses')).toBe('https://r/openai/responses?api-version=2025-03-01-preview');
    expect(upstreamTarget(deployment('azure', { apiBase: 'https://r', apiKey: 'k1', apiVersion: 'preview' })).url('/responses')).toBe('https://r/openai/v1/responses?api-version=preview');
    expect(upstreamTarget(deployment('azure', { apiBase: 'https://r', apiKey: 'k1', azureAdToken: 'tok' })).headers).toEqual({ authorization: 'Bearer tok' });
  });

  it('Anthropic: /v1/messages with x-api-key and anthropic-version', () => {
    const t = upstreamTarget(deployment('anthropic', { apiBase: 'https://api.anthropic.com', apiKey: 'sk-ant' }));
    expect(t.url('/v1/messages')).toBe('https://api.anthropic.com/v1/messages');
    expect(t.headers).toEqual({ 'x-api-key': 'sk-ant', 'anthropic-version': '2023-06-01' });
  });

  it('Anthropic: an api_base that already ends in /v1/messages is not doubled', async () => {
    const anthropic = await FakeAnthropic.start({ apiKey: 'k' });
    cleanups.push(() => anthropic.close());
    const g = await gatewayFor(`
model_list:
  - model_name: claude
    litellm_params: { model: anthropic/claude-a, api_base: "${anthropic.apiBase}/v1/messages", api_key: k }
`);
    expect((await g.client().chat.completions.create(chat('claude', 'hi'))).choices[0].message.content).toBe('Hello from Claude.');
    expect(anthropic.refused).toEqual([]);
  });

  it.each(Object.entries(PROVIDERS).filter(([, s]) => s.wire === 'openai' && s.url === 'append' && s.defaultApiBase !== undefined))(
    '%s: its default api_base + the endpoint path, with its auth header',
    (provider, spec) => {
      const t = upstreamTarget(deployment(provider, { apiKey: 'key' }));
      expect(t.url('/chat/completions')).toBe(`${spec.defaultApiBase}/chat/completions`);
      expect(t.headers).toEqual(spec.auth === 'api-key' ? { 'api-key': 'key' } : { authorization: 'Bearer key' });
    },
  );

  it('the config loader fills the default api_base, the key from the provider env var and Azure api_version from AZURE_API_VERSION', () => {
    const yaml = `
model_list:
  - model_name: fast
    litellm_params: { model: groq/llama-3.1-8b-instant }
  - model_name: az
    litellm_params: { model: azure/prod-gpt4o, api_base: "https://r.openai.azure.com" }
  - model_name: claude
    litellm_params: { model: anthropic/claude-sonnet-4-5 }
  - model_name: local
    litellm_params: { model: vllm/llama }
`;
    const env = { GROQ_API_KEY: 'gsk-secret', AZURE_API_KEY: 'az-secret', AZURE_API_VERSION: '2024-06-01', ANTHROPIC_API_KEY: 'sk-ant-secret', HOSTED_VLLM_API_BASE: 'http://vllm:8000/v1' };
    const { config, warnings } = parseConfig(yaml, { env });
    expect(warnings).toEqual([]);
    const [fast, az, claude, local] = config.modelGroups.map((g) => g.deployments[0]);
    expect(fast).toMatchObject({ provider: 'groq', apiBase: 'https://api.groq.com/openai/v1', apiKey: 'gsk-secret' });
    expect(az).toMatchObject({ apiKey: 'az-secret', apiVersion: '2024-06-01' });
    expect(claude).toMatchObject({ apiBase: 'https://api.anthropic.com', apiKey: 'sk-ant-secret' });
    expect(local).toMatchObject({ apiBase: 'http://vllm:8000/v1' });
    expect(parseConfig('model_list: [{ model_name: a, litellm_params: { model: azure/x, api_base: "https://r" } }]', { env: {} }).config.modelGroups[0].deployments[0].apiVersion).toBe('2024-10-21');
  });

  it('an api_version a YAML 1.1 reader takes for a date (unquoted 2024-06-01) is the date it was written as', () => {
    const raw = { model_list: [{ model_name: 'a', litellm_params: { model: 'azure/x', api_base: 'https://r', api_version: new Date('2024-06-01T00:00:00Z') } }] };
    expect(normalizeConfig(raw, { env: {} }).config.modelGroups[0].deployments[0].apiVersion).toBe('2024-06-01');
    expect(() => normalizeConfig({ model_list: [{ model_name: 'a', litellm_params: { model: 'azure/x', api_base: 'https://r', api_version: 5 } }] }, { env: {} })).toThrow(
      /model_list\[0\]\.litellm_params\.api_version: expected an api-version string/,
    );
  });

  it('respect_upstream_rate_limit_headers: false is read per deployment; anything but a boolean is refused', () => {
    const ok = parseConfig('model_list: [{ model_name: a, litellm_params: { model: openai/x, respect_upstream_rate_limit_headers: false } }]', { env: {} });
    expect(ok.config.modelGroups[0].deployments[0].respectUpstreamRateLimitHeaders).toBe(false);
    expect(() => parseConfig('model_list: [{ model_name: a, litellm_params: { model: openai/x, respect_upstream_rate_limit_headers: "no" } }]', { env: {} })).toThrow(
      /model_list\[0\]\.litellm_params\.respect_upstream_rate_limit_headers: expected a boolean/,
    );
  });
});

describe('Azure OpenAI', () => {
  async function setup(extra = '') {
    const azure = await FakeAzure.start({ deployments: ['prod-gpt4o'], apiKey: 'azure-key-123', adToken: 'entra-token', apiVersions: ['2024-10-21', '2025-01-01-preview'] });
    cleanups.push(() => azure.close());
    const g = await gatewayFor(`
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: azure/prod-gpt4o
      api_base: ${azure.apiBase}
      api_key: azure-key-123
${extra}`);
    return { azure, g };
  }

  it('answers through the deployment URL with api-version and the api-key header', async () => {
    const { azure, g } = await setup('      api_version: "2025-01-01-preview"');
    const completion = await g.client().chat.completions.create(chat('gpt-4o', 'hi'));
    expect(completion.choices[0].message.content).toBe('Hello from Azure.');
    expect(completion.usage?.total_tokens).toBe(13);
    expect(azure.refused).toEqual([]);
    const [x] = azure.accepted;
    expect(x.request.path).toBe('/openai/deployments/prod-gpt4o/chat/completions?api-version=2025-01-01-preview');
    expect(x.request.headers['api-key']).toBe('azure-key-123');
    expect(x.request.headers.authorization).toBeUndefined();
  });

  it('azure_ad_token goes as Authorization: Bearer', async () => {
    const azure = await FakeAzure.start({ deployments: ['d1'], apiKey: 'unused-key', adToken: 'entra-token' });
    cleanups.push(() => azure.close());
    const g = await gatewayFor(`
model_list:
  - model_name: m
    litellm_params: { model: azure/d1, api_base: "${azure.apiBase}", azure_ad_token: entra-token }
`);
    expect((await g.client().chat.completions.create(chat('m', 'hi'))).choices[0].message.content).toBe('Hello from Azure.');
    expect(azure.accepted[0].request.headers.authorization).toBe('Bearer entra-token');
    expect(azure.accepted[0].request.headers['api-key']).toBeUndefined();
  });

  it('the Responses API goes to the resource, not the deployment: /openai/responses?api-version=, the deployment as the body\'s model; whole and streamed', async () => {
    const azure = await FakeAzure.start({ deployments: ['prod-gpt4o'], apiKey: 'k', apiVersions: ['2025-04-01-preview'] });
    cleanups.push(() => azure.close());
    const g = await gatewayFor(`
model_list:
  - model_name: gpt-4o
    litellm_params: { model: azure/prod-gpt4o, api_base: "${azure.apiBase}", api_key: k, api_version: "2025-04-01-preview" }
`);
    const client = g.client();
    const r = await client.responses.create({ model: 'gpt-4o', input: 'hi' });
    expect(r.output_text).toBe('Hello from Azure.');
    let text = '';
    const types: string[] = [];
    for await (const e of await client.responses.create({ model: 'gpt-4o', input: 'hi', stream: true })) {
      types.push(e.type);
      if (e.type === 'response.output_text.delta') text += e.delta;
    }
    expect(text).toBe('Hello from Azure.');
    expect(types.at(-1)).toBe('response.completed');
    expect(azure.refused).toEqual([]);
    expect(azure.accepted.map((x) => x.request.path)).toEqual(['/openai/responses?api-version=2025-04-01-preview', '/openai/responses?api-version=2025-04-01-preview']);
    expect(azure.accepted.map((x) => x.request.body?.model)).toEqual(['prod-gpt4o', 'prod-gpt4o']);
    expect(azure.accepted[1].request.body?.stream).toBe(true);
    expect(azure.accepted[0].request.headers['api-key']).toBe('k');
  });

  it('with an API version older than the Responses API (the default 2024-10-21), Responses go to the v1 API', async () => {
    const { azure, g } = await setup();
    const r = await g.client().responses.create({ model: 'gpt-4o', input: 'hi' });
    expect(r.output_text).toBe('Hello from Azure.');
    expect(azure.refused).toEqual([]);
    expect(azure.accepted[0].request.path).toBe('/openai/v1/responses');
    expect(azure.accepted[0].request.body?.model).toBe('prod-gpt4o');
  });

  it('streams chunk by chunk, ending with [DONE]', async () => {
    const { azure, g } = await setup();
    azure.always(respond.stream(['Bonjour', ' de', ' Azure']));
    const chunks = await collect(await g.client().chat.completions.create({ ...chat('gpt-4o', 'hi'), stream: true }));
    expect(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe('Bonjour de Azure');
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('stop');
    expect(azure.accepted[0].request.path).toBe('/openai/deployments/prod-gpt4o/chat/completions?api-version=2024-10-21');
    expect(azure.accepted[0].request.body?.stream).toBe(true);
  });

  it('an API version older than stream_options streams without asking for usage (Azure would refuse it)', async () => {
    const azure = await FakeAzure.start({ deployments: ['d1'], apiKey: 'k', apiVersions: ['2024-02-01'] });
    cleanups.push(() => azure.close());
    azure.always(respond.stream(['old', ' api']));
    const g = await gatewayFor(`
model_list:
  - model_name: m
    litellm_params: { model: azure/d1, api_base: "${azure.apiBase}", api_key: k, api_version: "2024-02-01" }
`);
    const chunks = await collect(await g.client().chat.completions.create({ ...chat('m', 'hi'), stream: true }));
    expect(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe('old api');
    expect(azure.refused).toEqual([]);
    expect(azure.accepted[0].request.body?.stream_options).toBeUndefined();
  });

  it("Azure's refusal of a wrong key is the gateway's 502 (the deployment's credentials, not the caller's)", async () => {
    const azure = await FakeAzure.start({ deployments: ['d1'], apiKey: 'right-key' });
    cleanups.push(() => azure.close());
    const g = await gatewayFor(`
model_list:
  - model_name: m
    litellm_params: { model: azure/d1, api_base: "${azure.apiBase}", api_key: wrong-key }
router_settings: { num_retries: 0 }
`);
    const e = await rejection(g.client().chat.completions.create(chat('m', 'hi')));
    expect(e.status).toBe(502);
    expect(azure.refused).toEqual([{ path: '/openai/deployments/d1/chat/completions?api-version=2024-10-21', status: 401 }]);
  });

  it.each([
    ['an unreadable body', ((x) => {
      x.res.writeHead(200, { 'content-type': 'application/json' });
      x.res.end('{"id": "chatcmpl-1", "choices": [');
    }) as Handler, 'sent an unreadable body'],
    ['a body with no choices', ((x) => x.json(200, { id: 'x', object: 'chat.completion' })) as Handler, 'sent a body that is not a chat completion'],
  ])('%s is a 502 in the OpenAI envelope naming the deployment', async (_what, handler, message) => {
    const { azure, g } = await setup('router_settings: { num_retries: 0 }');
    azure.always(handler);
    const e = await rejection(g.client().chat.completions.create(chat('gpt-4o', 'hi')));
    expect(e.status).toBe(502);
    expect(e.error).toMatchObject({ type: 'upstream_error', code: 'upstream_error' });
    expect(e.message).toContain(`deployment gpt-4o#0 ${message}`);
  });

  it('a stream that ends before [DONE] ends the caller stream with an error naming the deployment', async () => {
    const { azure, g } = await setup('router_settings: { num_retries: 0 }');
    azure.always(async (x) => {
      x.startSse();
      await x.event({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o', choices: [{ index: 0, delta: { role: 'assistant', content: 'par' }, finish_reason: null }] });
      x.finish();
    });
    const error = await collect(await g.client().chat.completions.create({ ...chat('gpt-4o', 'hi'), stream: true })).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(APIError);
    expect((error as APIError).message).toMatch(/deployment gpt-4o#0's stream ended before \[DONE\]/);
  });

  it('azure_ai (Foundry) appends /chat/completions to its api_base with the api-key header', async () => {
    const fake = await FakeOpenAI.start();
    cleanups.push(() => fake.close());
    const g = await gatewayFor(`
model_list:
  - model_name: m
    litellm_params: { model: azure_ai/mistral-large, api_base: "${fake.url}", api_key: foundry-key }
`);
    await g.client().chat.completions.create(chat('m', 'hi'));
    expect(fake.requests[0].path).toBe('/v1/chat/completions');
    expect(fake.requests[0].headers['api-key']).toBe('foundry-key');
    expect(fake.requests[0].body?.model).toBe('mistral-large');
  });
});

describe('OpenAI-compatible families', () => {
  /** Refuses what an OpenAI-compatible API refuses: another path, a missing Bearer key, a body without messages. */
  const strict =
    (key: string, then: Handler): Handler =>
    (x) => {
      if (x.request.method !== 'POST' || x.request.path !== '/v1/chat/completions') return x.json(404, { error: { message: 'Not found', type: 'invalid_request_error' } });
      if (x.request.headers.authorization !== `Bearer ${key}`) return x.json(401, { error: { message: 'Invalid API Key', type: 'invalid_request_error', code: 'invalid_api_key' } });
      if (!Array.isArray(x.request.body?.messages)) return x.json(400, { error: { message: "'messages' is required", type: 'invalid_request_error' } });
      return then(x);
    };

  it.each(['groq', 'together_ai', 'deepseek', 'mistral', 'fireworks_ai', 'xai', 'openrouter', 'perplexity', 'gemini', 'ollama_chat', 'hosted_vllm', 'vllm', 'openai_compatible', 'custom_openai'])(
    '%s/ calls {api_base}/chat/completions with a Bearer key and the model name without its prefix',
    async (provider) => {
      const fake = await FakeOpenAI.start();
      cleanups.push(() => fake.close());
      fake.always(strict('family-key', respond.completion('from the family')));
      const g = await gatewayFor(`
model_list:
  - model_name: m
    litellm_params: { model: ${provider}/org/model-1, api_base: "${fake.url}", api_key: family-key }
`);
      expect((await g.client().chat.completions.create(chat('m', 'hi'))).choices[0].message.content).toBe('from the family');
      expect(fake.requests[0].body?.model).toBe('org/model-1');
    },
  );
});

describe('Mistral', () => {
  it('streams without stream_options, which its API refuses (usage comes in its last chunk anyway)', async () => {
    const fake = await FakeOpenAI.start();
    cleanups.push(() => fake.close());
    fake.always(async (x) => {
      if (x.request.body?.stream_options !== undefined) {
        return x.json(422, { object: 'error', message: { detail: [{ type: 'extra_forbidden', loc: ['body', 'stream_options'], msg: 'Extra inputs are not permitted' }] }, type: 'invalid_request_error' });
      }
      x.startSse();
      await x.event({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'mistral-small', choices: [{ index: 0, delta: { role: 'assistant', content: 'Bonjour' }, finish_reason: null }] });
      await x.event({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'mistral-small', choices: [{ index: 0, delta: { content: '' }, finish_reason: 'stop' }], usage: { prompt_tokens: 4, completion_tokens: 2, total_tokens: 6 } });
      await x.done();
    });
    const g = await gatewayFor(`
model_list:
  - model_name: m
    litellm_params: { model: mistral/mistral-small, api_base: "${fake.url}", api_key: k, tpm: 100000 }
`);
    const chunks = await collect(await g.client().chat.completions.create({ ...chat('m', 'hi'), stream: true }));
    expect(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe('Bonjour');
    expect(fake.requests[0].body?.stream_options).toBeUndefined();
    // tpm is reconciled with the usage of the last chunk.
    await waitFor(async () => {
      const body = (await (await fetch(`${g.url}/queue/status`)).json()) as { models: Array<{ inFlight: number; deployments: Array<{ tpmUsed: number }> }> };
      return body.models[0].inFlight === 0 ? true : undefined;
    }, 'the slot to be released');
    const body = (await (await fetch(`${g.url}/queue/status`)).json()) as { models: Array<{ deployments: Array<{ tpmUsed: number }> }> };
    expect(body.models[0].deployments[0].tpmUsed).toBe(6);
  });
});

describe('Anthropic', () => {
  async function setup(extra = '', router = '') {
    const anthropic = await FakeAnthropic.start({ apiKey: 'sk-ant-test' });
    cleanups.push(() => anthropic.close());
    const g = await gatewayFor(`
model_list:
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5
      api_base: ${anthropic.apiBase}
      api_key: sk-ant-test
${extra}
router_settings:
  default_max_tokens: 321
${router}`);
    return { anthropic, g };
  }

  it('translates a completion with system prompts both ways; max_tokens defaults to default_max_tokens', async () => {
    const { anthropic, g } = await setup();
    const completion = await g.client().chat.completions.create({
      model: 'claude',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'hi' },
      ],
      stop: ['\n\n'],
    });
    expect(anthropic.refused).toEqual([]);
    expect(completion.choices[0]).toMatchObject({ finish_reason: 'stop', message: { role: 'assistant', content: 'Hello from Claude.' } });
    expect(completion.usage).toEqual({ prompt_tokens: 12, completion_tokens: 6, total_tokens: 18 });
    expect(anthropic.accepted[0].request.body).toEqual({
      model: 'claude-sonnet-4-5',
      max_tokens: 321,
      system: 'Be brief.',
      stop_sequences: ['\n\n'],
      messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }],
    });
  });

  it('tools: a tool_use answer is OpenAI tool_calls, and the tool result goes back as a user tool_result', async () => {
    const { anthropic, g } = await setup();
    anthropic.next(reply.json(200, anthropicMessage('claude-sonnet-4-5', [{ type: 'tool_use', id: 'toolu_1', name: 'weather', input: { city: 'Paris' } }], 'tool_use')));
    const tools: OpenAI.Chat.Completions.ChatCompletionTool[] = [{ type: 'function', function: { name: 'weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
    const first = await g.client().chat.completions.create({ model: 'claude', messages: [{ role: 'user', content: 'Weather in Paris?' }], tools, tool_choice: 'required' });
    const call = first.choices[0].message.tool_calls![0] as OpenAI.Chat.Completions.ChatCompletionMessageFunctionToolCall;
    expect(first.choices[0].finish_reason).toBe('tool_calls');
    expect(call).toEqual({ id: 'toolu_1', type: 'function', function: { name: 'weather', arguments: '{"city":"Paris"}' } });
    expect(anthropic.accepted[0].request.body?.tool_choice).toEqual({ type: 'any' });

    const second = await g.client().chat.completions.create({
      model: 'claude',
      messages: [{ role: 'user', content: 'Weather in Paris?' }, first.choices[0].message, { role: 'tool', tool_call_id: 'toolu_1', content: '18C and sunny' }],
      tools,
    });
    expect(second.choices[0].message.content).toBe('Hello from Claude.');
    expect(anthropic.refused).toEqual([]);
    expect(anthropic.accepted[1].request.body?.messages.at(-1)).toEqual({ role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: '18C and sunny' }] });
  });

  it('streams text and tool-call deltas as OpenAI chunks ending with [DONE]; usage only when asked for', async () => {
    const { anthropic, g } = await setup();
    anthropic.next(reply.stream(['Hel', 'lo'], { id: 'toolu_2', name: 'weather', json: ['{"city":', '"Rome"}'] }));
    const chunks = await collect(await g.client().chat.completions.create({ ...chat('claude', 'hi'), stream: true }));
    expect(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe('Hello');
    const args = chunks.flatMap((c) => c.choices[0]?.delta?.tool_calls ?? []).map((t) => t.function?.arguments ?? '').join('');
    expect(args).toBe('{"city":"Rome"}');
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('tool_calls');
    expect(chunks.some((c) => c.usage)).toBe(false);
    expect(anthropic.accepted[0].request.body?.stream).toBe(true);

    const withUsage = await collect(await g.client().chat.completions.create({ ...chat('claude', 'hi'), stream: true, stream_options: { include_usage: true } }));
    expect(withUsage.at(-1)?.usage).toEqual({ prompt_tokens: 12, completion_tokens: 9, total_tokens: 21 });
    expect(anthropic.refused).toEqual([]);
  });

  it("an Anthropic 400 passes through with Anthropic's message", async () => {
    const { anthropic, g } = await setup();
    anthropic.next(reply.json(400, anthropicError('invalid_request_error', 'prompt is too long: 250000 tokens > 200000 maximum')));
    const e = await rejection(g.client().chat.completions.create(chat('claude', 'hi')));
    expect(e.status).toBe(400);
    expect(e.message).toMatch(/prompt is too long/);
  });

  it('a request Anthropic cannot express is a 400 naming the field, and never reaches Anthropic', async () => {
    const { anthropic, g } = await setup();
    const e = await rejection(g.client().chat.completions.create({ model: 'claude', messages: [{ role: 'function', name: 'f', content: 'x' } as never] }));
    expect(e.status).toBe(400);
    expect(e.message).toMatch(/messages\[0\]\.role/);
    expect(anthropic.fake.requests).toHaveLength(0);
  });

  /** One group of two Anthropic deployments (claude-a, claude-b) on one fake: a cooled-down one is routed around. */
  async function twoDeployments() {
    const anthropic = await FakeAnthropic.start({ apiKey: 'k' });
    cleanups.push(() => anthropic.close());
    const g = await gatewayFor(`
model_list:
  - model_name: claude
    litellm_params: { model: anthropic/claude-a, api_base: "${anthropic.apiBase}", api_key: k }
    model_info: { id: claude-a }
  - model_name: claude
    litellm_params: { model: anthropic/claude-b, api_base: "${anthropic.apiBase}", api_key: k }
    model_info: { id: claude-b }
`);
    return { anthropic, g };
  }

  it('529 overloaded with retry-after cools the deployment down and the request moves to the next one', async () => {
    const { anthropic, g } = await twoDeployments();
    const events = eventsOf(g);
    anthropic.next(reply.json(529, anthropicError('overloaded_error', 'Overloaded'), { 'retry-after': '30' }));
    const completion = await g.client().chat.completions.create(chat('claude', 'hi'));
    expect(completion.choices[0].message.content).toBe('Hello from Claude.');
    const cooldown = events.find((e) => e.type === 'deployment.cooldown_start');
    expect(cooldown).toMatchObject({ reason: 'rate_limited' });
    const cooled = (cooldown as { deployment: string }).deployment;
    expect(anthropic.accepted.map((x) => x.request.body?.model)).toEqual(cooled === 'claude-a' ? ['claude-a', 'claude-b'] : ['claude-b', 'claude-a']);
    expect((cooldown as { until: number }).until - (cooldown as { at: number }).at).toBeGreaterThan(25_000);
  });

  it("a stream's overloaded_error event before any content cools the deployment down and the request moves on", async () => {
    const { anthropic, g } = await twoDeployments();
    const events = eventsOf(g);
    anthropic.next(reply.raw([sse({ type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } })]));
    const chunks = await collect(await g.client().chat.completions.create({ ...chat('claude', 'hi'), stream: true }));
    expect(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe('Hello from Claude.');
    expect(events.filter((e) => e.type === 'deployment.cooldown_start')).toHaveLength(1);
    expect(events.find((e) => e.type === 'request.retry')).toMatchObject({ reason: expect.stringMatching(/overloaded_error: Overloaded/) });
  });

  it.each([
    ['an unreadable body', reply.raw(['this is not json'])],
    ['a body that is not a message', reply.json(200, { hello: 'world' })],
  ])('%s is a 502 in the OpenAI envelope naming the deployment', async (_what, handler) => {
    const { anthropic, g } = await setup('', '  num_retries: 0');
    anthropic.next(handler);
    // (raw() answers as an event stream: as a body it is unreadable JSON all the same.)
    const e = await rejection(g.client().chat.completions.create(chat('claude', 'hi'), { maxRetries: 0 }));
    expect(e.status).toBe(502);
    expect(e.error).toMatchObject({ type: 'upstream_error', code: 'upstream_error' });
    expect(e.message).toMatch(/deployment claude#0/);
  });

  it('a stream whose first event has the wrong shape is a 502 naming the deployment', async () => {
    const { anthropic, g } = await setup('', '  num_retries: 0');
    anthropic.always(reply.raw([sse({ type: 'message_start' })]));
    const e = await rejection(g.client().chat.completions.create({ ...chat('claude', 'hi'), stream: true }));
    expect(e.status).toBe(502);
    expect(e.message).toMatch(/deployment claude#0 sent a malformed stream event: message_start has no message/);
  });

  it('a stream that ends before message_stop ends the caller stream with an error, not a hang', async () => {
    const { anthropic, g } = await setup();
    const events = anthropicStreamEvents('claude-sonnet-4-5', ['partial']).slice(0, 4);
    anthropic.always(reply.raw(events.map((e) => sse(e))));
    const stream = await g.client().chat.completions.create({ ...chat('claude', 'hi'), stream: true });
    const error = await collect(stream).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(APIError);
    expect((error as APIError).message).toMatch(/ended before message_stop/);
  });
});

describe('upstream rate-limit headers through the gateway', () => {
  it('OpenAI headers saying 0 requests remain hold the next request until the reset (status, event, metrics), then it goes', async () => {
    const fake = await FakeOpenAI.start();
    cleanups.push(() => fake.close());
    let blockedAnswerAt = 0;
    fake.next((x) => {
      blockedAnswerAt = Date.now();
      x.json(200, azureCompletion(x, 'first'), { 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '1500ms', 'x-ratelimit-remaining-tokens': '9000', 'x-ratelimit-reset-tokens': '1s' });
    });
    const g = await gatewayFor(`
model_list:
  - model_name: m
    litellm_params: { model: openai/gpt-4o, api_base: "${fake.url}", api_key: sk-x }
`);
    const events = eventsOf(g);
    expect((await g.client().chat.completions.create(chat('m', 'one'))).choices[0].message.content).toBe('first');
    const limited = await waitFor(() => events.find((e) => e.type === 'deployment.upstream_limited'), 'the upstream_limited event');
    expect(limited).toMatchObject({ model: 'm', deployment: 'm#0', reason: 'requests' });
    const until = (limited as { until: number }).until;

    const second = g.client().chat.completions.create(chat('m', 'two'));
    const status = await waitFor(async () => {
      const body = (await (await fetch(`${g.url}/queue/status`)).json()) as { models: Array<{ waiting: number; deployments: Array<{ upstreamBlockedUntil: number | null; headroom: number | null }> }> };
      return body.models[0].waiting === 1 ? body.models[0] : undefined;
    }, 'the second request to wait');
    expect(status.deployments[0]).toMatchObject({ upstreamBlockedUntil: until, headroom: 0 });
    const metrics = await (await fetch(`${g.url}/metrics`)).text();
    expect(metrics).toMatch(/triage_deployment_upstream_limited_total\{model="m",deployment="m#0",reason="requests"\} 1/);
    const blockedSeconds = Number(/triage_deployment_upstream_blocked_seconds\{model="m",deployment="m#0"\} ([\d.e-]+)/.exec(metrics)?.[1]);
    expect(blockedSeconds).toBeGreaterThan(0);
    expect(blockedSeconds).toBeLessThanOrEqual(1.5);

    expect((await second).choices[0].message.content).toBe('Hello from the fake upstream.');
    expect(fake.requests).toHaveLength(2);
    // Not sent into a certain 429: it left after the provider's reset.
    expect(Date.now()).toBeGreaterThanOrEqual(until);
    expect(until - blockedAnswerAt).toBeGreaterThanOrEqual(1_400);
  });

  it("Anthropic's headers on a 429 block the deployment until their reset, beyond its retry-after", async () => {
    const anthropic = await FakeAnthropic.start({ apiKey: 'k' });
    cleanups.push(() => anthropic.close());
    const reset = new Date(Date.now() + 20_000).toISOString();
    anthropic.next(reply.json(429, anthropicError('rate_limit_error', 'Number of requests has exceeded your rate limit'), { 'retry-after': '1', 'anthropic-ratelimit-requests-remaining': '0', 'anthropic-ratelimit-requests-reset': reset }));
    const g = await gatewayFor(`
model_list:
  - model_name: claude
    litellm_params: { model: anthropic/claude-a, api_base: "${anthropic.apiBase}", api_key: k }
router_settings: { num_retries: 0 }
`);
    const events = eventsOf(g);
    const e = await rejection(g.client().chat.completions.create(chat('claude', 'hi')));
    expect(e.status).toBe(502);
    const limited = (await waitFor(() => events.find((ev) => ev.type === 'deployment.upstream_limited'), 'the upstream_limited event')) as { until: number; reason: string } | undefined;
    expect(limited?.reason).toBe('requests');
    expect(Math.abs(limited!.until - Date.parse(reset))).toBeLessThan(2_000);
    const cooldown = events.find((ev) => ev.type === 'deployment.cooldown_start') as { until: number } | undefined;
    expect(cooldown!.until).toBeLessThan(limited!.until);
  });

  it('on Redis, a block learned by one gateway holds the requests of another until the reset', async () => {
    const fake = await FakeOpenAI.start();
    cleanups.push(() => fake.close());
    const arrivals: number[] = [];
    fake.always((x) => {
      arrivals.push(Date.now());
      const headers: Record<string, string> = arrivals.length === 1 ? { 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '1500ms' } : {};
      x.json(200, azureCompletion(x, `answer ${arrivals.length}`), headers);
    });
    const { config } = parseConfig(`
model_list:
  - model_name: m
    litellm_params: { model: openai/gpt-4o, api_base: "${fake.url}", api_key: sk-x }
`, { env: {} });
    const prefix = freshPrefix('ublock-gw');
    const gateways: RunningGateway[] = [];
    for (const name of ['a', 'b']) {
      const store = createRedisStoreFactory({ url: sharedRedisUrl(), prefix }, { instanceId: `gw-${name}` });
      await store.whenReady();
      const g = await startGateway(config, { store });
      cleanups.push(async () => {
        await g.stop();
        await store.close();
      });
      gateways.push(g);
    }
    const [a, b] = gateways;
    const events = eventsOf(a);
    expect((await a.client().chat.completions.create(chat('m', 'one'))).choices[0].message.content).toBe('answer 1');
    // On Redis the release (and its event) may land just after the answer went out.
    const until = await waitFor(() => (events.find((e) => e.type === 'deployment.upstream_limited') as { until: number } | undefined)?.until, 'the upstream_limited event');

    const second = b.client().chat.completions.create(chat('m', 'two'));
    const seen = await waitFor(async () => {
      const body = (await (await fetch(`${b.url}/queue/status`)).json()) as { models: Array<{ waiting: number; deployments: Array<{ upstreamBlockedUntil: number | null }> }> };
      return body.models[0].waiting === 1 ? body.models[0] : undefined;
    }, 'the request on the other gateway to wait');
    expect(Math.abs(seen.deployments[0].upstreamBlockedUntil! - until)).toBeLessThan(1_000);
    expect((await second).choices[0].message.content).toBe('answer 2');
    // It reached the provider only after the reset the provider named (clocks of one machine).
    expect(arrivals[1]).toBeGreaterThanOrEqual(until - 20);
  });

  it('respect_upstream_rate_limit_headers: false lets the next request go at once', async () => {
    const fake = await FakeOpenAI.start();
    cleanups.push(() => fake.close());
    fake.always((x) => x.json(200, azureCompletion(x, 'ok'), { 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '6m0s' }));
    const g = await gatewayFor(`
model_list:
  - model_name: m
    litellm_params: { model: openai/gpt-4o, api_base: "${fake.url}", api_key: sk-x, respect_upstream_rate_limit_headers: false }
`);
    const events = eventsOf(g);
    await g.client().chat.completions.create(chat('m', 'one'));
    await g.client().chat.completions.create(chat('m', 'two'));
    expect(fake.requests).toHaveLength(2);
    expect(events.some((e) => e.type === 'deployment.upstream_limited')).toBe(false);
  });
});
