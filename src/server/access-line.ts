/**
 * The access log's line, serialized by hand in pino's own layout (level, time, the logger's bindings,
 * the request's id, the fields, the message). Its fields are always the same few, so a fixed
 * template does what pino's generic path does (a child logger per request, each field looked up in
 * the serializers and stringified by type) for a fraction of the work (docs/performance.md).
 * A string with a character JSON escapes (a quote, a backslash, a control character, a surrogate)
 * goes through JSON.stringify, any other is written between quotes as it is; a number that is not
 * finite is written as null, as pino writes it. The response time is written to the microsecond, from
 * integers: a double's shortest decimal form was a third of the line's cost (docs/performance.md).
 */
import type { QueueMeta } from '../router.js';

/** pino's number for `info`. */
const INFO_LEVEL = 30;

export interface AccessLineFields {
  /** Milliseconds since the epoch (pino's default `time`). */
  time: number;
  reqId: string;
  method: string;
  /** Already redacted. */
  url: string;
  statusCode: number;
  /** Milliseconds, as fastify's `reply.elapsedTime` (written to the microsecond). */
  responseTime: number;
  /** What the queue did, for the chat routes; null elsewhere. */
  queue: QueueMeta | null;
  /** The caller's name, written with the queue fields. */
  tenant: string | undefined;
}

/**
 * `bindings`: the logger's own fields as pino writes them after the time, each with its leading comma
 * (`,"pid":1,"hostname":"h"`; see loggerBindings). Ends with a newline.
 */
export function accessLine(bindings: string, f: AccessLineFields): string {
  let line = `{"level":${INFO_LEVEL},"time":${num(f.time)}${bindings},"reqId":${str(f.reqId)},"req":{"method":${str(f.method)},"url":${str(f.url)}},"res":{"statusCode":${num(f.statusCode)}},"responseTime":${millis(f.responseTime)}`;
  const q = f.queue;
  if (q !== null) {
    line += `,"queue":{"requestId":${str(q.requestId)},"model":${str(q.model)},"priority":${num(q.priority)}`;
    if (f.tenant !== undefined) line += `,"tenant":${str(f.tenant)}`;
    line += `,"deployment":${str(q.deployment)},"waitedMs":${num(Math.round(q.waitedMs))},"attempts":${num(q.attempts)}}`;
  }
  return `${line},"msg":"request completed"}\n`;
}

/** pino's default bindings (its `base`), in its layout: the process id and the host name. */
export function loggerBindings(pid: number, hostname: string): string {
  return `,"pid":${num(pid)},"hostname":${str(hostname)}`;
}

/** What JSON.stringify would change in a string: quotes, backslashes, control characters, (lone) surrogates. */
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

function str(s: string): string {
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : `"${s}"`;
}

/** Milliseconds rounded to the microsecond, as a JSON number (`0.512`, `12.000`). */
export function millis(ms: number): string {
  if (!Number.isFinite(ms)) return 'null';
  const us = Math.round(Math.abs(ms) * 1000);
  const frac = us % 1000;
  return `${ms < 0 && us !== 0 ? '-' : ''}${(us - frac) / 1000}.${frac < 10 ? '00' : frac < 100 ? '0' : ''}${frac}`;
}

function num(n: number): string {
  return Number.isFinite(n) ? String(n) : 'null';
}
