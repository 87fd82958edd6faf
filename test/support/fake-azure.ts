/**
 * A fake Azure OpenAI resource on 127.0.0.1 that refuses what Azure refuses: a path other than
 * `/openai/deployments/{deployment}/chat/completions`, a deployment it does not have (404
 * DeploymentNotFound), a missing or unknown `api-version` query (404), a wrong or missing `api-key`
 * header (or Entra token as `Authorization: Bearer`) (401), a body that is not a chat completion (400),
 * `stream_options` with an API version older than 2024-09-01 (400).
 * What passes is answered by the scripted handlers of FakeOpenAI (test/support/fake-openai.ts).
 */
import { FakeOpenAI, type Exchange, type Handler } from './fake-openai.js';

export interface FakeAzureOptions {
  deployments: string[];
  apiKey: string;
  /** An Entra ID token accepted as `Authorization: Bearer`. */
  adToken?: string;
  apiVersions?: string[];
}

const azureError = (code: string, message: string) => ({ error: { code, message } });

export class FakeAzure {
  /** Requests that passed the checks and reached a handler. */
  readonly accepted: Exchange[] = [];
  /** Requests refused, with the status they got. */
  readonly refused: Array<{ path: string; status: number }> = [];

  private constructor(
    readonly fake: FakeOpenAI,
    private readonly options: FakeAzureOptions,
  ) {}

  static async start(options: FakeAzureOptions): Promise<FakeAzure> {
    const fake = await FakeOpenAI.start();
    const azure = new FakeAzure(fake, options);
    azure.always((x) => x.json(200, azureCompletion(x, 'Hello from Azure.')));
    return azure;
  }

  /** `http://127.0.0.1:<port>`: an Azure api_base (the resource endpoint). */
  get apiBase(): string {
    return this.fake.url.replace(/\/v1$/, '');
  }

  /** Why Azure would refuse this request, or undefined. */
  private refusal(x: Exchange): { status: number; body: unknown } | undefined {
    const { request } = x;
    const url = new URL(request.path, 'http://fake');
    const m = /^\/openai\/deployments\/([^/]+)\/chat\/completions$/.exec(url.pathname);
    if (request.method !== 'POST' || m === null) return { status: 404, body: azureError('404', 'Resource not found') };
    const version = url.searchParams.get('api-version');
    if (version === null || !(this.options.apiVersions ?? ['2024-10-21']).includes(version)) {
      return { status: 404, body: azureError('404', `Resource not found (api-version ${JSON.stringify(version)})`) };
    }
    const key = request.headers['api-key'];
    const bearer = request.headers.authorization;
    const authorized = key === this.options.apiKey || (this.options.adToken !== undefined && bearer === `Bearer ${this.options.adToken}`);
    if (!authorized) {
      return { status: 401, body: azureError('401', 'Access denied due to invalid subscription key or wrong API endpoint.') };
    }
    if (!this.options.deployments.includes(decodeURIComponent(m[1]))) {
      return { status: 404, body: azureError('DeploymentNotFound', `The API deployment for this resource does not exist: ${m[1]}`) };
    }
    if (!String(request.headers['content-type']).startsWith('application/json') || !Array.isArray(request.body?.messages)) {
      return { status: 400, body: azureError('BadRequest', "'messages' is a required property") };
    }
    // stream_options arrived with API version 2024-09-01-preview; older versions refuse unknown arguments.
    if (request.body?.stream_options !== undefined && version < '2024-09-01') {
      return { status: 400, body: azureError('BadRequest', 'Unrecognized request argument supplied: stream_options') };
    }
    return undefined;
  }

  private guard(handler: Handler): Handler {
    return (x) => {
      const refusal = this.refusal(x);
      if (refusal !== undefined) {
        this.refused.push({ path: x.request.path, status: refusal.status });
        x.json(refusal.status, refusal.body);
        return;
      }
      this.accepted.push(x);
      return handler(x);
    };
  }

  next(...handlers: Handler[]): this {
    this.fake.next(...handlers.map((h) => this.guard(h)));
    return this;
  }

  always(handler: Handler): this {
    this.fake.always(this.guard(handler));
    return this;
  }

  close(): Promise<void> {
    return this.fake.close();
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
