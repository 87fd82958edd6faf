import { describe, expect, it } from 'vitest';
import { newCompletionId, newRequestId } from '../src/machines/request-id.js';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('newRequestId', () => {
  it('gives version 4 UUIDs, all different, across several random batches', () => {
    const ids = Array.from({ length: 2_000 }, () => newRequestId());
    for (const id of ids) expect(id).toMatch(UUID_V4);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('uses every hex digit in every random position (no stuck nibble)', () => {
    const seen = Array.from({ length: 36 }, () => new Set<string>());
    for (let n = 0; n < 2_000; n++) [...newRequestId()].forEach((c, i) => seen[i]!.add(c));
    const fixed = new Map([[8, '-'], [13, '-'], [14, '4'], [18, '-'], [23, '-']]);
    seen.forEach((chars, i) => {
      if (fixed.has(i)) expect([...chars]).toEqual([fixed.get(i)]);
      else if (i === 19) expect([...chars].sort()).toEqual(['8', '9', 'a', 'b']);
      else expect(chars.size).toBe(16);
    });
  });
});

describe('newCompletionId', () => {
  it('gives chatcmpl- and 24 hex digits, all different, interleaved with request ids drawing on the same random bytes', () => {
    const ids: string[] = [];
    for (let n = 0; n < 2_000; n++) {
      ids.push(newCompletionId());
      expect(newRequestId()).toMatch(UUID_V4);
    }
    for (const id of ids) expect(id).toMatch(/^chatcmpl-[0-9a-f]{24}$/);
    expect(new Set(ids).size).toBe(ids.length);
    const seen = Array.from({ length: 24 }, () => new Set<string>());
    for (const id of ids) [...id.slice('chatcmpl-'.length)].forEach((c, i) => seen[i]!.add(c));
    for (const chars of seen) expect(chars.size).toBe(16);
  });
});
