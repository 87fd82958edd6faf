/**
 * The Router API on the new endpoints: one schedule path for all, tpm reserved from each endpoint's
 * input and reconciled with its usage, and a translated Responses stream that stops its chat stream
 * (and frees the slot) when the caller stops reading.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openAIUpstreamFactory } from '../src/adapters/openai-upstream.js';
import type { JsonObject } from '../src/core/openai-types.js';
import { createRouter, type Router } from '../src/router.js';
import { FAKE_USAGE, FakeOpenAI, PacedStream, strictOpenAI } from './support/fake-openai.js';
import { waitFor } from './support/gateway.js';
import { openAIDeployment, testConfig } from './support/test-config.js';

let fake: FakeOpenAI;
let router: Router;

beforeEach(async () => {
  fake = await FakeOpenAI.start();
  fake.always(strictOpenAI());
  const config = testConfig({ mock: [{ mockResponse: 'Hello there, friend.' }] });
  config.modelGroups.push(
    { name: 'emb', deployments: [openAIDeployment(fake.url, 'emb', 'e', { mode: 'embedding', limits: { tpm: 1_000 } })] },
    { name: 'compat', deployments: [openAIDeployment(fake.url, 'compat', 'c', { provider: 'hosted_vllm' })] },
  );
  router = createRouter(config, { upstreamFactory: openAIUpstreamFactory, v8Flags: false });
});

afterEach(async () => {
  await router.close(0);
  await fake.close();
});

const tpmUsed = async (model: string) => (await router.queueStatus()).find((g) => g.model === model)!.deployments[0].tpmUsed;

describe('Router.scheduleEndpoint', () => {
  it('embeddings reserve tpm from the input size while in flight, then count the reported usage', async () => {
    let answer: (() => void) | undefined;
    fake.next(async (x) => {
      await new Promise<void>((resolve) => (answer = resolve));
      await strictOpenAI()(x);
    });
    const pending = router.scheduleEndpoint('embeddings', { model: 'emb', input: ['a'.repeat(400), [1, 2, 3]], priority: 3 });
    await fake.until((f) => f.requests.length === 1, 'the call upstream');
    // 400 characters at ~4 a token, and a 3-token array.
    expect(await tpmUsed('emb')).toBe(103);
    answer!();
    const result = (await pending) as JsonObject;
    expect((result.data as unknown[]).length).toBe(2);
    await waitFor(async () => ((await tpmUsed('emb')) === FAKE_USAGE.embeddings.total_tokens ? true : undefined), 'tpm reconciled with usage');
  });

  it('responses on a mock: the Response, and its events when streaming', async () => {
    const r = (await router.scheduleEndpoint('responses', { model: 'mock', input: 'hi' })) as JsonObject;
    expect(r.object).toBe('response');
    expect((r.output as Array<{ content: Array<{ text: string }> }>)[0].content[0].text).toBe('Hello there, friend.');
    const types: string[] = [];
    for await (const e of (await router.scheduleEndpoint('responses', { model: 'mock', input: 'hi', stream: true })) as AsyncIterable<JsonObject>) types.push(String(e.type));
    expect(types.at(-1)).toBe('response.completed');
  });

  it('a translated Responses stream abandoned by its reader cancels the chat call upstream and frees the slot', async () => {
    const paced = new PacedStream(['one ', 'two ', 'three']);
    fake.next(paced.handler);
    const events = (await (async () => {
      const started = router.scheduleEndpoint('responses', { model: 'compat', input: 'hi', stream: true });
      await fake.until((f) => f.requests.length === 1, 'the chat call');
      paced.release(1);
      return started;
    })()) as AsyncIterable<JsonObject>;
    expect(fake.requests[0].path).toBe('/v1/chat/completions');
    for await (const e of events) {
      if (e.type === 'response.output_text.delta') break;
    }
    await fake.until((f) => f.abortedRequests === 1, 'the upstream call to be cut');
    await waitFor(() => (router.liveRequests === 0 ? true : undefined), 'the request to end');
    const compat = (await router.queueStatus()).find((g) => g.model === 'compat')!;
    expect(compat.deployments[0].inFlight).toBe(0);
  });
});
