/**
 * The part of an AbortSignal the router uses to cancel a request. The HTTP layer passes a lighter
 * object of its own (an AbortController per request cost the HTTP layer measurably:
 * docs/performance.md); any AbortSignal fits too.
 */
export interface CancelSignal {
  readonly aborted: boolean;
  addEventListener(type: 'abort', listener: CancelListener, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: CancelListener): void;
}

export interface CancelListener {
  handleEvent(event?: unknown): void;
}
