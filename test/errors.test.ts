import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, it, expect } from 'vitest';
import { ERROR_TABLE, TriageError, isTriageError, toTriageError, type ErrorCode } from '../src/errors.js';

const DOC = fileURLToPath(new URL('../docs/errors.md', import.meta.url));

interface DocRow {
  code: string;
  status: number;
  type: string;
  when: string;
  retryAfter: string;
}

/** The rows of the table in docs/errors.md: | `code` | status | `type` | when | Retry-After |. */
function docRows(): Map<string, DocRow> {
  const rows = new Map<string, DocRow>();
  for (const line of readFileSync(DOC, 'utf8').split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    // A table line starts and ends with '|': cells[0] and the last cell are empty.
    if (cells.length < 7 || !/^`[a-z_]+`$/.test(cells[1])) continue;
    const row: DocRow = {
      code: cells[1].slice(1, -1),
      status: Number(cells[2]),
      type: cells[3].replace(/`/g, ''),
      when: cells[4],
      retryAfter: cells[5],
    };
    expect(rows.has(row.code), `duplicate row for ${row.code}`).toBe(false);
    rows.set(row.code, row);
  }
  return rows;
}

const codes = Object.keys(ERROR_TABLE) as ErrorCode[];

describe('docs/errors.md documents ERROR_TABLE', () => {
  const rows = docRows();

  it.each(codes)('%s has a row with its status and type', (code) => {
    const row = rows.get(code);
    expect(row, `docs/errors.md has no row for ${code}`).toBeDefined();
    expect(row!.status).toBe(ERROR_TABLE[code].status);
    expect(row!.type).toBe(ERROR_TABLE[code].type);
    expect(row!.when.length).toBeGreaterThan(20);
  });

  it('documents no code that does not exist', () => {
    expect([...rows.keys()].sort()).toEqual([...codes].sort());
  });

  it('says where a Retry-After is sent', () => {
    for (const code of ['queue_full', 'key_rate_limited', 'store_unavailable']) {
      expect(rows.get(code)!.retryAfter).toMatch(/^Yes/);
    }
    expect(rows.get('queue_timeout')!.retryAfter).not.toMatch(/^Yes/);
  });
});

describe('TriageError', () => {
  it('takes status, type and default message from the table for every code', () => {
    for (const code of codes) {
      const e = new TriageError(code);
      expect(e).toBeInstanceOf(Error);
      expect(e.name).toBe('TriageError');
      expect(e.code).toBe(code);
      expect(e.status).toBe(ERROR_TABLE[code].status);
      expect(e.type).toBe(ERROR_TABLE[code].type);
      expect(e.message).toBe(ERROR_TABLE[code].message);
      expect(e.param).toBeNull();
      expect(e.retryAfterSeconds).toBeUndefined();
      expect(e.toJSON()).toEqual({ error: { message: e.message, type: e.type, param: null, code } });
    }
  });

  it('carries param, retryAfterSeconds, cause and an overriding status', () => {
    const cause = new Error('boom');
    const e = new TriageError('upstream_error', 'bad request upstream', { status: 422, param: 'messages', retryAfterSeconds: 7, cause });
    expect(e.status).toBe(422);
    expect(e.type).toBe('upstream_error');
    expect(e.param).toBe('messages');
    expect(e.retryAfterSeconds).toBe(7);
    expect(e.cause).toBe(cause);
    expect(e.toJSON().error).toEqual({ message: 'bad request upstream', type: 'upstream_error', param: 'messages', code: 'upstream_error' });
  });

  it('toTriageError keeps TriageErrors and hides anything else behind internal_error', () => {
    const mine = new TriageError('queue_full');
    expect(toTriageError(mine)).toBe(mine);
    const wrapped = toTriageError(new Error('secret detail'));
    expect(wrapped.code).toBe('internal_error');
    expect(wrapped.message).not.toContain('secret');
    expect(isTriageError(wrapped)).toBe(true);
    expect(isTriageError(new Error('x'))).toBe(false);
    expect(toTriageError('string thrown').code).toBe('internal_error');
  });
});

describe('TriageError stack traces', () => {
  const frames = (e: Error) => String(e.stack).split('\n').filter((l) => l.trim().startsWith('at ')).length;

  it('captures none for an answer (every code but internal_error), and keeps the message as the stack\'s first line', () => {
    for (const code of Object.keys(ERROR_TABLE) as ErrorCode[]) {
      if (code === 'internal_error') continue;
      const e = new TriageError(code, `a ${code}`);
      expect(frames(e), code).toBe(0);
      expect(String(e.stack), code).toBe(`TriageError: a ${code}`);
    }
  });

  it('captures one for internal_error (a fault of Triage), and leaves Error.stackTraceLimit as it was', () => {
    const before = Error.stackTraceLimit;
    expect(frames(new TriageError('internal_error', 'bug'))).toBeGreaterThan(0);
    new TriageError('queue_full');
    expect(Error.stackTraceLimit).toBe(before);
    expect(frames(new Error('after'))).toBeGreaterThan(0);
  });
});

describe('named error classes', () => {
  it('are TriageErrors with their fixed code and param, and the status of that code in ERROR_TABLE', async () => {
    const { InvalidPriorityError, ModelNotFoundError, QueueTimeoutError, QueueFullError, ShuttingDownError, RequestCancelledError, StoreUnavailableError, InvalidRequestError, TriageError } = await import('../src/errors.js');
    const cases = [
      [new InvalidRequestError('x'), 'invalid_request'],
      [new InvalidPriorityError('x'), 'invalid_priority'],
      [new ModelNotFoundError('x'), 'model_not_found'],
      [new QueueTimeoutError('x'), 'queue_timeout'],
      [new QueueFullError('x', 7), 'queue_full'],
      [new ShuttingDownError(), 'shutting_down'],
      [new RequestCancelledError(), 'client_closed'],
      [new StoreUnavailableError('x'), 'store_unavailable'],
    ] as const;
    for (const [error, code] of cases) {
      expect(error).toBeInstanceOf(TriageError);
      expect(error.code).toBe(code);
      expect(error.status).toBe(ERROR_TABLE[code].status);
      expect(error.name).toMatch(/Error$/);
    }
    expect(new InvalidPriorityError('x').param).toBe('priority');
    expect(new ModelNotFoundError('x').param).toBe('model');
    expect(new QueueFullError('x', 7).retryAfterSeconds).toBe(7);
  });
});
