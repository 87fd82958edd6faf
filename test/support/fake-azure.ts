/**
 * A fake Azure OpenAI resource on 127.0.0.1 that refuses what Azure refuses: a path other than
 * `/openai/deployments/{deployment}/chat/completions` or the Responses API's per-resource paths
 * (`/openai/responses?api-version=V` with V from 2025-03-01-preview on, or the v1 API's
 * `/openai/v1/responses`, the deployment then in the body's `model`), a deployment it does not have
 * (404 DeploymentNotFound), a missing or unknown `api-version` query (404), a wrong or missing `api-key`
 * header (or Entra token as `Authorization: Bearer`) (401), a body that is not a chat completion or a
 * response request (400), `stream_options` with an API version older than 2024-09-01 (400).
 * What passes is answered by the scripted handlers of FakeOpenAI (test/support/fake-openai.ts).
 */
import { FakeOpenAI, responseBody, responseEvents, type Exchange } from './fake-openai.js';
import { StrictFake, type Refusal } from './strict-fake.js';

export interface FakeAzureOptions {
  deployments: string[];
  apiKey: string;
  /** An Entra ID token accepted as `Authorization: Bearer`. */
  adToken?: string;
  apiVersions?: string[];
}

const azureError = (code: string, message: string) => ({ error: { code, message } });

/** Azure's first dated API version with the Responses API (2025-03-01-preview). */
const RESPONSES_SINCE = '2025-03-01';

/** The underlying model Azure names in its answers (not the deployment's name). */
const AZURE_MODEL = 'gpt-4o-2024-08-06';

function isResponsesPath(x: Exchange): boolean {
  return /^\/openai\/(v1\/)?responses(\?|$)/.test(x.request.path);
}

export class FakeAzure extends StrictFake {
  private constructor(
    fake: FakeOpenAI,
    private readonly options: FakeAzureOptions,
  ) {
    super(fake);
  }

  static async start(options: FakeAzureOptions): Promise<FakeAzure> {
    const fake = await FakeOpenAI.start();
    const azure = new FakeAzure(fake, options);
    azure.always(async (x) => {
      if (!isResponsesPath(x)) return x.json(200, azureCompletion(x, 'Hello from Azure.'));
      if (x.request.body?.stream !== true) return x.json(200, responseBody(AZURE_MODEL, 'Hello from Azure.'));
      x.startSse();
      for (const e of responseEvents(AZURE_MODEL, ['Hello ', 'from ', 'Azure.'])) await x.write(`event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
      x.finish();
    });
    return azure;
  }

  /** `http://127.0.0.1:<port>`: an Azure api_base (the resource endpoint). */
  get apiBase(): string {
    return this.fake.url.replace(/\/v1$/, '');
  }

  /** Why Azure would refuse this request, or undefined. */
  protected refusal(x: Exchange): Refusal | undefined {
    const { request } = x;
    const url = new URL(request.path, 'http://fake');
    const version = url.searchParams.get('api-version');
    const notFound = { status: 404, body: azureError('404', 'Resource not found') };
    if (request.method !== 'POST') return notFound;
    const chat = /^\/openai\/deployments\/([^/]+)\/chat\/completions$/.exec(url.pathname);
    const responses = url.pathname === '/openai/responses' || url.pathname === '/openai/v1/responses';
    if (chat === null && !responses) return notFound;
    if (url.pathname === '/openai/v1/responses') {
      // The v1 API takes no dated api-version (only its `preview` channel).
      if (version !== null && version !== 'preview') return { status: 400, body: azureError('BadRequest', `api-version ${version} is not supported by the v1 API`) };
    } else if (version === null || !(this.options.apiVersions ?? ['2024-10-21']).includes(version)) {
      return { status: 404, body: azureError('404', `Resource not found (api-version ${JSON.stringify(version)})`) };
    } else if (responses && version < RESPONSES_SINCE) {
      return { status: 404, body: azureError('404', `Resource not found (the Responses API needs api-version ${RESPONSES_SINCE}-preview or later)`) };
    }
    const key = request.headers['api-key'];
    const bearer = request.headers.authorization;
    const authorized = key === this.options.apiKey || (this.options.adToken !== undefined && bearer === `Bearer ${this.options.adToken}`);
    if (!authorized) {
      return { status: 401, body: azureError('401', 'Access denied due to invalid subscription key or wrong API endpoint.') };
    }
    if (!String(request.headers['content-type']).startsWith('application/json') || request.body === undefined) {
      return { status: 400, body: azureError('BadRequest', 'The request body is not JSON') };
    }
    // Chat names the deployment in the path; the Responses API in the body's `model`.
    const deployment = chat !== null ? decodeURIComponent(chat[1]) : request.body.model;
    if (typeof deployment !== 'string' || !this.options.deployments.includes(deployment)) {
      return { status: 404, body: azureError('DeploymentNotFound', `The API deployment for this resource does not exist: ${String(deployment)}`) };
    }
    if (chat !== null && !Array.isArray(request.body.messages)) return { status: 400, body: azureError('BadRequest', "'messages' is a required property") };
    if (responses && request.body.input === undefined) return { status: 400, body: azureError('BadRequest', "Missing required parameter: 'input'.") };
    // stream_options arrived with API version 2024-09-01-preview; older versions refuse unknown arguments.
    if (chat !== null && request.body.stream_options !== undefined && version! < '2024-09-01') {
      return { status: 400, body: azureError('BadRequest', 'Unrecognized request argument supplied: stream_options') };
    }
    return undefined;
  }
}

/** A completion as Azure answers it: the deployment's underlying model name, not the deployment's. */
export function azureCompletion(_x: Exchange, content: string) {
  return {
    id: 'chatcmpl-azure1',
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model: 'gpt-4o-2024-08-06',
    choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content } }],
    usage: { prompt_tokens: 9, completion_tokens: 4, total_tokens: 13 },
  };
}
