/**
 * Which group answers a requested model: exact names, `model_group_alias` (hidden or listed), and
 * wildcards (`model_name: "*"` with `model: openai/*`), each concrete model with its own queue and
 * limits, created on first use and bounded; a group with no callable deployment answers 503. The pure
 * matching is tested alone; the rest end to end, the official OpenAI client calling the gateway over a
 * real socket and an OpenAI fake upstream that refuses a wrong path or key.
 */
import OpenAI, { APIError } from 'openai';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { parseConfig } from '../src/adapters/config-loader.js';
import type { DeploymentConfig } from '../src/core/config-types.js';
import { concreteDeployment, matchWildcard, ModelResolver, specificity } from '../src/model-resolver.js';
import { completionBody, FakeOpenAI, openAIError, type Exchange } from './support/fake-openai.js';
import { chat, startGateway, waitFor, type RunningGateway } from './support/gateway.js';

describe('wildcard matching (pure)', () => {
  it('captures what each * matched, / included; a pattern without * matches only itself', () => {
    expect(matchWildcard('*', 'gpt-4o')).toEqual(['gpt-4o']);
    expect(matchWildcard('*', 'openai/gpt-4o')).toEqual(['openai/gpt-4o']);
    expect(matchWildcard('anthropic/*', 'anthropic/claude-3-5-sonnet')).toEqual(['claude-3-5-sonnet']);
    expect(matchWildcard('anthropic/*', 'gpt-4o')).toBeUndefined();
    expect(matchWildcard('a*-*z', 'abc-xyz')).toEqual(['bc', 'xy']);
    expect(matchWildcard('a*b', 'ab')).toEqual(['']);
    expect(matchWildcard('exact', 'exact')).toEqual([]);
    expect(matchWildcard('exact', 'exactly')).toBeUndefined();
  });

  it('ranks patterns by their literal characters, so `anthropic/*` beats `*`', () => {
    expect(specificity('anthropic/*')).toBeGreaterThan(specificity('*'));
    const config = parseConfig(
      `model_list:
  - { model_name: "*", litellm_params: { model: "openai/*" } }
  - { model_name: "anthropic/*", litellm_params: { model: "mock/*", mock_response: hi } }
  - { model_name: anthropic/claude-exact, litellm_params: { model: mock/x, mock_response: hi } }
`,
      { env: {} },
    ).config;
    const resolver = new ModelResolver(config);
    expect(resolver.resolve('anthropic/claude-exact')).toEqual({ kind: 'group', group: 'anthropic/claude-exact' });
    expect(resolver.resolve('anthropic/claude-3')).toMatchObject({ kind: 'wildcard', group: 'anthropic/claude-3', pattern: 'anthropic/*' });
    expect(resolver.resolve('gpt-4o')).toMatchObject({ kind: 'wildcard', group: 'gpt-4o', pattern: '*' });
    // Names a wildcard never turns into a group of their own.
    expect(resolver.resolve('x'.repeat(257))).toEqual({ kind: 'unknown' });
    expect(resolver.resolve('bad\nname')).toEqual({ kind: 'unknown' });
  });

  it('a concrete deployment sends the matched name upstream, keeping the wildcard provider and limits', () => {
    const d: DeploymentConfig = { id: '*#0', modelName: '*', model: 'openai/*', provider: 'openai', upstreamModel: '*', limits: { rpm: 5 }, mockDelayMs: 0, apiBase: 'http://x/v1' };
    expect(concreteDeployment(d, 'gpt-4o', ['gpt-4o'])).toEqual({ ...d, id: '*#0/gpt-4o', modelName: 'gpt-4o', model: 'openai/gpt-4o', upstreamModel: 'gpt-4o' });
    const fixed = { ...d, model: 'openai/gpt-4o-mini', upstreamModel: 'gpt-4o-mini' };
    expect(concreteDeployment(fixed, 'anything', ['anything'])).toMatchObject({ model: 'openai/gpt-4o-mini', upstreamModel: 'gpt-4o-mini' });
    // An unprefixed `*` stays OpenAI's (its endpoint was read at load) and sends the whole name.
    const bare = { ...d, model: '*', upstreamModel: '*' };
    expect(concreteDeployment(bare, 'org/model', ['org/model'])).toMatchObject({ provider: 'openai', model: 'org/model', upstreamModel: 'org/model', apiBase: 'http://x/v1' });
  });
});

describe('model resolution over HTTP', () => {
  let fake: FakeOpenAI;
  let gateway: RunningGateway | undefined;
  /** Upstream exchanges held until the test answers them. */
  let held: Exchange[];

  beforeEach(async () => {
    held = [];
    fake = await FakeOpenAI.start();
    // OpenAI's wire format: anything else is refused as OpenAI would.
    fake.always((x) => {
      if (x.request.method !== 'POST' || x.request.path !== '/v1/chat/completions') return x.json(404, openAIError(`Invalid URL (${x.request.method} ${x.request.path})`));
      if (x.request.headers.authorization !== 'Bearer sk-upstream') return x.json(401, openAIError('Incorrect API key provided', 'invalid_request_error', null, 'invalid_api_key'));
      if (typeof x.request.body?.model !== 'string' || !Array.isArray(x.request.body.messages)) return x.json(400, openAIError('model and messages are required'));
      held.push(x);
    });
  });

  afterEach(async () => {
    await gateway?.stop();
    gateway = undefined;
    await fake.close();
    expect(fake.handlerErrors).toEqual([]);
  });

  const answer = (x: Exchange) => x.json(200, completionBody(x.request.body!.model as string, `upstream saw ${x.request.body!.model}`));

  async function start(extra = ''): Promise<OpenAI> {
    const yaml = `
model_list:
  - model_name: "*"
    litellm_params:
      model: "openai/*"
      api_base: ${fake.url}
      api_key: os.environ/UPSTREAM_KEY
    max_parallel_requests: 1
  - model_name: "claude/*"
    litellm_params: { model: "mock/*", mock_response: from the claude wildcard }
  - model_name: gpt-4o-mini
    litellm_params: { model: mock/gpt-4o-mini, mock_response: from the exact group }
  - model_name: images
    litellm_params: { model: bedrock/stability.sd3-large-v1:0 }
router_settings:
  max_wildcard_models: 3
  model_group_alias:
    fast: gpt-4o-mini
    smart: gpt-4.1
    internal: { model: gpt-4o-mini, hidden: true }
${extra}`;
    const { config } = parseConfig(yaml, { env: { UPSTREAM_KEY: 'sk-upstream' } });
    gateway = await startGateway(config);
    return gateway.client();
  }

  it('routes any model through `*` with the requested name upstream, each model with its own queue and limits', async () => {
    const client = await start();
    const first = client.chat.completions.create(chat('gpt-4o', 'a'));
    const other = client.chat.completions.create(chat('gpt-4.1-nano', 'b'));
    // max_parallel_requests: 1 applies per concrete model: both models are in flight at once.
    await waitFor(() => (held.length === 2 ? true : undefined), 'both models dispatched');
    expect(held.map((x) => x.request.body!.model).sort()).toEqual(['gpt-4.1-nano', 'gpt-4o']);
    // A second gpt-4o request waits behind the first (its model's limit), not behind gpt-4.1-nano's.
    const second = client.chat.completions.create(chat('gpt-4o', 'c'));
    const status = async () => {
      const res = await fetch(`${gateway!.url}/queue/status`);
      const body = (await res.json()) as { models: Array<{ model: string; waiting: number }> };
      return body.models.find((m) => m.model === 'gpt-4o' && m.waiting === 1);
    };
    await waitFor(status, 'the second gpt-4o request waiting');
    expect(held).toHaveLength(2);
    for (const x of held.splice(0)) answer(x);
    expect((await first).choices[0].message.content).toBe('upstream saw gpt-4o');
    expect((await other).choices[0].message.content).toBe('upstream saw gpt-4.1-nano');
    await waitFor(() => (held.length === 1 ? true : undefined), 'the second gpt-4o request dispatched');
    answer(held.shift()!);
    expect((await second).choices[0].message.content).toBe('upstream saw gpt-4o');
  });

  it('exact names win over wildcards, a more specific wildcard over `*`, and aliases answer as their group', async () => {
    const client = await start();
    const exact = await client.chat.completions.create(chat('gpt-4o-mini', 'x')).withResponse();
    expect(exact.data.choices[0].message.content).toBe('from the exact group');
    expect(exact.response.headers.get('x-triage-deployment')).toBe('gpt-4o-mini#0');
    const claude = await client.chat.completions.create(chat('claude/sonnet', 'x')).withResponse();
    expect(claude.data.choices[0].message.content).toBe('from the claude wildcard');
    expect(claude.response.headers.get('x-triage-deployment')).toBe('claude/*#0/claude/sonnet');
    const alias = await client.chat.completions.create(chat('fast', 'x'));
    expect(alias.choices[0].message.content).toBe('from the exact group');
    const hidden = await client.chat.completions.create(chat('internal', 'x'));
    expect(hidden.choices[0].message.content).toBe('from the exact group');
    // An alias may name a model a wildcard serves.
    const smart = client.chat.completions.create(chat('smart', 'x'));
    await waitFor(() => (held.length === 1 ? true : undefined), 'the alias dispatched through the wildcard');
    expect(held[0].request.body!.model).toBe('gpt-4.1');
    answer(held.shift()!);
    expect((await smart).choices[0].message.content).toBe('upstream saw gpt-4.1');

    const ids = (await client.models.list()).data.map((m) => m.id);
    expect(ids).toEqual(expect.arrayContaining(['gpt-4o-mini', 'images', 'fast', 'smart', 'claude/sonnet', 'gpt-4.1']));
    expect(ids).not.toContain('internal');
    expect(ids).not.toContain('*');
  });

  it("lets an event subscriber name a model a wildcard serves before its first request, and an alias (its group's events)", async () => {
    const client = await start();
    const messages: Array<{ type: string; model?: string; filter?: { models: string[] } }> = [];
    const socket = new WebSocket(`${gateway!.url.replace('http', 'ws')}/queue/events?models=gpt-5,fast`);
    socket.on('message', (data) => messages.push(JSON.parse(String(data)) as (typeof messages)[number]));
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('error', reject);
    });
    try {
      await waitFor(() => (messages.some((m) => m.type === 'snapshot') ? true : undefined), 'the snapshot');
      const p = client.chat.completions.create(chat('gpt-5', 'x'));
      await client.chat.completions.create(chat('fast', 'x'));
      await waitFor(() => (held.length === 1 ? true : undefined), 'gpt-5 dispatched');
      answer(held.shift()!);
      await p;
      await waitFor(() => (messages.filter((m) => m.type === 'request.done').length === 2 ? true : undefined), 'both done events');
      expect(new Set(messages.filter((m) => m.type.startsWith('request.')).map((m) => m.model))).toEqual(new Set(['gpt-5', 'gpt-4o-mini']));
    } finally {
      socket.close();
    }
  });

  it('answers 503 no_callable_deployment for a group whose deployments were all skipped, naming why', async () => {
    const client = await start();
    const error = await client.chat.completions.create(chat('images', 'draw')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(APIError);
    expect((error as APIError).status).toBe(503);
    expect((error as APIError).code).toBe('no_callable_deployment');
    expect((error as APIError).message).toMatch(/provider "bedrock" has no adapter/);
  });

  it('bounds the concrete models a wildcard creates, with a clear 404 past the bound', async () => {
    const client = await start();
    for (const name of ['m1', 'm2', 'm3']) {
      const p = client.chat.completions.create(chat(name, 'x'));
      await waitFor(() => (held.length === 1 ? true : undefined), `${name} dispatched`);
      answer(held.shift()!);
      await p;
    }
    const error = await client.chat.completions.create(chat('m4', 'x')).catch((e: unknown) => e);
    expect((error as APIError).status).toBe(404);
    expect((error as APIError).code).toBe('wildcard_model_limit');
    expect((error as APIError).message).toContain("matches the wildcard '*', which already serves 3 models (router_settings.max_wildcard_models)");
    // Models already created keep working; the bound is per wildcard, so `claude/*` still creates.
    const again = client.chat.completions.create(chat('m2', 'x'));
    await waitFor(() => (held.length === 1 ? true : undefined), 'm2 dispatched again');
    answer(held.shift()!);
    await again;
    expect((await client.chat.completions.create(chat('claude/opus', 'x'))).choices[0].message.content).toBe('from the claude wildcard');
  });
});
