/**
 * Deterministic embedding vectors for mock deployments: the same input always gives the same unit
 * vector, different inputs different ones, so code that stores and compares embeddings can be tried
 * offline. A 32-bit FNV-1a hash of the input seeds a small PRNG (mulberry32) per vector.
 */

function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** A unit-length vector of `dimensions` numbers for `input` (a string, or a token array). */
export function mockEmbedding(input: string | readonly number[], dimensions: number): number[] {
  let state = fnv1a(typeof input === 'string' ? input : `tokens:${input.join(',')}`);
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const v = new Array<number>(dimensions);
  let norm = 0;
  for (let i = 0; i < dimensions; i++) {
    v[i] = next() * 2 - 1;
    norm += v[i]! * v[i]!;
  }
  const scale = norm > 0 ? 1 / Math.sqrt(norm) : 0;
  // Float32 precision, as the API's vectors (and base64 encoding) have.
  for (let i = 0; i < dimensions; i++) v[i] = Math.fround(v[i]! * scale);
  return v;
}

/** A vector as the API's `encoding_format: "base64"` sends it: little-endian float32s, base64. */
export function base64Embedding(vector: readonly number[]): string {
  const buffer = Buffer.alloc(vector.length * 4);
  for (let i = 0; i < vector.length; i++) buffer.writeFloatLE(vector[i]!, i * 4);
  return buffer.toString('base64');
}

/** An embeddings `input` as its list of items (a single string or token array is one item). */
export function embeddingItems(input: unknown): Array<string | number[]> {
  if (typeof input === 'string') return [input];
  if (Array.isArray(input) && input.length > 0 && input.every((t) => typeof t === 'number')) return [input as number[]];
  return Array.isArray(input) ? (input as Array<string | number[]>) : [];
}
