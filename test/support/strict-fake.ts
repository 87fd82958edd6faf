/**
 * What every provider fake shares: it refuses what the real provider would refuse (a wrong path,
 * header or body), answering as that provider answers a refusal, and records what it accepted and
 * what it refused, so a test can assert both.
 */
import type { Exchange, FakeOpenAI, Handler } from './fake-openai.js';

/** A refusal: the status and body the real provider would answer, and (for the record) why. */
export interface Refusal {
  status: number;
  body: unknown;
  message?: string;
}

export abstract class StrictFake {
  readonly accepted: Exchange[] = [];
  /** Requests refused, with the status they got and why. */
  readonly refused: Array<{ path: string; status: number; message?: string }> = [];

  protected constructor(readonly fake: FakeOpenAI) {}

  /** Why the real provider would refuse this request, or undefined when it would take it. */
  protected abstract refusal(x: Exchange): Refusal | undefined;

  private guard(handler: Handler): Handler {
    return (x) => {
      const refusal = this.refusal(x);
      if (refusal !== undefined) {
        this.refused.push(refusal.message === undefined ? { path: x.request.path, status: refusal.status } : { path: x.request.path, status: refusal.status, message: refusal.message });
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
