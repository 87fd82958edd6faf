/**
 * A chat or legacy completion with `n` > 1 reserves tpm for n answers (the provider generates and
 * counts every one); `n` outside OpenAI's 1..128 is a 400 naming it, before anything is queued.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openAIUpstreamFactory } from '../src/adapters/openai-upstream.js';
import { createRouter, type Router } from '../src/router.js';
import { FakeOpenAI, strictOpenAI } from './support/fake-openai.js';
import { openAIDeployment, testConfig } from './support/test-config.js';

let fake: FakeOpenAI;
let router: Router;
let answer: (() => void) | undefined;

beforeEach(async () => {
  fake = await FakeOpenAI.start();
  // Each call is held until the test has read the reservation.
  fake.always(async (x) => {
    await new Promise<void>((resolve) => (answer = resolve));
    await strictOpenAI()(x);
  });
  const config = testConfig({});
  config.modelGroups.push({ name: 'gpt', deployments: [openAIDeployment(fake.url, 'gpt', 'g', { limits: { tpm: 100_000 } })] });
  router = createRouter(config, { upstreamFactory: openAIUpstreamFactory, v8Flags: false });
});

afterEach(async () => {
  answer?.();
  await router.close(0);
  await fake.close();
});

const tpmUsed = async () => (await router.queueStatus()).find((g) => g.model === 'gpt')!.deployments[0].tpmUsed;
// 'hello world!!': 13 characters → 4 tokens, + 4 for the message, + 3 for the reply.
const PROMPT = 11;

describe('tpm reservation for n answers', () => {
  it('chat with n: 3 reserves the prompt once and max_tokens three times while in flight', async () => {
    const pending = router.schedule({ model: 'gpt', messages: [{ role: 'user', content: 'hello world!!' }], max_tokens: 50, n: 3 });
    await fake.until((f) => f.requests.length === 1, 'the call upstream');
    expect(fake.requests[0].body?.n).toBe(3);
    expect(await tpmUsed()).toBe(PROMPT + 3 * 50);
    answer!();
    await pending;
  });

  it('legacy completions reserve max_tokens for max(n, best_of) answers', async () => {
    const pending = router.schedule({ model: 'gpt', prompt: 'a'.repeat(40), max_tokens: 20, n: 2, best_of: 4 }, 'completions');
    await fake.until((f) => f.requests.length === 1, 'the call upstream');
    expect(await tpmUsed()).toBe(10 + 4 * 20);
    answer!();
    await pending;
  });

  it('n outside 1..128 is a 400 naming n, and nothing is sent', async () => {
    for (const n of [0, 129, 2.5, '2']) {
      await expect(router.schedule({ model: 'gpt', messages: [{ role: 'user', content: 'hi' }], n } as never)).rejects.toMatchObject({ code: 'invalid_request', param: 'n', message: 'n must be an integer from 1 to 128.' });
    }
    expect(fake.requests).toHaveLength(0);
  });
});
