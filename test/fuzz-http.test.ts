/**
 * Seeded fuzzing of everything a client (or an operator) can hand the gateway:
 *
 * - chat bodies over real sockets: random and mutated bodies with wrong types everywhere, odd
 *   priorities, deep nesting, strings at and over the body limit, invalid UTF-8, bodies over the
 *   limit (with and without a content-length), truncated JSON, odd content types, unknown and
 *   duplicated keys, `__proto__` / `constructor` keys, odd methods, paths and query strings;
 * - raw HTTP framing (garbage, bad headers, smuggling-style length conflicts, oversized headers);
 * - WebSocket messages to `/queue/events` (JSON and not, binary, oversized, invalid UTF-8);
 * - config files: random mutations of a valid YAML.
 *
 * Every HTTP answer must be a 2xx or a 4xx in the OpenAI error envelope, never a 5xx; afterwards the
 * queue is empty and no slot is held. Each case draws from its own PRNG seeded by (seed, case index):
 * a failure names both, and `FUZZ_SEED=<seed>` reruns the same cases.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { request as httpRequest, Agent } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { parseConfig } from '../src/adapters/config-loader.js';
import { ConfigError } from '../src/core/config-types.js';
import { ERROR_TABLE, type ErrorCode } from '../src/errors.js';
import { MAX_BODY_DEPTH } from '../src/router.js';
import { EVENT_TYPES } from '../src/server/event-filter.js';
import { DEFAULT_EVENT_STREAM_OPTIONS } from '../src/server/events-route.js';
import { runCli } from './support/cli-process.js';
import { FakeOpenAI } from './support/fake-openai.js';
import { startGateway, waitFor, type RunningGateway } from './support/gateway.js';
import { testConfig } from './support/test-config.js';
import { prng } from './support/prng.js';

const SEED = Number(process.env.FUZZ_SEED ?? 0x7a1a6e5) >>> 0;
const HTTP_CASES = 3_000;
const RAW_CASES = 120;
const WS_MESSAGES = 600;
const WS_CONNECTS = 60;
const CONFIG_CASES = 1_000;
/** Cases replayed against the built CLI (a separate process), with one raw framing case every ten. */
const CLI_CASES = 200;
/** Small, so bodies at and over the limit are cheap to build and send. */
const BODY_LIMIT = 64 * 1024;

// ---------------------------------------------------------------------------------------------------
// A small seeded PRNG (mulberry32) and helpers

interface Rng {
  next(): number;
  int(lo: number, hi: number): number;
  pick<T>(items: readonly T[]): T;
  chance(p: number): boolean;
}

function rng(seed: number): Rng {
  const next = prng(seed);
  return {
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    pick: (items) => items[Math.floor(next() * items.length)],
    chance: (p) => next() < p,
  };
}

/** The PRNG of one case: independent of every other case, so a failure reproduces alone. */
const caseRng = (suite: number, index: number) => rng(SEED ^ Math.imul(suite * 100_003 + index + 1, 0x9e3779b1));
const where = (suite: string, index: number) => `seed ${SEED} ${suite} case ${index}`;

// ---------------------------------------------------------------------------------------------------
// JSON built as text, so bodies can hold what JSON.stringify never writes: duplicated keys,
// `__proto__` keys, 1e999, -0.

type Json = null | boolean | string | { num: string } | Json[] | { obj: Array<[string, Json]> };

const isObj = (j: Json): j is { obj: Array<[string, Json]> } => j !== null && typeof j === 'object' && 'obj' in j;

function text(j: Json): string {
  if (j === null) return 'null';
  if (typeof j === 'boolean') return String(j);
  if (typeof j === 'string') return JSON.stringify(j);
  if (Array.isArray(j)) return `[${j.map(text).join(',')}]`;
  if ('num' in j) return j.num;
  return `{${j.obj.map(([k, v]) => `${JSON.stringify(k)}:${text(v)}`).join(',')}}`;
}

const NUMBERS = ['0', '-0', '1', '-1', '1.5', '0.1', '1e308', '-1e308', '1e999', '-1e999', '9007199254740993', '1E2', '1000', '1001', '5e-324', '0.0', '100.0'];
const STRINGS = ['', 'x', 'user', 'assistant', 'system', 'm', 'q', 'nope', '__proto__', 'constructor', 'NaN', 'Infinity', '5', 'é', '😀', '\u0000', '\ud800', '\u2028', 'a'.repeat(300)];
const KEYS = ['model', 'messages', 'role', 'content', 'priority', 'timeout', 'stream', 'max_tokens', 'tenant', 'signal', 'metadata_triage', 'temperature', 'tools', 'constructor', 'prototype', 'toString', 'valueOf', 'hasOwnProperty', 'x', ''];

function randomJson(r: Rng, depth = 0): Json {
  const kind = r.int(0, depth >= 4 ? 3 : 5);
  switch (kind) {
    case 0:
      return r.pick([null, true, false]);
    case 1:
      return { num: r.chance(0.7) ? r.pick(NUMBERS) : String(r.int(-5000, 5000)) };
    case 2:
    case 3:
      return r.chance(0.8) ? r.pick(STRINGS) : String.fromCharCode(...Array.from({ length: r.int(1, 12) }, () => r.int(32, 0x2fff)));
    case 4:
      return Array.from({ length: r.int(0, 4) }, () => randomJson(r, depth + 1));
    default:
      return { obj: Array.from({ length: r.int(0, 4) }, () => [r.pick(KEYS), randomJson(r, depth + 1)] as [string, Json]) };
  }
}

function validBody(r: Rng): { obj: Array<[string, Json]> } {
  const entries: Array<[string, Json]> = [
    ['model', r.chance(0.85) ? 'm' : 'q'],
    ['messages', Array.from({ length: r.int(1, 3) }, () => ({ obj: [['role', r.pick(['user', 'system', 'assistant'])], ['content', r.chance(0.9) ? r.pick(STRINGS.filter((s) => s !== '\ud800')) : [{ obj: [['type', 'text'], ['text', 'hi']] }]]] as Array<[string, Json]> }))],
  ];
  if (r.chance(0.5)) entries.push(['priority', { num: String(r.int(0, 1000)) }]);
  if (r.chance(0.2)) entries.push(['stream', r.chance(0.5)]);
  if (r.chance(0.2)) entries.push(['max_tokens', { num: String(r.int(1, 4000)) }]);
  if (r.chance(0.2)) entries.push(['temperature', { num: r.pick(['0', '0.7', '2']) }]);
  // Fields passed through as they are. Not `n` (mocks answer it as the API does, refusing a bad one) and
  // not `metadata.priority` (a queue option, validated): metadata holds other keys here.
  if (r.chance(0.2)) {
    const field = r.pick(['user', 'seed', 'x_custom', 'logit_bias', 'metadata']);
    entries.push([field, field === 'metadata' ? { obj: [['trace', randomJson(r, 2)]] } : randomJson(r, 2)]);
  }
  return { obj: entries };
}

/**
 * Whether the body holds what fastify refuses as prototype poisoning: any `__proto__` key, or a
 * `constructor` whose (last, as JSON.parse keeps the last duplicate) value is an object with `prototype`.
 */
function poisoned(j: Json): boolean {
  if (Array.isArray(j)) return j.some(poisoned);
  if (!isObj(j)) return false;
  // What survives parsing: the last value of each key (a poisoned value overwritten by a duplicate is gone).
  const kept = new Map(j.obj);
  const ctor = kept.get('constructor');
  if (ctor !== undefined && isObj(ctor) && ctor.obj.some(([k]) => k === 'prototype')) return true;
  return kept.has('__proto__') || [...kept.values()].some(poisoned);
}

function mutate(r: Rng, body: { obj: Array<[string, Json]> }): void {
  const at = () => r.int(0, Math.max(0, body.obj.length - 1));
  switch (r.int(0, 6)) {
    case 0: // a field gets a random value of a random type
      if (body.obj.length > 0) body.obj[at()][1] = randomJson(r);
      break;
    case 1: // a field disappears
      if (body.obj.length > 0) body.obj.splice(at(), 1);
      break;
    case 2: // an unknown field
      body.obj.push([`f${r.int(0, 99)}`, randomJson(r)]);
      break;
    case 3: // a duplicated key: JSON.parse keeps the last one
      body.obj.push([r.pick(['model', 'messages', 'priority', 'stream', 'timeout']), randomJson(r)]);
      break;
    case 4: // prototype keys, top level or inside a message
      if (r.chance(0.5)) body.obj.push([r.pick(['__proto__', 'constructor']), r.chance(0.5) ? { obj: [['prototype', { obj: [['x', true]] }]] } : randomJson(r)]);
      else {
        const messages = body.obj.find(([k]) => k === 'messages')?.[1];
        if (Array.isArray(messages) && messages.length > 0 && isObj(messages[0])) messages[0].obj.push([r.pick(['__proto__', 'constructor', 'prototype']), { obj: [['role', 'user']] }]);
      }
      break;
    case 5: // messages replaced by something odd
      body.obj = body.obj.filter(([k]) => k !== 'messages');
      body.obj.push(['messages', r.pick<Json>([[], { obj: [] }, 'hi', null, [null], [[]], [{ obj: [] }], [{ obj: [['role', { num: '1' }]] }], [{ obj: [['content', 'no role']] }]])]);
      break;
    default: // a Triage field with a wrong or edge value
      body.obj.push([r.pick(['priority', 'timeout', 'stream', 'max_tokens', 'tenant', 'signal']), randomJson(r)]);
      break;
  }
}

// ---------------------------------------------------------------------------------------------------
// One HTTP case: what is sent and which statuses are acceptable

interface HttpCase {
  kind: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
  /** Chunked transfer (no content-length). */
  chunked?: boolean;
  /** Acceptable statuses. */
  expect: number[];
  /** The error code an error answer must carry, when known. */
  code?: ErrorCode;
}

const JSON_CT = { 'content-type': 'application/json' };
const CHAT_PATHS = ['/queue/chat/completions', '/chat/completions', '/v1/queue/chat/completions', '/v1/chat/completions'];
/** Validation may answer any of these for a body whose outcome is not predicted exactly. */
const VALIDATION = [200, 400, 404, 408];

function chatCase(kind: string, r: Rng, bodyText: string | Buffer, expect: number[], code?: ErrorCode, headers: Record<string, string> = JSON_CT): HttpCase {
  return { kind, method: 'POST', path: r.pick(CHAT_PATHS), headers, body: Buffer.isBuffer(bodyText) ? bodyText : Buffer.from(bodyText), expect, ...(code ? { code } : {}) };
}

/** A body of exactly `size` bytes whose one message holds filler of 1- or 2-byte characters. */
function sizedBody(size: number, twoByte: boolean): Buffer {
  const shell = (fill: string) => `{"model":"m","messages":[{"role":"user","content":"${fill}"}]}`;
  const room = size - Buffer.byteLength(shell(''));
  const fill = twoByte ? 'é'.repeat(Math.floor(room / 2)) + 'a'.repeat(room % 2) : 'a'.repeat(room);
  const body = Buffer.from(shell(fill));
  if (body.length !== size) throw new Error(`sized body is ${body.length}, wanted ${size}`);
  return body;
}

function nested(depth: number, kind: 'array' | 'object'): string {
  return kind === 'array' ? '['.repeat(depth) + ']'.repeat(depth) : '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
}

const INVALID_UTF8 = [[0xff], [0xfe], [0xc3, 0x28], [0x80], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82]];

function httpCase(i: number): HttpCase {
  const r = caseRng(1, i);
  const kind = r.int(0, 99);
  if (kind < 12) {
    const body = validBody(r);
    return poisoned(body) ? chatCase('valid+poison', r, text(body), [400], 'invalid_json') : chatCase('valid', r, text(body), [200]);
  }
  if (kind < 40) {
    const body = validBody(r);
    for (let n = r.int(1, 3); n > 0; n--) mutate(r, body);
    return poisoned(body) ? chatCase('mutated', r, text(body), [400], 'invalid_json') : chatCase('mutated', r, text(body), VALIDATION);
  }
  if (kind < 48) {
    const weird = ['1e308', '-1', '1.5', '"5"', '"NaN"', '1e999', '-1e999', '-0', '0.0', '1000', '1001', '9007199254740993', 'true', 'null', '[]', '{}', '"0"', '0', '500', '-0.0', '1e3', '1e-7'];
    const value = r.pick(weird);
    const parsed = JSON.parse(value) as unknown;
    const ok = parsed === null || (typeof parsed === 'number' && Number.isInteger(parsed) && parsed >= 0 && parsed <= 1000);
    return chatCase('priority', r, `{"model":"m","messages":[{"role":"user","content":"p"}],"priority":${value}}`, ok ? [200] : [400], ok ? undefined : 'invalid_priority');
  }
  if (kind < 50) {
    // Not JSON at all, though the content type says so.
    const value = r.pick(['NaN', 'Infinity', '-Infinity', 'undefined', "'x'", '0x10', '.5', '+1']);
    return chatCase('priority-not-json', r, `{"model":"m","messages":[{"role":"user","content":"p"}],"priority":${value}}`, [400], 'invalid_json');
  }
  if (kind < 57) {
    // Deep nesting: at the bound, just past it, and far past it (10k / 30k levels).
    const depth = r.pick([MAX_BODY_DEPTH - 3, MAX_BODY_DEPTH - 2, MAX_BODY_DEPTH - 1, MAX_BODY_DEPTH + 5, 500, 10_000, 30_000]);
    const shape = r.pick(['array', 'object'] as const);
    const place = r.int(0, 2);
    // Levels the body itself adds above the nested value: the body (1); in content also messages (2) and the message (3).
    const above = place === 0 ? 3 : 1;
    const value = nested(depth - above, shape);
    const body =
      place === 0
        ? `{"model":"m","messages":[{"role":"user","content":${value}}]}`
        : place === 1
          ? `{"model":"m","messages":[{"role":"user","content":"d"}],"extra":${value}}`
          : `{"model":"m","messages":[{"role":"user","content":"d"}],"tools":${value}}`;
    const ok = depth <= MAX_BODY_DEPTH;
    if (Buffer.byteLength(body) > BODY_LIMIT) return chatCase('deep-over-limit', r, body, [413], 'body_too_large');
    return chatCase(`deep-${depth}`, r, body, ok ? [200] : [400], ok ? undefined : 'invalid_request');
  }
  if (kind < 63) {
    // Strings near the body limit: exactly at it is accepted, one byte over is refused.
    const over = r.chance(0.5);
    const size = over ? BODY_LIMIT + r.int(1, 64) : BODY_LIMIT - r.int(0, 64);
    return chatCase(over ? 'over-limit-by-bytes' : 'at-limit', r, sizedBody(size, r.chance(0.5)), over ? [413] : [200], over ? 'body_too_large' : undefined);
  }
  if (kind < 68) {
    // Bodies well over the limit, random bytes, with a content-length or chunked.
    const size = r.int(BODY_LIMIT + 1, BODY_LIMIT * 4);
    const bytes = Buffer.alloc(size);
    for (let k = 0; k < size; k += 97) bytes[k] = r.int(0, 255);
    const c = chatCase('over-limit', r, bytes, [413], 'body_too_large');
    if (r.chance(0.5)) c.chunked = true;
    return c;
  }
  if (kind < 74) {
    // Invalid UTF-8 inside a string value (decoded as U+FFFD), or anywhere at all.
    const body = Buffer.from(text(validBody(r)));
    const bad = Buffer.from(r.pick(INVALID_UTF8));
    const inString = r.chance(0.6);
    const content = body.indexOf('"content":"');
    const at = inString && content >= 0 ? content + '"content":"'.length : r.int(0, body.length);
    const out = Buffer.concat([body.subarray(0, at), bad, body.subarray(at)]);
    return chatCase(inString && content >= 0 ? 'utf8-in-string' : 'utf8-anywhere', r, out, inString && content >= 0 ? [200] : [200, 400, 404]);
  }
  if (kind < 80) {
    // Truncated JSON: any strict prefix of an object is invalid (the empty body too).
    const body = text(validBody(r));
    return chatCase('truncated', r, body.slice(0, r.int(0, body.length - 1)), [400], 'invalid_json');
  }
  if (kind < 86) {
    const body = text(validBody(r));
    const cases: Array<[string | undefined, number[]]> = [
      [undefined, [415]],
      ['', [415]],
      ['text/plain', [415]],
      ['application/x-www-form-urlencoded', [415]],
      ['multipart/form-data; boundary=x', [415]],
      ['application/jsonx', [415]],
      ['text/json', [415]],
      ['application/vnd.api+json', [415]],
      ['application/xml', [415]],
      ['application/json; charset=utf-8', [200]],
      ['APPLICATION/JSON', [200]],
      ['application/json;charset=latin1', [200, 400, 415]],
      ['application/json, text/plain', [200, 415]],
    ];
    const [type, expect] = r.pick(cases);
    const headers: Record<string, string> = type === undefined ? {} : { 'content-type': type };
    return chatCase(`content-type ${JSON.stringify(type)}`, r, body, expect, undefined, headers);
  }
  if (kind < 90) {
    // Other methods and near-miss paths.
    const method = r.pick(['GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']);
    const path = r.pick([...CHAT_PATHS, '/queue/chat/completions/', '//queue/chat/completions', '/QUEUE/chat/completions', '/queue/chat/completions;x', '/queue/chat/completions%00', '/v2/chat/completions', `/${'a'.repeat(r.int(1, 4000))}`]);
    return { kind: `method ${method}`, method, path, headers: JSON_CT, body: Buffer.from(text(validBody(r))), expect: [404], code: 'not_found' };
  }
  if (kind < 95) {
    // ?model= overrides and query noise.
    const model = r.pick(['m', 'q', 'nope', '', '%00', '%FF', 'm&model=q', 'm&model=nope', '%E2%82', encodeURIComponent('a'.repeat(500))]);
    const noise = r.chance(0.5) ? `&${r.pick(['priority=0', 'stream=true', 'token=x', '__proto__=1', 'a[b]=c', '%=%', '&&&'])}` : '';
    const body = text(validBody(r));
    return { kind: 'query', method: 'POST', path: `${r.pick(CHAT_PATHS)}?model=${model}${noise}`, headers: JSON_CT, body: Buffer.from(body), expect: [200, 400, 404] };
  }
  // Headers an open gateway must ignore, and odd framing of a good body.
  const headers: Record<string, string> = { ...JSON_CT };
  headers[r.pick(['authorization', 'x-api-key', 'x-forwarded-for', 'content-encoding', 'expect', 'x-triage-priority'])] = r.pick(['Bearer', 'Bearer ', 'Basic eA==', 'gzip', '100-continue', 'x'.repeat(200), '-1']);
  const c = chatCase('headers', r, text(validBody(r)), [200, 400, 415, 417], undefined, headers);
  if (r.chance(0.3)) c.chunked = true;
  return c;
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

function send(url: URL, agent: Agent, c: HttpCase): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { ...c.headers };
    if (c.body !== undefined && !c.chunked) headers['content-length'] = c.body.length;
    const req = httpRequest({ host: url.hostname, port: Number(url.port), method: c.method, path: c.path, headers, agent, timeout: 15_000 }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 15 s')));
    req.on('error', reject);
    if (c.body !== undefined && c.chunked) {
      const half = Math.floor(c.body.length / 2);
      req.write(c.body.subarray(0, half));
      req.end(c.body.subarray(half));
    } else req.end(c.body);
  });
}

/** Statuses outside the error table, answered as invalid_request: HTTP framing the client got wrong. */
const FRAMING_STATUSES = [408, 417, 431];

/** What is wrong with an `{"error":{...}}` envelope (and its status, when given), or null. */
function shapeProblem(parsed: { error?: Record<string, unknown> }, status?: number, code?: ErrorCode): string | null {
  if (parsed === null || typeof parsed !== 'object' || Object.keys(parsed).join() !== 'error' || parsed.error === undefined) return `not an envelope: ${JSON.stringify(parsed)?.slice(0, 200)}`;
  const e = parsed.error;
  if (Object.keys(e).sort().join() !== 'code,message,param,type') return `envelope keys ${Object.keys(e).join()}`;
  const row = ERROR_TABLE[e.code as ErrorCode];
  if (row === undefined) return `unknown code ${String(e.code)}`;
  if (e.type !== row.type) return `type ${String(e.type)} for ${String(e.code)}`;
  if (status !== undefined && row.status !== status && !(e.code === 'invalid_request' && FRAMING_STATUSES.includes(status))) return `status ${status} for ${String(e.code)}`;
  if (typeof e.message !== 'string' || e.message === '') return 'empty message';
  if (!(e.param === null || typeof e.param === 'string')) return 'param is neither null nor a string';
  if (code !== undefined && e.code !== code) return `code ${String(e.code)}, expected ${code}`;
  return null;
}

/** What is wrong with an error answer (content type, JSON, envelope, status), or null. */
function envelopeProblem(status: number, contentType: unknown, body: Buffer, code?: ErrorCode): string | null {
  if (!/application\/json/.test(String(contentType))) return `content-type ${String(contentType)}`;
  try {
    return shapeProblem(JSON.parse(body.toString('utf8')) as { error?: Record<string, unknown> }, status, code);
  } catch {
    return `not JSON: ${body.toString('utf8').slice(0, 100)}`;
  }
}

function answerProblem(c: HttpCase, a: Answer): string | null {
  if (a.status >= 500) return `5xx: ${a.status} ${a.body.toString('utf8').slice(0, 200)}`;
  if (!c.expect.includes(a.status)) return `status ${a.status}, expected ${c.expect.join('/')}: ${a.body.toString('utf8').slice(0, 200)}`;
  if (a.status >= 400) return envelopeProblem(a.status, a.headers['content-type'], a.body, c.code);
  if (a.status === 200) {
    const type = String(a.headers['content-type']);
    const bodyText = a.body.toString('utf8');
    if (type.startsWith('text/event-stream')) return bodyText.trimEnd().endsWith('data: [DONE]') ? null : `stream without [DONE]: ${bodyText.slice(-100)}`;
    const completion = JSON.parse(bodyText) as { object?: string; choices?: unknown[] };
    if (completion.object !== 'chat.completion' || !Array.isArray(completion.choices)) return `not a completion: ${bodyText.slice(0, 100)}`;
  }
  return null;
}

// ---------------------------------------------------------------------------------------------------
// Raw HTTP framing over a net socket

interface RawCase {
  kind: string;
  bytes: Buffer;
}

function rawCase(i: number): RawCase {
  const r = caseRng(2, i);
  const body = text(validBody(r));
  const head = (extra: string) => `POST /queue/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n${extra}\r\n`;
  switch (r.int(0, 8)) {
    case 0:
      return { kind: 'garbage', bytes: Buffer.from(Array.from({ length: r.int(1, 200) }, () => r.int(0, 255)).concat([13, 10, 13, 10])) };
    case 1:
      return { kind: 'bad header', bytes: Buffer.from(`GET /v1/models HTTP/1.1\r\nHost: x\r\nX-B${String.fromCharCode(r.int(0, 31))}d: y\r\n\r\n`, 'latin1') };
    case 2:
      return { kind: 'content-length and chunked', bytes: Buffer.from(head(`Content-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\n`) + body) };
    case 3: {
      const cut = r.int(1, body.length - 1);
      return { kind: 'content-length short', bytes: Buffer.from(head(`Content-Length: ${cut}\r\n`) + body + 'GARBAGE /x HTTP/9\r\n\r\n') };
    }
    case 4:
      return { kind: 'content-length long, then FIN', bytes: Buffer.from(head(`Content-Length: ${body.length + r.int(1, 100)}\r\n`) + body) };
    case 5:
      return { kind: 'header overflow', bytes: Buffer.from(`GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(r.int(17_000, 40_000))}\r\n\r\n`) };
    case 6:
      return { kind: 'bad chunk', bytes: Buffer.from(head('Transfer-Encoding: chunked\r\n') + `${r.pick(['zz', '-1', 'ffffffffffffffffff', ''])}\r\n${body}\r\n0\r\n\r\n`) };
    case 7:
      return { kind: 'odd request line', bytes: Buffer.from(r.pick(['PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'GET / HTTP/3.0\r\nHost: x\r\n\r\n', 'GET\r\n\r\n', ' / HTTP/1.1\r\n\r\n', 'POST /queue/chat/completions HTTP/1.1\r\n\r\n'])) };
    default: {
      // A good request, then more bytes after it on the same connection: the first is answered normally.
      const good = head(`Content-Length: ${Buffer.byteLength(body)}\r\n`) + body;
      return { kind: 'pipelined', bytes: Buffer.from(good + r.pick(['', good, '\r\n\r\nGARBAGE\r\n\r\n', `GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`])) };
    }
  }
}

/** Splits raw bytes into HTTP responses (content-length or chunked bodies). */
function parseResponses(raw: Buffer): Array<{ status: number; contentType: string; body: Buffer }> {
  const out: Array<{ status: number; contentType: string; body: Buffer }> = [];
  let rest = raw;
  for (let guard = 0; guard < 20 && rest.length > 0; guard++) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) throw new Error(`truncated response head: ${rest.toString('latin1').slice(0, 200)}`);
    const lines = rest.subarray(0, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
    if (!m) throw new Error(`not a status line: ${lines[0]}`);
    const headers = new Map(lines.slice(1).map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
    let body: Buffer;
    let after = end + 4;
    if (headers.has('content-length')) {
      const n = Number(headers.get('content-length'));
      body = rest.subarray(after, after + n);
      after += n;
    } else if (/chunked/i.test(headers.get('transfer-encoding') ?? '')) {
      const parts: Buffer[] = [];
      for (;;) {
        const lineEnd = rest.indexOf('\r\n', after);
        const size = parseInt(rest.subarray(after, lineEnd).toString('latin1'), 16);
        after = lineEnd + 2;
        if (!(size > 0)) {
          after += 2;
          break;
        }
        parts.push(rest.subarray(after, after + size));
        after += size + 2;
      }
      body = Buffer.concat(parts);
    } else body = rest.subarray(after);
    out.push({ status: Number(m[1]), contentType: headers.get('content-type') ?? '', body });
    rest = rest.subarray(after);
  }
  return out;
}

function sendRaw(url: URL, c: RawCase): Promise<Buffer> {
  return new Promise((resolve) => {
    const socket = connect(Number(url.port), '127.0.0.1');
    const parts: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(), 5_000);
    socket.on('data', (d: Buffer) => parts.push(d));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(parts));
    });
    // Half-close after writing: the server answers what it got, then closes (no keep-alive wait).
    socket.end(c.bytes);
  });
}

// ---------------------------------------------------------------------------------------------------
// Heap measurement: the V8 gc function when it can be exposed, else a settle without it

function gcFunction(): (() => void) | undefined {
  try {
    setFlagsFromString('--expose-gc');
    return runInNewContext('gc') as () => void;
  } catch {
    return undefined;
  }
}

async function settledHeap(gc: (() => void) | undefined): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc?.();
    await new Promise((r) => setImmediate(r));
  }
  return process.memoryUsage().heapUsed;
}

// ---------------------------------------------------------------------------------------------------

let g: RunningGateway;
let url: URL;

beforeAll(async () => {
  g = await startGateway(
    testConfig({ m: [{ mockResponse: 'fuzzed' }], q: [{ maxParallelRequests: 2, mockDelayMs: 1 }, { maxParallelRequests: 2, mockDelayMs: 1 }] }, {}, { maxRequestBodyBytes: BODY_LIMIT }),
    { timeouts: { requestTimeoutMs: 2_000, headersTimeoutMs: 2_000, checkIntervalMs: 100 } },
  );
  url = new URL(g.url);
});

afterAll(async () => {
  await g?.stop();
});

interface GroupStatus {
  model: string;
  waiting: number;
  inFlight: number;
}

async function expectIdle(): Promise<void> {
  await waitFor(async () => {
    const s = (await (await fetch(`${g.url}/queue/status`)).json()) as { models: GroupStatus[] };
    return s.models.every((m) => m.waiting === 0 && m.inFlight === 0) && g.gateway.router.liveRequests === 0 ? true : undefined;
  }, 'an empty queue and no slot held', 5_000);
}

describe(`HTTP fuzz (seed ${SEED})`, () => {
  it(`answers ${HTTP_CASES} random and mutated chat requests with a 2xx or the right 4xx in the envelope, and holds nothing after`, async () => {
    const gc = gcFunction();
    const agent = new Agent({ keepAlive: true, maxSockets: 8 });
    const failures: string[] = [];
    const counts = new Map<number, number>();
    let next = 0;
    const run = async (upTo: number) => {
      const worker = async () => {
        while (next < upTo) {
          const i = next++;
          const c = httpCase(i);
          try {
            const a = await send(url, agent, c);
            counts.set(a.status, (counts.get(a.status) ?? 0) + 1);
            const problem = answerProblem(c, a);
            if (problem !== null) failures.push(`${where('http', i)} (${c.kind} ${c.method} ${c.path.slice(0, 60)}): ${problem}; sent ${JSON.stringify(c.body?.toString('utf8').slice(0, 300))}`);
          } catch (e) {
            failures.push(`${where('http', i)} (${c.kind}): no answer: ${(e as Error).message}`);
          }
        }
      };
      await Promise.all(Array.from({ length: 8 }, worker));
    };
    // A warm-up share first, so the heap baseline includes what the first requests allocate for good.
    await run(300);
    const baseline = await settledHeap(gc);
    await run(HTTP_CASES);
    agent.destroy();
    const after = await settledHeap(gc);
    const growthMiB = (after - baseline) / 1024 / 1024;
    console.log(
      `[fuzz-http seed ${SEED}] ${HTTP_CASES} cases; statuses ${JSON.stringify(Object.fromEntries([...counts].sort((a, b) => a[0] - b[0])))}; ` +
        `heapUsed ${(baseline / 1024 / 1024).toFixed(1)} MiB → ${(after / 1024 / 1024).toFixed(1)} MiB (${growthMiB >= 0 ? '+' : ''}${growthMiB.toFixed(1)} MiB, gc ${gc ? 'forced' : 'not available'})`,
    );
    expect(failures.slice(0, 20)).toEqual([]);
    expect([...counts.keys()].every((s) => s < 500)).toBe(true);
    await expectIdle();
    // Loose: 2,700 requests must not leave tens of MiB behind (the figure is printed above).
    if (gc) expect(growthMiB).toBeLessThan(32);
  });

  it(`answers ${RAW_CASES} malformed HTTP framings in the envelope (or closes), and keeps serving`, async () => {
    const failures: string[] = [];
    const statuses = new Map<number, number>();
    for (let i = 0; i < RAW_CASES; i++) {
      const c = rawCase(i);
      const raw = await sendRaw(url, c);
      try {
        for (const res of parseResponses(raw)) {
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          if (res.status >= 500) failures.push(`${where('raw', i)} (${c.kind}): ${res.status}`);
          // Node itself refuses an HTTP/1.1 request without Host (RFC 9112), with a bare 400 and no hook to dress it.
          else if (res.status === 400 && res.body.length === 0 && !/\r\nhost:/i.test(c.bytes.toString('latin1'))) continue;
          else if (res.status >= 400) {
            const problem = envelopeProblem(res.status, res.contentType, res.body);
            if (problem) failures.push(`${where('raw', i)} (${c.kind}): ${problem}`);
          }
        }
      } catch (e) {
        failures.push(`${where('raw', i)} (${c.kind}): ${(e as Error).message}`);
      }
    }
    console.log(`[fuzz-raw seed ${SEED}] ${RAW_CASES} connections; answers by status ${JSON.stringify(Object.fromEntries([...statuses].sort((a, b) => a[0] - b[0])))}`);
    expect(failures.slice(0, 20)).toEqual([]);
    expect(statuses.get(400)).toBeGreaterThan(0);
    const ok = await fetch(`${g.url}/queue/chat/completions`, { method: 'POST', headers: JSON_CT, body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'still here' }] }) });
    expect(ok.status).toBe(200);
    await expectIdle();
  });
});

describe(`the built CLI under fuzz (seed ${SEED})`, () => {
  it('answers fuzzed requests and malformed framing without crashing, then shuts down cleanly', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'triage-fuzz-'));
    const path = join(dir, 'config.yaml');
    writeFileSync(
      path,
      `model_list:\n  - model_name: m\n    litellm_params: {model: mock/m, mock_response: fuzzed}\n` +
        `  - model_name: q\n    litellm_params: {model: mock/q, mock_response: ok, mock_delay: 0.001, max_parallel_requests: 2}\n` +
        `  - model_name: q\n    litellm_params: {model: mock/q, mock_response: ok, mock_delay: 0.001, max_parallel_requests: 2}\n` +
        `general_settings:\n  max_request_body_bytes: ${BODY_LIMIT}\n`,
    );
    const cli = runCli(['--config', path, '--port', '0']);
    try {
      const cliUrl = new URL(await cli.url);
      const agent = new Agent({ keepAlive: true, maxSockets: 4 });
      const failures: string[] = [];
      // Other cases than the in-process run's: indexes from HTTP_CASES on.
      for (let i = HTTP_CASES; i < HTTP_CASES + CLI_CASES; i++) {
        const c = httpCase(i);
        try {
          const problem = answerProblem(c, await send(cliUrl, agent, c));
          if (problem !== null) failures.push(`${where('cli', i)} (${c.kind}): ${problem}`);
        } catch (e) {
          failures.push(`${where('cli', i)} (${c.kind}): no answer: ${(e as Error).message}`);
        }
        if (i % 10 === 0) await sendRaw(cliUrl, rawCase(i));
      }
      agent.destroy();
      expect(failures.slice(0, 20)).toEqual([]);
      expect(cli.child.exitCode).toBeNull();
      expect((await fetch(`${cliUrl.origin}/health/liveliness`)).status).toBe(200);
      const s = (await (await fetch(`${cliUrl.origin}/queue/status`)).json()) as { models: GroupStatus[] };
      expect(s.models.every((m) => m.waiting === 0 && m.inFlight === 0)).toBe(true);
      cli.child.kill('SIGTERM');
      expect(await cli.exit).toBe(0);
      expect(cli.stderr()).not.toMatch(/uncaught|unhandled|RangeError|TypeError/i);
    } finally {
      if (cli.child.exitCode === null) cli.child.kill('SIGKILL');
    }
  });
});

describe('deep bodies to an HTTP upstream', () => {
  it('forwards a body nested to the bound, refuses one past it with 400, and never fails or cools the deployment', async () => {
    const fake = await FakeOpenAI.start();
    const config = testConfig({}, { numRetries: 2, allowedFails: 0 });
    config.modelGroups = [
      {
        name: 'h',
        deployments: [{ id: 'h-1', modelName: 'h', model: 'openai/up', provider: 'openai', upstreamModel: 'up', limits: {}, mockDelayMs: 0, apiBase: fake.url, apiKey: 'sk-deep' }],
      },
    ];
    const h = await startGateway(config);
    try {
      const post = (depth: number) =>
        fetch(`${h.url}/v1/chat/completions`, { method: 'POST', headers: JSON_CT, body: `{"model":"h","messages":[{"role":"user","content":"d"}],"tools":${nested(depth - 1, 'array')}}` });
      for (const depth of [MAX_BODY_DEPTH, MAX_BODY_DEPTH + 1, 10_000, 100_000]) {
        const r = await post(depth);
        const body = (await r.json()) as { error?: { code: string; param: string } };
        if (depth <= MAX_BODY_DEPTH) expect(r.status, `depth ${depth}`).toBe(200);
        else {
          expect(r.status, `depth ${depth}`).toBe(400);
          expect(body.error).toMatchObject({ code: 'invalid_request', param: 'tools' });
        }
      }
      // Only the body at the bound reached the upstream; nothing failed, so nothing cooled down.
      expect(fake.requests).toHaveLength(1);
      const s = (await (await fetch(`${h.url}/queue/status`)).json()) as { models: Array<{ deployments: Array<{ coolingDownUntil: number | null }> }> };
      expect(s.models[0].deployments[0].coolingDownUntil).toBeNull();
    } finally {
      await h.stop();
      await fake.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------------
// WebSocket messages to /queue/events

interface WsMessage {
  type: string;
  [k: string]: unknown;
}

/** A subscriber whose replies are read one at a time, with a deadline. */
class Subscriber {
  readonly messages: WsMessage[] = [];
  closed: { code: number } | null = null;
  private wake: (() => void) | null = null;
  private constructor(readonly socket: WebSocket) {
    socket.on('message', (data) => {
      this.messages.push(JSON.parse(String(data)) as WsMessage);
      this.wake?.();
    });
    socket.on('close', (code) => {
      this.closed = { code };
      this.wake?.();
    });
    socket.on('error', () => undefined);
  }

  static async open(query = ''): Promise<Subscriber> {
    const socket = new WebSocket(`${g.url.replace('http', 'ws')}/queue/events${query}`);
    const s = new Subscriber(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('error', reject);
    });
    return s;
  }

  /** The next message (or null once closed), within 5 s. */
  async next(): Promise<WsMessage | null> {
    const deadline = Date.now() + 5_000;
    while (this.messages.length === 0) {
      if (this.closed) return null;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('no reply within 5 s');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wake = null;
    }
    return this.messages.shift()!;
  }

  close(): void {
    if (this.socket.readyState === WebSocket.OPEN) this.socket.terminate();
  }
}

type WsSend = { kind: string; data: string | Buffer; binary: boolean; expect: 'subscribed' | 'pong' | 'error' | 'close-1009' | 'close-1007' };

function wsMessage(i: number): WsSend {
  const r = caseRng(3, i);
  const models = ['m', 'q'];
  const types = ['request.queued', 'request.done', 'deployment.cooldown_start'];
  switch (r.int(0, 11)) {
    case 0:
    case 1: {
      const msg: Record<string, unknown> = { type: 'subscribe' };
      if (r.chance(0.5)) msg.models = r.chance(0.5) ? models.slice(0, r.int(0, 2)) : r.pick(models);
      if (r.chance(0.5)) msg.types = r.chance(0.5) ? types.slice(0, r.int(0, 3)) : types.join(',');
      if (r.chance(0.3)) msg.mine = r.pick([true, false, 'true', '1', 0]);
      if (r.chance(0.3)) msg.request = r.pick(['', null, 'abc']);
      return { kind: 'subscribe', data: JSON.stringify(msg), binary: false, expect: 'subscribed' };
    }
    case 2: {
      const bad = r.pick<Record<string, unknown>>([
        { models: ['nope'] },
        { models: 5 },
        { models: [1] },
        { models: { a: 1 } },
        { types: ['request.nope'] },
        { types: [null] },
        { request: 5 },
        { request: 'x'.repeat(300) },
        { models: Array.from({ length: 101 }, () => 'm') },
      ]);
      return { kind: 'bad subscribe', data: JSON.stringify({ type: 'subscribe', ...bad }), binary: false, expect: 'error' };
    }
    case 3:
      return { kind: 'ping', data: JSON.stringify({ type: 'ping', extra: randomText(r) }), binary: false, expect: 'pong' };
    case 4:
    case 5: {
      // Random JSON that is an object: only subscribe and ping are known types.
      const j = randomJson(r);
      const obj: Json = isObj(j) ? j : { obj: [['type', j]] };
      const parsed = JSON.parse(text(obj)) as { type?: unknown };
      const known = parsed.type === 'subscribe' || parsed.type === 'ping';
      if (known) return { kind: 'ping', data: JSON.stringify({ type: 'ping' }), binary: false, expect: 'pong' };
      return { kind: 'random object', data: text(obj), binary: false, expect: 'error' };
    }
    case 6:
      return { kind: 'not an object', data: r.pick(['1', '"subscribe"', '[]', 'null', 'true', '[{"type":"ping"}]']), binary: false, expect: 'error' };
    case 7:
    case 8:
      return { kind: 'not JSON', data: r.pick(['', 'ping', '{', '{"type":', randomText(r), '\u0000', '{"type":"ping"}x']), binary: false, expect: 'error' };
    case 9:
      return { kind: 'binary', data: Buffer.from(Array.from({ length: r.int(0, 64) }, () => r.int(0, 255))), binary: true, expect: 'error' };
    case 10: {
      const size = DEFAULT_EVENT_STREAM_OPTIONS.maxMessageBytes + r.int(1, 4096);
      return { kind: 'oversized', data: r.chance(0.5) ? JSON.stringify({ type: 'ping', pad: 'x'.repeat(size) }) : Buffer.alloc(size, 7), binary: r.chance(0.5), expect: 'close-1009' };
    }
    default:
      // A text frame that is not UTF-8: a protocol error the WebSocket library closes with 1007.
      return { kind: 'invalid UTF-8 text', data: Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), binary: false, expect: 'close-1007' };
  }
}

function randomText(r: Rng): string {
  return String.fromCharCode(...Array.from({ length: r.int(0, 40) }, () => r.int(1, 0xd7ff)));
}

function wsProblem(m: WsMessage | null, send: WsSend): string | null {
  if (send.expect.startsWith('close')) return m === null ? null : `expected a close, got ${JSON.stringify(m).slice(0, 200)}`;
  if (m === null) return 'connection closed';
  if (m.type !== send.expect) return `reply ${JSON.stringify(m).slice(0, 200)}, expected ${send.expect}`;
  if (m.type === 'error') {
    const { type: _type, ...envelope } = m;
    const problem = shapeProblem(envelope as { error?: Record<string, unknown> });
    if (problem) return problem;
    if ((envelope.error as { code?: string }).code === 'internal_error') return 'internal_error';
  }
  if (m.type === 'pong' && typeof m.at !== 'number') return 'pong without at';
  if (m.type === 'subscribed') {
    const f = m.filter as Record<string, unknown> | undefined;
    if (f === undefined || !('models' in f) || !('types' in f) || typeof f.mine !== 'boolean') return `subscribed without its filter: ${JSON.stringify(m)}`;
  }
  return null;
}

describe(`WebSocket /queue/events fuzz (seed ${SEED})`, () => {
  it(`replies to each of ${WS_MESSAGES} random messages with an error envelope or a valid answer, closing only on oversized or non-UTF-8 frames`, async () => {
    const failures: string[] = [];
    let sub = await Subscriber.open();
    let snapshot = await sub.next();
    expect(snapshot?.type).toBe('snapshot');
    const closes = new Map<number, number>();
    for (let i = 0; i < WS_MESSAGES; i++) {
      const m = wsMessage(i);
      sub.socket.send(m.data, { binary: m.binary });
      let reply: WsMessage | null;
      try {
        reply = await sub.next();
      } catch (e) {
        failures.push(`${where('ws', i)} (${m.kind}): ${(e as Error).message}`);
        break;
      }
      const problem = wsProblem(reply, m);
      if (problem) failures.push(`${where('ws', i)} (${m.kind}): ${problem}`);
      if (reply === null) {
        const code = sub.closed?.code ?? 0;
        closes.set(code, (closes.get(code) ?? 0) + 1);
        const wanted = m.expect === 'close-1009' ? 1009 : m.expect === 'close-1007' ? 1007 : -1;
        if (code !== wanted) failures.push(`${where('ws', i)} (${m.kind}): closed with ${code}, expected ${wanted}`);
        sub = await Subscriber.open();
        snapshot = await sub.next();
        if (snapshot?.type !== 'snapshot') failures.push(`${where('ws', i)}: reconnect got ${JSON.stringify(snapshot)}`);
      }
      if (failures.length > 20) break;
    }
    sub.close();
    console.log(`[fuzz-ws seed ${SEED}] ${WS_MESSAGES} messages; closes by code ${JSON.stringify(Object.fromEntries(closes))}`);
    expect(failures).toEqual([]);
  });

  it('applies a configured message limit (eventStream.maxMessageBytes), not only the default', async () => {
    const small = await startGateway(testConfig({ m: [{}] }), { eventStream: { maxMessageBytes: 1_024 } });
    try {
      const socket = new WebSocket(`${small.url.replace('http', 'ws')}/queue/events`);
      const replies: string[] = [];
      socket.on('message', (d) => replies.push(String(d)));
      const closed = new Promise<number>((resolve) => socket.on('close', (code) => resolve(code)));
      await new Promise<void>((resolve, reject) => {
        socket.once('open', () => resolve());
        socket.once('error', reject);
      });
      socket.send(JSON.stringify({ type: 'ping', pad: 'x'.repeat(900) }));
      await waitFor(() => (replies.some((r) => r.includes('"pong"')) ? true : undefined), 'the pong');
      socket.send(JSON.stringify({ type: 'ping', pad: 'x'.repeat(1_100) }));
      expect(await closed).toBe(1009);
    } finally {
      await small.stop();
    }
  });

  it(`answers ${WS_CONNECTS} random connect filters with a snapshot, or an error envelope and close 1008`, async () => {
    const failures: string[] = [];
    for (let i = 0; i < WS_CONNECTS; i++) {
      const r = caseRng(4, i);
      const params = new URLSearchParams();
      if (r.chance(0.6)) params.append('models', r.pick(['m', 'q', 'm,q', 'nope', '', ',,', 'm,nope']));
      if (r.chance(0.3)) params.append('models', 'q');
      if (r.chance(0.5)) params.append('types', r.pick(['request.done', 'request.done,request.queued', 'bogus', '', 'store.error']));
      if (r.chance(0.3)) params.append('request', r.pick(['x', 'y'.repeat(250), '']));
      if (r.chance(0.3)) params.append('mine', r.pick(['1', 'true', 'no', '']));
      const query = `?${params.toString()}`;
      // As the server reads them: one value is a comma-separated list, repeated values a list as they are.
      const listOf = (name: string) => {
        const values = params.getAll(name);
        return (values.length === 1 ? values[0].split(',') : values).map((v) => v.trim()).filter((v) => v !== '');
      };
      const bad =
        listOf('models').some((x) => x !== 'm' && x !== 'q') ||
        listOf('types').some((t) => !EVENT_TYPES.includes(t as (typeof EVENT_TYPES)[number])) ||
        (params.get('request')?.length ?? 0) > 200;
      const sub = await Subscriber.open(query);
      const first = await sub.next();
      if (bad) {
        if (first?.type !== 'error') failures.push(`${where('ws-connect', i)} ${query}: expected an error, got ${JSON.stringify(first)?.slice(0, 200)}`);
        else {
          const problem = wsProblem(first, { kind: 'connect', data: '', binary: false, expect: 'error' });
          if (problem) failures.push(`${where('ws-connect', i)} ${query}: ${problem}`);
          const closed = await sub.next();
          if (closed !== null || sub.closed?.code !== 1008) failures.push(`${where('ws-connect', i)} ${query}: not closed with 1008`);
        }
      } else if (first?.type !== 'snapshot') failures.push(`${where('ws-connect', i)} ${query}: expected a snapshot, got ${JSON.stringify(first)?.slice(0, 200)}`);
      sub.close();
    }
    expect(failures).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------------
// Config files

const BASE_YAML = `model_list:
  - model_name: fast
    litellm_params:
      model: mock/fast
      mock_response: "hi"
      mock_delay: 0.01
      rpm: 100
  - model_name: real
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: http://127.0.0.1:9/v1
      api_key: os.environ/FUZZ_UPSTREAM_KEY
      tpm: 1000
      max_parallel_requests: 2
      timeout: 30
    model_info:
      id: real-1
router_settings:
  timeout: 60
  default_priority: 5
  min_priority: 0
  max_priority: 100
  num_retries: 1
  cooldown_time: 2
  allowed_fails: 2
  max_queue_size: 100
  priority_aging_seconds: 10
general_settings:
  master_key: os.environ/FUZZ_MASTER
  max_request_body_bytes: 65536
  public_metrics: false
  keys:
    - key: sk-fuzz-virtual-1
      name: batch
      models: [fast]
      max_priority: 50
      rpm: 10
litellm_settings:
  drop_params: true
`;
const CONFIG_ENV = { FUZZ_UPSTREAM_KEY: 'sk-upstream-fuzz', FUZZ_MASTER: 'sk-master-fuzz' };

const YAML_TOKENS = [
  ':', ': ', '- ', '-', '[', ']', '{', '}', ',', '"', "'", '#', '&a ', '!!str ', '!!int ', '!!binary ', '!!set ', '!!timestamp ', '!!js/function ', '? ',
  '|', '>', '\t', '\n', '\n  ', '\r\n', '\u0000', '\ufeff', 'null', '~', 'true', 'no', '0x10', '1e999', '-1', '0.5', '.inf', '.nan', '1_000', 'os.environ/', 'os.environ/NOPE',
  'os.environ/FUZZ_MASTER', '__proto__', 'constructor', 'model_list', 'model_name', 'litellm_params', 'keys', 'key', '---\n', '...\n', '%YAML 1.2\n', '<<: ', 'é', '😀',
];
const KEYS_TO_RENAME = ['model_list', 'model_name', 'litellm_params', 'model', 'rpm', 'tpm', 'timeout', 'keys', 'key', 'name', 'models', 'max_priority', 'master_key', 'api_key', 'api_base'];

function mutateText(r: Rng, yaml: string): string {
  let out = yaml;
  for (let n = r.int(1, 4); n > 0; n--) {
    const at = r.int(0, out.length);
    switch (r.int(0, 6)) {
      case 0:
        out = out.slice(0, at) + out.slice(at + r.int(1, 20));
        break;
      case 1:
        out = out.slice(0, at) + r.pick(YAML_TOKENS) + out.slice(at);
        break;
      case 2:
        out = out.slice(0, at) + String.fromCharCode(r.int(0, 0x7f)) + out.slice(at + 1);
        break;
      case 3: {
        const lines = out.split('\n');
        const i = r.int(0, lines.length - 1);
        lines.splice(r.int(0, lines.length), 0, lines[i]);
        out = lines.join('\n');
        break;
      }
      case 4: {
        const lines = out.split('\n');
        const i = r.int(0, lines.length - 1);
        lines[i] = r.chance(0.5) ? ` ${lines[i]}` : lines[i].replace(/^ /, '');
        out = lines.join('\n');
        break;
      }
      case 5: {
        const key = r.pick(KEYS_TO_RENAME);
        out = out.replace(`${key}:`, `${r.pick([`${key}x`, key.toUpperCase(), '__proto__', 'constructor', `${key}:\n  ${key}`])}:`);
        break;
      }
      default: {
        // A value replaced by something of another type.
        const lines = out.split('\n');
        const i = r.int(0, lines.length - 1);
        lines[i] = lines[i].replace(/:\s.*$/, `: ${r.pick(['[]', '{}', '~', '-5', '0', '1.5', '"x"', 'yes', '[1, 2]', '{a: 1}', '"os.environ/NOPE"', '9'.repeat(400), '!!binary aGk=', '&b {x: 1}', '*b'])}`);
        out = lines.join('\n');
      }
    }
  }
  return out;
}

describe(`config fuzz (seed ${SEED})`, () => {
  it(`loads or refuses ${CONFIG_CASES} mutated configs with a ConfigError whose every issue has a path, never another exception`, () => {
    expect(() => parseConfig(BASE_YAML, { env: CONFIG_ENV })).not.toThrow();
    const failures: string[] = [];
    let loaded = 0;
    let refused = 0;
    const warn = process.emitWarning;
    // The YAML library warns through process.emitWarning about odd keys; that is not a failure.
    process.emitWarning = () => undefined;
    try {
      for (let i = 0; i < CONFIG_CASES; i++) {
        const r = caseRng(5, i);
        const yaml = mutateText(r, BASE_YAML);
        try {
          const result = parseConfig(yaml, { env: CONFIG_ENV, source: 'fuzz.yaml' });
          loaded += 1;
          for (const w of result.warnings) if (typeof w.path !== 'string' || w.path === '') failures.push(`${where('config', i)}: a warning without a path`);
          const secrets = JSON.stringify(result.warnings);
          if (secrets.includes('sk-master-fuzz') || secrets.includes('sk-upstream-fuzz')) failures.push(`${where('config', i)}: a warning shows a secret`);
        } catch (e) {
          if (!(e instanceof ConfigError)) {
            failures.push(`${where('config', i)}: ${(e as Error)?.name}: ${(e as Error)?.message}\n${JSON.stringify(yaml)}`);
            continue;
          }
          refused += 1;
          if (e.issues.length === 0) failures.push(`${where('config', i)}: a ConfigError without issues`);
          for (const issue of e.issues) {
            if (typeof issue.path !== 'string' || issue.path === '' || typeof issue.message !== 'string' || issue.message === '') {
              failures.push(`${where('config', i)}: an issue without a path or message: ${JSON.stringify(issue)}`);
            }
          }
          if (e.message.includes('sk-master-fuzz') || e.message.includes('sk-upstream-fuzz')) failures.push(`${where('config', i)}: the error shows a secret`);
        }
        if (failures.length > 20) break;
      }
    } finally {
      process.emitWarning = warn;
    }
    console.log(`[fuzz-config seed ${SEED}] ${CONFIG_CASES} mutations: ${loaded} loaded, ${refused} refused with a ConfigError`);
    expect(failures).toEqual([]);
    expect(refused).toBeGreaterThan(0);
  });

  it('refuses hostile YAML (deep nesting, alias bombs, odd tags) with a ConfigError', () => {
    const hostile = [
      `model_list: ${'['.repeat(10_000)}${']'.repeat(10_000)}`,
      `model_list: ${'{a: '.repeat(10_000)}1${'}'.repeat(10_000)}`,
      `model_list:\n${Array.from({ length: 2_000 }, (_, i) => `${' '.repeat(i + 1)}- `).join('\n')}`,
      'a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nmodel_list: []',
      'model_list: !!binary aGVsbG8=',
      'model_list: !!set {a, b}',
      'model_list: *undefined_alias',
      'model_list: &a\n  - *a\n',
      'x: &a [*a]\nmodel_list:\n  - model_name: m\n    litellm_params: {model: mock/m, mock_response: hi}\n',
      '---\n---\n',
      '\ufeff\u0000',
    ];
    for (const yaml of hostile) {
      let thrown: unknown;
      try {
        parseConfig(yaml, { env: {} });
      } catch (e) {
        thrown = e;
      }
      expect(thrown, yaml.slice(0, 60)).toBeInstanceOf(ConfigError);
      for (const issue of (thrown as ConfigError).issues) expect(issue.path.length).toBeGreaterThan(0);
    }
  });
});
