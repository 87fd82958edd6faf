/**
 * The clients people use today, as they are, against the gateway on the `npm start` code path (a YAML
 * config with mock deployments, real sockets): the openai SDK (chat, Responses, embeddings, legacy
 * completions, streaming), the AI SDK's default provider (which calls /v1/responses) and its `embed`,
 * and LangChain's ChatOpenAI (chat and Responses) and OpenAIEmbeddings. Priority travels by each
 * client's idiomatic channel and is checked in the response headers and the order of service.
 */
import { createOpenAI } from '@ai-sdk/openai';
import { ChatOpenAI, OpenAIEmbeddings } from '@langchain/openai';
import { embed, embedMany, generateText, jsonSchema, streamText, tool } from 'ai';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/adapters/config-loader.js';
import { FakeClock } from '../src/core/clock.js';
import type { QueueEvent } from '../src/events.js';
import { startGateway, waitFor, type RunningGateway } from './support/gateway.js';

const YAML = `
model_list:
  - model_name: chat-mock
    litellm_params:
      model: mock/chat
      mock_response: "Hello from the mock deployment, word by word."
      mock_tool_calls:
        - id: call_weather
          function: { name: get_weather, arguments: { city: Paris } }
  - model_name: json-mock
    litellm_params:
      model: mock/json
      mock_response: { city: Paris, temperature: 21 }
  - model_name: embed-mock
    litellm_params: { model: mock/embed, mock_response: "" }
    model_info: { mode: embedding, output_vector_size: 8 }
  - model_name: text-mock
    litellm_params: { model: mock/text, mock_response: "once upon a time" }
    model_info: { mode: completion }
  - model_name: one-slot
    litellm_params:
      model: mock/one
      mock_response: "served"
      mock_delay: 1
      max_parallel_requests: 1
`;

let running: RunningGateway[] = [];
afterEach(async () => {
  await Promise.all(running.map((g) => g.stop()));
  running = [];
});

/** The paths the gateway was called on, in order (read off its HTTP server). */
const paths = new WeakMap<RunningGateway, string[]>();

async function start(clock?: FakeClock): Promise<RunningGateway> {
  const { config } = parseConfig(YAML, { env: {} });
  const g = await startGateway(config, clock ? { clock } : {});
  running.push(g);
  const seen: string[] = [];
  g.gateway.app.server.on('request', (req: { url?: string }) => seen.push(req.url ?? ''));
  paths.set(g, seen);
  return g;
}

const KEY = 'sk-anything';

describe('the openai SDK', () => {
  it('chat: n choices, max_tokens truncation, tools answered with mock_tool_calls, structured output as JSON text', async () => {
    const client = (await start()).client();
    const two = await client.chat.completions.create({ model: 'chat-mock', messages: [{ role: 'user', content: 'hi' }], n: 2 });
    expect(two.choices.map((c) => c.index)).toEqual([0, 1]);
    expect(two.choices.every((c) => c.message.content === 'Hello from the mock deployment, word by word.')).toBe(true);

    const cut = await client.chat.completions.create({ model: 'chat-mock', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
    expect(cut.choices[0].finish_reason).toBe('length');
    expect(cut.choices[0].message.content).toBe('Hello fr');
    expect(cut.usage?.completion_tokens).toBe(2);

    const tools = await client.chat.completions.create({
      model: 'chat-mock',
      messages: [{ role: 'user', content: 'weather?' }],
      tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }],
    });
    expect(tools.choices[0].finish_reason).toBe('tool_calls');
    expect(tools.choices[0].message.tool_calls).toEqual([{ id: 'call_weather', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }]);

    const json = await client.chat.completions.parse({
      model: 'json-mock',
      messages: [{ role: 'user', content: 'weather?' }],
      response_format: { type: 'json_schema', json_schema: { name: 'weather', schema: { type: 'object', properties: { city: { type: 'string' }, temperature: { type: 'number' } } } } },
    });
    expect(json.choices[0].message.parsed).toEqual({ city: 'Paris', temperature: 21 });
  });

  it('chat streaming: usage in a last chunk with choices [] only when stream_options.include_usage asks', async () => {
    const client = (await start()).client();
    const withUsage = [];
    for await (const c of await client.chat.completions.create({ model: 'chat-mock', messages: [{ role: 'user', content: 'hi' }], stream: true, stream_options: { include_usage: true } })) withUsage.push(c);
    expect(withUsage.at(-1)!.choices).toEqual([]);
    expect(withUsage.at(-1)!.usage?.total_tokens).toBeGreaterThan(0);
    expect(withUsage.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Hello from the mock deployment, word by word.');
    const without = [];
    for await (const c of await client.chat.completions.create({ model: 'chat-mock', messages: [{ role: 'user', content: 'hi' }], stream: true })) without.push(c);
    expect(without.every((c) => c.usage == null && c.choices.length === 1)).toBe(true);
    expect(without.at(-1)!.choices[0].finish_reason).toBe('stop');
  });

  it('responses: text, instructions, tools and streaming, translated to chat for a mock', async () => {
    const client = (await start()).client();
    const { data, response } = await client.responses.create({ model: 'chat-mock', input: 'hi', instructions: 'Be brief.' }, { headers: { 'x-triage-priority': '4' } }).withResponse();
    expect(response.headers.get('x-triage-priority')).toBe('4');
    expect(data.object).toBe('response');
    expect(data.status).toBe('completed');
    expect(data.output_text).toBe('Hello from the mock deployment, word by word.');
    expect(data.usage?.total_tokens).toBe((data.usage?.input_tokens ?? 0) + (data.usage?.output_tokens ?? 0));

    const called = await client.responses.create({
      model: 'chat-mock',
      input: [{ role: 'user', content: 'weather in Paris?' }],
      tools: [{ type: 'function', name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } }, strict: false }],
    });
    expect(called.output).toMatchObject([{ type: 'function_call', name: 'get_weather', call_id: 'call_weather', arguments: '{"city":"Paris"}' }]);

    const events: string[] = [];
    let text = '';
    for await (const e of await client.responses.create({ model: 'chat-mock', input: 'hi', stream: true })) {
      events.push(e.type);
      if (e.type === 'response.output_text.delta') text += e.delta;
    }
    expect(text).toBe('Hello from the mock deployment, word by word.');
    expect(events.slice(0, 2)).toEqual(['response.created', 'response.in_progress']);
    expect(events).toContain('response.output_item.added');
    expect(events.at(-1)).toBe('response.completed');
  });

  it('embeddings: deterministic vectors of the configured dimensions, base64 (the SDK default) or floats', async () => {
    const client = (await start()).client();
    const a = await client.embeddings.create({ model: 'embed-mock', input: ['alpha', 'beta'] });
    expect(a.data).toHaveLength(2);
    expect(a.data.map((d) => d.embedding.length)).toEqual([8, 8]);
    expect(a.usage.total_tokens).toBeGreaterThan(0);
    const b = await client.embeddings.create({ model: 'embed-mock', input: 'alpha', encoding_format: 'float' });
    // The same input gives the same vector whichever encoding carried it (float32 precision).
    expect(b.data[0].embedding).toEqual(a.data[0].embedding);
    expect(a.data[1].embedding).not.toEqual(a.data[0].embedding);
    const norm = Math.hypot(...b.data[0].embedding);
    expect(norm).toBeCloseTo(1, 5);
    const wide = await client.embeddings.create({ model: 'embed-mock', input: [[1, 2, 3]], dimensions: 4 });
    expect(wide.data[0].embedding).toHaveLength(4);
  });

  it('legacy completions, whole and streamed', async () => {
    const client = (await start()).client();
    const c = await client.completions.create({ model: 'text-mock', prompt: 'Tell me a story' });
    expect(c.object).toBe('text_completion');
    expect(c.choices[0].text).toBe('once upon a time');
    let text = '';
    for await (const chunk of await client.completions.create({ model: 'text-mock', prompt: 'Tell me', stream: true })) text += chunk.choices[0]?.text ?? '';
    expect(text).toBe('once upon a time');
  });

  it('a call on the wrong endpoint for its group is a 400 naming the endpoint to use', async () => {
    const client = (await start()).client();
    await expect(client.chat.completions.create({ model: 'embed-mock', messages: [{ role: 'user', content: 'hi' }] })).rejects.toMatchObject({
      status: 400,
      code: 'wrong_endpoint',
      message: expect.stringContaining('POST /v1/embeddings'),
    });
    await expect(client.embeddings.create({ model: 'chat-mock', input: 'x' })).rejects.toMatchObject({ status: 400, code: 'wrong_endpoint', message: expect.stringContaining('POST /v1/chat/completions') });
  });
});

describe('the AI SDK (default provider: the Responses API)', () => {
  it('generateText, streamText with tools, and embed; priority through per-call headers', async () => {
    const g = await start();
    const openai = createOpenAI({ baseURL: `${g.url}/v1`, apiKey: KEY });
    const result = await generateText({ model: openai('chat-mock'), prompt: 'hi', headers: { 'x-triage-priority': '3' }, maxRetries: 0 });
    expect(result.text).toBe('Hello from the mock deployment, word by word.');
    expect(result.response.headers?.['x-triage-priority']).toBe('3');
    expect(result.usage.totalTokens).toBeGreaterThan(0);

    const streamed = streamText({ model: openai('chat-mock'), prompt: 'hi', headers: { 'x-triage-priority': '2' }, maxRetries: 0 });
    expect(await streamed.text).toBe('Hello from the mock deployment, word by word.');
    expect((await streamed.response).headers?.['x-triage-priority']).toBe('2');

    const withTools = await generateText({
      model: openai('chat-mock'),
      prompt: 'weather in Paris?',
      tools: { get_weather: tool({ description: 'weather', inputSchema: jsonSchema<{ city: string }>({ type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }) }) },
      maxRetries: 0,
    });
    expect(withTools.toolCalls).toMatchObject([{ toolName: 'get_weather', input: { city: 'Paris' } }]);

    const one = await embed({ model: openai.embedding('embed-mock'), value: 'alpha', maxRetries: 0 });
    expect(one.embedding).toHaveLength(8);
    const many = await embedMany({ model: openai.embedding('embed-mock'), values: ['alpha', 'beta'], maxRetries: 0 });
    expect(many.embeddings[0]).toEqual(one.embedding);
    expect(paths.get(g)).toEqual(['/v1/responses', '/v1/responses', '/v1/responses', '/v1/embeddings', '/v1/embeddings']);
  });
});

describe('LangChain', () => {
  it('ChatOpenAI invoke and stream (chat and useResponsesApi), OpenAIEmbeddings; priority through default headers', async () => {
    const g = await start();
    const configuration = { baseURL: g.url, defaultHeaders: { 'x-triage-priority': '6' } };
    const model = new ChatOpenAI({ model: 'chat-mock', apiKey: KEY, configuration, maxRetries: 0 });
    const answer = await model.invoke('hi');
    expect(answer.content).toBe('Hello from the mock deployment, word by word.');
    let text = '';
    for await (const chunk of await model.stream('hi')) text += String(chunk.content);
    expect(text).toBe('Hello from the mock deployment, word by word.');

    const responses = new ChatOpenAI({ model: 'chat-mock', apiKey: KEY, configuration, maxRetries: 0, useResponsesApi: true });
    const viaResponses = await responses.invoke('hi');
    expect(viaResponses.text).toBe('Hello from the mock deployment, word by word.');
    let streamed = '';
    for await (const chunk of await responses.stream('hi')) streamed += chunk.text;
    expect(streamed).toBe('Hello from the mock deployment, word by word.');

    const embeddings = new OpenAIEmbeddings({ model: 'embed-mock', apiKey: KEY, configuration: { baseURL: g.url }, maxRetries: 0 });
    const vectors = await embeddings.embedDocuments(['alpha', 'beta']);
    expect(vectors.map((v) => v.length)).toEqual([8, 8]);
    expect(await embeddings.embedQuery('alpha')).toEqual(vectors[0]);
    expect(paths.get(g)).toEqual(['/chat/completions', '/chat/completions', '/responses', '/responses', '/embeddings', '/embeddings']);
  });
});

describe('priority through each client, in the order of service', () => {
  it('one slot: waiting requests from the three clients are served best priority first', async () => {
    const clock = new FakeClock();
    const g = await start(clock);
    const dispatched: string[] = [];
    g.gateway.router.events.subscribe((e: QueueEvent) => {
      if (e.type === 'request.dispatched' && e.model === 'one-slot') dispatched.push(`${e.priority}`);
    });
    // A first request takes the only slot (its mock delay runs on the fake clock).
    const blocker = g.client().chat.completions.create({ model: 'one-slot', messages: [{ role: 'user', content: 'first' }], priority: 0 } as never);
    await waitFor(() => (dispatched.length === 1 ? true : undefined), 'the blocker to be dispatched');

    const openai = createOpenAI({ baseURL: `${g.url}/v1`, apiKey: KEY });
    const aiSdk = generateText({ model: openai('one-slot'), prompt: 'ai sdk', headers: { 'x-triage-priority': '9' }, maxRetries: 0 });
    const langchain = new ChatOpenAI({ model: 'one-slot', apiKey: KEY, configuration: { baseURL: g.url, defaultHeaders: { 'x-triage-priority': '5' } }, maxRetries: 0 }).invoke('langchain');
    const sdk = g.client().chat.completions.create({ model: 'one-slot', messages: [{ role: 'user', content: 'sdk' }], priority: 1 } as never).withResponse();
    await waitFor(async () => {
      const status = (await (await fetch(`${g.url}/queue/status`)).json()) as { models: Array<{ model: string; waiting: number }> };
      return status.models.find((m) => m.model === 'one-slot')!.waiting === 3 ? true : undefined;
    }, 'three waiters');

    // Each mock call takes 1 s of fake time: release them one by one.
    for (let served = 1; served < 4; served++) {
      clock.advance(1_000);
      await waitFor(() => (dispatched.length === served + 1 ? true : undefined), `dispatch ${served + 1}`);
    }
    clock.advance(1_000);
    await blocker;
    const [text, lc, { response }] = await Promise.all([aiSdk, langchain, sdk]);
    expect(text.text).toBe('served');
    expect(text.response.headers?.['x-triage-priority']).toBe('9');
    expect(lc.content).toBe('served');
    expect(response.headers.get('x-triage-priority')).toBe('1');
    expect(dispatched).toEqual(['0', '1', '5', '9']);
  });
});
