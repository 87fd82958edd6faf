/**
 * Request ids: random (version 4) UUIDs, written as flat strings.
 *
 * Why not `crypto.randomUUID()`: on Node 20 it builds the id by concatenating hex pieces, and the
 * result stays a tree of ~14 string fragments (~450 bytes) for as long as the id lives. A waiting
 * request keeps its id in its actor, its queue entry and the router's map, so at 100k waiters those
 * fragments were a tenth of the heap per waiter. Here the 36 characters are written into a buffer and
 * read back once as one 36-byte string. Random bytes are drawn in batches, as Node does for its own.
 */
import { randomFillSync } from 'node:crypto';

const IDS_PER_BATCH = 256;
const random = Buffer.allocUnsafe(16 * IDS_PER_BATCH);
let used = IDS_PER_BATCH;
const text = Buffer.allocUnsafe(36);
const HEX = Buffer.from('0123456789abcdef', 'latin1');
/** Byte offsets after which a dash goes (8-4-4-4-12 hex digits). */
const DASH_AFTER = new Set([3, 5, 7, 9]);

export function newRequestId(): string {
  if (used === IDS_PER_BATCH) {
    randomFillSync(random);
    used = 0;
  }
  const at = 16 * used++;
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
