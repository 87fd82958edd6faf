/**
 * Every HTTP error leaves through here, in OpenAI's envelope `{"error":{message,type,param,code}}`
 * with the status from the one error table, and a Retry-After where the error carries one.
 */
import type { FastifyError, FastifyReply } from 'fastify';
import { TriageError, type ErrorCode, type OpenAIErrorBody } from '../errors.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Redacts the config's secrets from text that echoes a caller or an upstream (set by buildApp). */
    redactSecrets?: (text: string) => string;
  }
}

/** fastify's own errors (body parsing, limits, routing) mapped onto our table. */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'body_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid_request',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_INVALID_TYPE: 'invalid_request',
  FST_ERR_CTP_EMPTY_TYPE: 'unsupported_media_type',
  FST_ERR_VALIDATION: 'invalid_request',
};

export function toHttpError(e: unknown): TriageError {
  if (e instanceof TriageError) return e;
  const fe = e as Partial<FastifyError> & { type?: string };
  if (typeof fe?.code === 'string' && FASTIFY_CODES[fe.code]) {
    const code = FASTIFY_CODES[fe.code];
    return new TriageError(code, code === 'invalid_json' ? `The request body is not valid JSON: ${fe.message ?? ''}`.trim() : undefined);
  }
  // JSON.parse errors from the body parser, and prototype-poisoning refusals, are 400s from fastify.
  if (fe?.statusCode === 400 && (e instanceof SyntaxError || /JSON|prototype|constructor/i.test(fe.message ?? ''))) {
    return new TriageError('invalid_json', `The request body is not valid JSON: ${fe.message}`);
  }
  if (typeof fe?.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return new TriageError('invalid_request', fe.message);
  }
  return new TriageError('internal_error');
}

/** The envelope of `error`, its message passed through `redact` (a caller's key echoed back as a model name, say). */
export function errorBody(error: TriageError, redact?: (text: string) => string): OpenAIErrorBody {
  const body = error.toJSON();
  if (redact !== undefined) body.error.message = redact(body.error.message);
  return body;
}

/**
 * What a client's automatic retry should do with an answer, in the headers clients read: a queue
 * timeout is final for that request (`x-should-retry: false`, obeyed by the OpenAI SDKs: a retry would
 * only queue again at the back), and so is an upstream failure the gateway already retried; a draining
 * instance closes the connection so a retry reaches another.
 */
export function overloadHeaders(error: TriageError): Array<[string, string]> {
  if (error.code === 'queue_timeout') return [['x-should-retry', 'false']];
  // The gateway already retried (num_retries, routed around cooled-down deployments): a client's own
  // retries would only multiply the calls to a failing upstream.
  if (error.code === 'upstream_error' && error.status >= 500) return [['x-should-retry', 'false']];
  if (error.code === 'shutting_down') return [['connection', 'close']];
  return [];
}

export function sendError(reply: FastifyReply, e: unknown): FastifyReply {
  const error = toHttpError(e);
  if (error.retryAfterSeconds !== undefined) reply.header('retry-after', String(error.retryAfterSeconds));
  for (const [name, value] of overloadHeaders(error)) reply.header(name, value);
  return reply.code(error.status).type('application/json; charset=utf-8').send(errorBody(error, reply.server.redactSecrets));
}
