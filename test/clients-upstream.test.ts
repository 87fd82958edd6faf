/**
 * The new endpoints passed through to an OpenAI upstream: an in-process fake that refuses what the
 * real API refuses (wrong path, no key, unknown or missing fields), called through the gateway by the
 * openai SDK, the AI SDK and LangChain. Checks what the upstream receives (Triage's fields never
 * forwarded, except `priority` to a `forward_priority` deployment), that Responses stream events pass
 * through unchanged and end as OpenAI ends them, and that tpm is reconciled with each endpoint's usage.
 */
import { createOpenAI } from '@ai-sdk/openai';
import { ChatOpenAI, OpenAIEmbeddings } from '@langchain/openai';
import { generateText, streamText } from 'ai';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { QueueEvent } from '../src/events.js';
import { FAKE_USAGE, FakeOpenAI, openAIRefusal, respond, responseEvents, strictOpenAI } from './support/fake-openai.js';
import { startGateway, waitFor, type RunningGateway } from './support/gateway.js';
import { openAIDeployment, testConfig } from './support/test-config.js';

let fake: FakeOpenAI;
let g: RunningGateway;
let done: Array<Extract<QueueEvent, { type: 'request.done' }>>;

beforeEach(async () => {
  fake = await FakeOpenAI.start();
  fake.always(strictOpenAI());
  const config = testConfig({});
  config.modelGroups = [
    { name: 'gpt', deployments: [openAIDeployment(fake.url, 'gpt', 'a')] },
    { name: 'emb', deployments: [openAIDeployment(fake.url, 'emb', 'e', { mode: 'embedding' })] },
    { name: 'instruct', deployments: [openAIDeployment(fake.url, 'instruct', 'i', { mode: 'completion' })] },
    { name: 'vllm', deployments: [openAIDeployment(fake.url, 'vllm', 'v', { forwardPriority: true })] },
    { name: 'compat', deployments: [openAIDeployment(fake.url, 'compat', 'c', { provider: 'hosted_vllm', model: 'hosted_vllm/up-c' })] },
  ];
  g = await startGateway(config);
  done = [];
  g.gateway.router.events.subscribe((e: QueueEvent) => {
    if (e.type === 'request.done') done.push(e);
  });
});

afterEach(async () => {
  await g.stop();
  await fake.close();
});

const lastDone = () => waitFor(() => done.at(-1), 'request.done');

describe('the strict fake refuses what OpenAI refuses', () => {
  it('wrong path, no key, unknown field, missing field', () => {
    const base = { seq: 1, method: 'POST', headers: { authorization: 'Bearer k', 'content-type': 'application/json' }, rawBody: '' };
    expect(openAIRefusal({ ...base, path: '/v1/chat', body: {} })?.[0]).toBe(404);
    expect(openAIRefusal({ ...base, path: '/v1/embeddings', headers: { 'content-type': 'application/json' }, body: { model: 'm', input: 'x' } })?.[0]).toBe(401);
    expect(openAIRefusal({ ...base, path: '/v1/embeddings', body: { model: 'm', input: 'x', priority: 1 } })).toEqual([400, expect.objectContaining({ error: expect.objectContaining({ param: 'priority' }) })]);
    expect(openAIRefusal({ ...base, path: '/v1/responses', body: { model: 'm' } })?.[0]).toBe(400);
    expect(openAIRefusal({ ...base, path: '/v1/completions', body: { model: 'm', prompt: 'p' } })).toBeUndefined();
  });
});

describe('the openai SDK through the gateway to an OpenAI upstream', () => {
  it('responses: passed through with stateful fields, Triage fields removed, metadata.priority used', async () => {
    const { data, response } = await g
      .client()
      .responses.create({ model: 'gpt', input: 'hi', metadata: { priority: '3', trace: 't1' } as never, previous_response_id: 'resp_earlier', store: true })
      .withResponse();
    expect(data.output_text).toBe('Hello from the fake upstream.');
    expect(response.headers.get('x-triage-priority')).toBe('3');
    const sent = fake.requests.at(-1)!;
    expect(sent.path).toBe('/v1/responses');
    expect(sent.body).toEqual({ model: 'up-a', input: 'hi', metadata: { trace: 't1' }, previous_response_id: 'resp_earlier', store: true });
    expect((await lastDone()).tokens?.total_tokens).toBe(FAKE_USAGE.responses.total_tokens);
  });

  it('responses streaming: the upstream events pass through unchanged, named, and the stream ends after response.completed', async () => {
    const res = await fetch(`${g.url}/v1/responses`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-triage-priority': '2' },
      body: JSON.stringify({ model: 'gpt', input: 'hi', stream: true, timeout: 30 }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-triage-priority')).toBe('2');
    const raw = await res.text();
    const events = raw.trim().split('\n\n');
    const expected = responseEvents('up-a', ['Hello ', 'from ', 'the ', 'fake ', 'upstream.']);
    expect(events).toHaveLength(expected.length);
    events.forEach((e, i) => {
      const [name, data] = e.split('\n');
      expect(name).toBe(`event: ${expected[i].type}`);
      const parsed = JSON.parse(data.slice('data: '.length));
      // The same event, field for field, apart from the ids and times the fake makes per call.
      expect(Object.keys(parsed)).toEqual(Object.keys(expected[i]));
      expect(parsed.type).toBe(expected[i].type);
      expect(parsed.sequence_number).toBe(i);
    });
    expect(raw).not.toContain('[DONE]');
    expect(fake.requests.at(-1)!.body).toEqual({ model: 'up-a', input: 'hi', stream: true });
    expect((await lastDone()).tokens?.total_tokens).toBe(FAKE_USAGE.responses.total_tokens);
  });

  it('embeddings: forwarded as the SDK sends them (base64), usage reconciled; the priority header is not forwarded', async () => {
    const { data, response } = await g.client().embeddings.create({ model: 'emb', input: ['a', 'b'] }, { headers: { 'x-triage-priority': '8' } }).withResponse();
    expect(response.headers.get('x-triage-priority')).toBe('8');
    expect(data.data.map((d) => d.embedding.length)).toEqual([3, 3]);
    expect(data.data[0].embedding[0]).toBeCloseTo(0.5, 6);
    const sent = fake.requests.at(-1)!;
    expect(sent.path).toBe('/v1/embeddings');
    expect(sent.body).toEqual({ model: 'up-e', input: ['a', 'b'], encoding_format: 'base64' });
    expect(sent.headers['x-triage-priority']).toBeUndefined();
    expect((await lastDone()).tokens?.total_tokens).toBe(FAKE_USAGE.embeddings.total_tokens);
  });

  it('legacy completions, whole and streamed (usage asked for upstream, not shown unless asked)', async () => {
    const c = await g.client().completions.create({ model: 'instruct', prompt: 'Say hi', max_tokens: 5, priority: 4 } as never);
    expect((c as { choices: Array<{ text: string }> }).choices[0].text).toBe('Hello from the fake upstream.');
    expect(fake.requests.at(-1)!.body).toEqual({ model: 'up-i', prompt: 'Say hi', max_tokens: 5 });
    const chunks = [];
    for await (const chunk of await g.client().completions.create({ model: 'instruct', prompt: 'Say hi', stream: true })) chunks.push(chunk);
    expect(chunks.map((c) => c.choices[0]?.text ?? '').join('')).toBe('Hello from the fake upstream.');
    expect(chunks.every((c) => c.usage == null)).toBe(true);
    expect(fake.requests.at(-1)!.body).toEqual({ model: 'up-i', prompt: 'Say hi', stream: true, stream_options: { include_usage: true } });
    expect((await lastDone()).tokens?.total_tokens).toBe(FAKE_USAGE.completions.total_tokens);
  });

  it('priority is forwarded only to a deployment with forward_priority: true', async () => {
    fake.next(respond.completion('vllm says hi'));
    await g.client().chat.completions.create({ model: 'vllm', messages: [{ role: 'user', content: 'hi' }], priority: 7, timeout: 30 } as never);
    expect(fake.requests.at(-1)!.body).toEqual({ model: 'up-v', messages: [{ role: 'user', content: 'hi' }], stream: false, priority: 7 });
    // The strict fake (OpenAI) would refuse `priority`: the plain deployment never sends it.
    const plain = await g.client().chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: 'hi' }], priority: 7, timeout: 30 } as never);
    expect(plain.choices[0].message.content).toBe('Hello from the fake upstream.');
  });
});

describe('the Responses API to an OpenAI-compatible family that only speaks chat', () => {
  it('is translated to chat completions (whole and streamed), and stateful fields are refused', async () => {
    const client = g.client();
    const r = await client.responses.create({ model: 'compat', input: 'hi', instructions: 'Be brief.', max_output_tokens: 20, metadata: { priority: '1' } as never });
    expect(r.output_text).toBe('Hello from the fake upstream.');
    expect(r.usage).toMatchObject({ input_tokens: 5, output_tokens: 3, total_tokens: 8 });
    expect(fake.requests.at(-1)!.path).toBe('/v1/chat/completions');
    expect(fake.requests.at(-1)!.body).toEqual({
      model: 'up-c',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'hi' },
      ],
      max_tokens: 20,
      stream: false,
    });
    let text = '';
    const types: string[] = [];
    for await (const e of await client.responses.create({ model: 'compat', input: 'hi', stream: true })) {
      types.push(e.type);
      if (e.type === 'response.output_text.delta') text += e.delta;
      if (e.type === 'response.completed') expect(e.response.usage?.total_tokens).toBe(8);
    }
    expect(text).toBe('Hello from the fake upstream.');
    expect(types.at(-1)).toBe('response.completed');
    expect(fake.requests.at(-1)!.body).toMatchObject({ stream: true, stream_options: { include_usage: true } });
    await expect(client.responses.create({ model: 'compat', input: 'hi', previous_response_id: 'resp_1' })).rejects.toMatchObject({ status: 400, code: 'unsupported_parameter', param: 'previous_response_id' });
    expect(fake.requests).toHaveLength(2);
  });
});

describe('the AI SDK and LangChain through the gateway to an OpenAI upstream', () => {
  it('AI SDK generateText and streamText call /v1/responses, passed through', async () => {
    const openai = createOpenAI({ baseURL: `${g.url}/v1`, apiKey: 'sk-any' });
    const r = await generateText({ model: openai('gpt'), prompt: 'hi', headers: { 'x-triage-priority': '5' }, maxRetries: 0 });
    expect(r.text).toBe('Hello from the fake upstream.');
    expect(r.response.headers?.['x-triage-priority']).toBe('5');
    expect(r.usage.inputTokens).toBe(FAKE_USAGE.responses.input_tokens);
    const s = streamText({ model: openai('gpt'), prompt: 'hi', maxRetries: 0 });
    expect(await s.text).toBe('Hello from the fake upstream.');
    expect(fake.requests.map((q) => q.path)).toEqual(['/v1/responses', '/v1/responses']);
    expect(fake.requests[0].body!.input).toEqual([{ role: 'user', content: [{ type: 'input_text', text: 'hi' }] }]);
  });

  it('LangChain ChatOpenAI and OpenAIEmbeddings', async () => {
    const configuration = { baseURL: g.url, defaultHeaders: { 'x-triage-priority': '6' } };
    const answer = await new ChatOpenAI({ model: 'gpt', apiKey: 'sk-any', configuration, maxRetries: 0 }).invoke('hi');
    expect(answer.content).toBe('Hello from the fake upstream.');
    const vectors = await new OpenAIEmbeddings({ model: 'emb', apiKey: 'sk-any', configuration, maxRetries: 0 }).embedDocuments(['a']);
    expect(vectors[0]).toHaveLength(3);
    expect(fake.requests.map((q) => q.path)).toEqual(['/v1/chat/completions', '/v1/embeddings']);
  });
});
