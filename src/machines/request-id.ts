/**
 * Request ids: random (version 4) UUIDs, written as flat strings; and completion ids (`chatcmpl-` and
 * 24 hex digits) made the same way.
 *
 * Why not `crypto.randomUUID()`: on Node 20 it builds the id by concatenating hex pieces, and the
 * result stays a tree of string fragments for as long as the id lives. A waiting request keeps its id
 * in its actor, its queue entry and the router's map, so with many waiters those fragments were a
 * sizeable part of the heap per waiter (docs/performance.md, "Flat request ids"). Here the 36 characters are written into a buffer and
 * read back once as one 36-byte string. Random bytes are drawn in batches, as Node does for its own.
 */
import { randomFillSync } from 'node:crypto';

const RANDOM_BATCH_BYTES = 4096;
const random = Buffer.allocUnsafe(RANDOM_BATCH_BYTES);
let used = RANDOM_BATCH_BYTES;
const text = Buffer.allocUnsafe(36);
const HEX = Buffer.from('0123456789abcdef', 'latin1');
/** Byte offsets after which a dash goes (8-4-4-4-12 hex digits). */
const DASH_AFTER = new Set([3, 5, 7, 9]);

/** The offset of `n` fresh random bytes in `random` (refilled when spent). */
function randomBytes(n: number): number {
  if (used + n > RANDOM_BATCH_BYTES) {
    randomFillSync(random);
    used = 0;
  }
  const at = used;
  used += n;
  return at;
}

export function newRequestId(): string {
  const at = randomBytes(16);
  let out = 0;
  for (let i = 0; i < 16; i++) {
    let byte = random[at + i]!;
    if (i === 6) byte = (byte & 0x0f) | 0x40; // version 4
    if (i === 8) byte = (byte & 0x3f) | 0x80; // RFC 4122 variant
    text[out++] = HEX[byte >> 4]!;
    text[out++] = HEX[byte & 0x0f]!;
    if (DASH_AFTER.has(i)) text[out++] = 0x2d;
  }
  return text.toString('latin1', 0, 36);
}

const COMPLETION_PREFIX = 'chatcmpl-';
const completionText = Buffer.from(`${COMPLETION_PREFIX}${'0'.repeat(24)}`, 'latin1');

/** An OpenAI-style completion id, `chatcmpl-` and 24 random hex digits (96 bits), as one flat string. */
export function newCompletionId(): string {
  const at = randomBytes(12);
  let out = COMPLETION_PREFIX.length;
  for (let i = 0; i < 12; i++) {
    const byte = random[at + i]!;
    completionText[out++] = HEX[byte >> 4]!;
    completionText[out++] = HEX[byte & 0x0f]!;
  }
  return completionText.toString('latin1');
}
