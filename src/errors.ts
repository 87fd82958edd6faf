/**
 * Every error Triage returns, defined once: code, HTTP status, OpenAI error `type`, and a default
 * message. HTTP answers, Router API rejections and events all take their code from here, and
 * test/errors.test.ts checks that docs/errors.md documents each row.
 */

export const ERROR_TABLE = {
  invalid_request: { status: 400, type: 'invalid_request_error', message: 'The request is invalid.' },
  invalid_json: { status: 400, type: 'invalid_request_error', message: 'The request body is not valid JSON.' },
  invalid_priority: { status: 400, type: 'invalid_request_error', message: 'priority must be an integer in the configured range.' },
  wrong_endpoint: { status: 400, type: 'invalid_request_error', message: 'This model is served on another endpoint.' },
  endpoint_unsupported: { status: 400, type: 'invalid_request_error', message: "This model's deployments cannot serve this endpoint." },
  unsupported_parameter: { status: 400, type: 'invalid_request_error', message: "A field of the request is not supported for this model's deployments." },
  unauthorized: { status: 401, type: 'authentication_error', message: 'A valid API key is required.' },
  model_not_allowed: { status: 403, type: 'permission_error', message: 'This key may not use this model.' },
  model_not_found: { status: 404, type: 'invalid_request_error', message: 'The model does not exist.' },
  not_found: { status: 404, type: 'invalid_request_error', message: 'No such route.' },
  wildcard_model_limit: { status: 404, type: 'invalid_request_error', message: 'The wildcard matching this model already serves as many models as it may.' },
  queue_timeout: { status: 408, type: 'timeout_error', message: 'The request waited in the queue past its deadline.' },
  body_too_large: { status: 413, type: 'invalid_request_error', message: 'The request body is too large.' },
  unsupported_media_type: { status: 415, type: 'invalid_request_error', message: 'The request body must be application/json.' },
  queue_full: { status: 429, type: 'rate_limit_error', message: 'The queue for this model is full.' },
  queue_timeout_certain: { status: 429, type: 'rate_limit_error', message: "The request's queue deadline cannot be met." },
  key_rate_limited: { status: 429, type: 'rate_limit_error', message: 'This key has used its requests per minute.' },
  client_closed: { status: 499, type: 'cancelled', message: 'The caller cancelled the request.' },
  internal_error: { status: 500, type: 'server_error', message: 'Internal error.' },
  upstream_error: { status: 502, type: 'upstream_error', message: 'The upstream deployment failed.' },
  shutting_down: { status: 503, type: 'service_unavailable', message: 'The gateway is shutting down.' },
  upstream_unavailable: { status: 503, type: 'service_unavailable', message: 'Every deployment of this model is cooling down after failing.' },
  store_unavailable: { status: 503, type: 'service_unavailable', message: 'The shared queue store is unavailable.' },
  no_callable_deployment: { status: 503, type: 'service_unavailable', message: 'No deployment of this model can be called by Triage.' },
  upstream_timeout: { status: 504, type: 'timeout_error', message: 'The upstream deployment did not answer in time.' },
} as const satisfies Record<string, { status: number; type: string; message: string }>;

export type ErrorCode = keyof typeof ERROR_TABLE;

export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string };
}

/**
 * The one error class: its code decides status and type; `param` names the offending field.
 *
 * Only `internal_error` (a fault of Triage) captures a stack trace. Every other code is an answer
 * (a full queue, a timeout, a cancel, a refused key, an upstream's failure, which keeps the upstream's
 * own error as `cause`), and its stack would be the actor library's frames: capturing them made turning
 * requests away (a full queue) markedly slower (docs/performance.md, "Errors without stacks").
 */
export class TriageError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly type: string;
  readonly param: string | null;
  /** Seconds the caller should wait before retrying (429/503), computed from the queue and limiter. */
  readonly retryAfterSeconds?: number;

  constructor(
    code: ErrorCode,
    message?: string,
    options: { param?: string | null; status?: number; retryAfterSeconds?: number; cause?: unknown } = {},
  ) {
    const row = ERROR_TABLE[code];
    const stackTraceLimit = Error.stackTraceLimit;
    if (code !== 'internal_error') Error.stackTraceLimit = 0;
    try {
      super(message ?? row.message, options.cause === undefined ? undefined : { cause: options.cause });
    } finally {
      Error.stackTraceLimit = stackTraceLimit;
    }
    this.name = 'TriageError';
    this.code = code;
    // An upstream 4xx passes through with its own status under the upstream_error code.
    this.status = options.status ?? row.status;
    this.type = row.type;
    this.param = options.param ?? null;
    if (options.retryAfterSeconds !== undefined) this.retryAfterSeconds = options.retryAfterSeconds;
  }

  toJSON(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export const isTriageError = (e: unknown): e is TriageError => e instanceof TriageError;

/** Anything thrown becomes a TriageError; unknown failures become internal_error without leaking detail. */
export function toTriageError(e: unknown): TriageError {
  if (e instanceof TriageError) return e;
  return new TriageError('internal_error', undefined, { cause: e });
}

/*
 * Named classes for the errors a caller of the Router API handles most, so `instanceof` reads as the
 * domain says it. Each is a TriageError with its fixed code; the table above stays the one source.
 */
type Options = ConstructorParameters<typeof TriageError>[2];

export class InvalidRequestError extends TriageError {
  constructor(message?: string, options?: Options) {
    super('invalid_request', message, options);
    this.name = 'InvalidRequestError';
  }
}

export class InvalidPriorityError extends TriageError {
  constructor(message?: string, options?: Options) {
    super('invalid_priority', message, { param: 'priority', ...options });
    this.name = 'InvalidPriorityError';
  }
}

export class ModelNotFoundError extends TriageError {
  constructor(message?: string, options?: Options) {
    super('model_not_found', message, { param: 'model', ...options });
    this.name = 'ModelNotFoundError';
  }
}

export class QueueTimeoutError extends TriageError {
  constructor(message?: string, options?: Options) {
    super('queue_timeout', message, options);
    this.name = 'QueueTimeoutError';
  }
}

export class QueueFullError extends TriageError {
  constructor(message: string, retryAfterSeconds: number) {
    super('queue_full', message, { retryAfterSeconds });
    this.name = 'QueueFullError';
  }
}

/** Seconds a caller refused by a draining instance waits: a retry goes to another instance (or this one, restarted). */
export const SHUTDOWN_RETRY_AFTER_SECONDS = 1;

export class ShuttingDownError extends TriageError {
  constructor(message?: string) {
    super('shutting_down', message, { retryAfterSeconds: SHUTDOWN_RETRY_AFTER_SECONDS });
    this.name = 'ShuttingDownError';
  }
}

export class RequestCancelledError extends TriageError {
  constructor(message?: string) {
    super('client_closed', message);
    this.name = 'RequestCancelledError';
  }
}

export class StoreUnavailableError extends TriageError {
  constructor(message?: string, retryAfterSeconds = 1) {
    super('store_unavailable', message, { retryAfterSeconds });
    this.name = 'StoreUnavailableError';
  }
}

/** 503 upstream_unavailable: every deployment of the group cools down after failures that are not 429s. */
export function upstreamUnavailable(message: string | undefined, retryAfterSeconds: number): TriageError {
  const cause = message === undefined || message === '' ? '' : ` The last upstream error: ${message}`;
  return new TriageError('upstream_unavailable', `Every deployment of this model is cooling down after failing; retry in ${retryAfterSeconds}s.${cause}`, { retryAfterSeconds });
}
