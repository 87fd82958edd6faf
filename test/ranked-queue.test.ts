import { describe, it, expect } from 'vitest';
import { RankedQueue, type RankKey } from '../src/machines/ranked-queue.js';
import { prng } from './support/prng.js';

const byNumber: RankKey<number> = (v, out) => {
  out[0] = v;
  out[1] = 0;
  out[2] = 0;
};

/** Index of the first element >= value in a sorted array: the number of elements ordered before value. */
function lowerBound(sorted: number[], value: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid] < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function contents<T>(q: RankedQueue<T>): T[] {
  const out: T[] = [];
  q.forEach((v) => {
    out.push(v);
  });
  return out;
}

function checkAgainstReference(q: RankedQueue<number>, ref: number[]): void {
  expect(q.size).toBe(ref.length);
  expect(contents(q)).toEqual(ref);
  expect(q.peek()).toBe(ref[0]);
  expect(q.peekLast()).toBe(ref.at(-1));
  // The rank of every element is its position among the sorted values (the first of equal ones).
  for (let i = 0; i < ref.length; i++) {
    const expected = lowerBound(ref, ref[i]);
    const got = q.rank(ref[i]);
    if (got !== expected) throw new Error(`rank(${ref[i]}) = ${got}, expected ${expected} (index ${i})`);
  }
}

describe('RankedQueue (size-augmented treap)', () => {
  it('matches a sorted-array reference over 20,000 seeded random operations', () => {
    const random = prng(0xc0ffee);
    const q = new RankedQueue<number>(byNumber);
    const ref: number[] = [];
    const counts = { insert: 0, deleteHit: 0, deleteMiss: 0, shift: 0, rank: 0 };
    const VALUES = 3_000; // small enough that duplicates and deletes of present values are common

    for (let op = 0; op < 20_000; op++) {
      const r = random();
      if (r < 0.45 || ref.length === 0) {
        const v = Math.floor(random() * VALUES);
        q.insert(v);
        ref.splice(lowerBound(ref, v), 0, v);
        counts.insert++;
      } else if (r < 0.7) {
        // Half the deletes target a present value, half a random one (often missing).
        const v = random() < 0.5 ? ref[Math.floor(random() * ref.length)] : Math.floor(random() * VALUES) + 0.5;
        const i = lowerBound(ref, v);
        const present = i < ref.length && ref[i] === v;
        expect(q.delete(v)).toBe(present);
        if (present) {
          ref.splice(i, 1);
          counts.deleteHit++;
        } else counts.deleteMiss++;
      } else if (r < 0.85) {
        expect(q.shift()).toBe(ref.shift());
        counts.shift++;
      } else {
        const v = Math.floor(random() * (VALUES + 200)) - 100;
        expect(q.rank(v)).toBe(lowerBound(ref, v));
        counts.rank++;
      }
      expect(q.size).toBe(ref.length);
      if (op % 1_000 === 999) checkAgainstReference(q, ref);
    }
    checkAgainstReference(q, ref);
    // The sequence really exercised every operation.
    for (const n of Object.values(counts)) expect(n).toBeGreaterThan(1_000);

    // Draining by shift yields the reference order, then the queue is empty.
    const drained: number[] = [];
    for (let v = q.shift(); v !== undefined; v = q.shift()) drained.push(v);
    expect(drained).toEqual(ref);
    expect(q.size).toBe(0);
    expect(q.peek()).toBeUndefined();
    expect(q.shift()).toBeUndefined();
  });

  it('rank of every element of a large queue equals its index (distinct values, random insert order)', () => {
    const random = prng(42);
    const q = new RankedQueue<number>(byNumber);
    const values = Array.from({ length: 5_000 }, (_, i) => i * 2);
    for (let i = values.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [values[i], values[j]] = [values[j], values[i]];
    }
    for (const v of values) q.insert(v);
    for (let i = 0; i < 5_000; i++) {
      expect(q.rank(i * 2)).toBe(i);
      // A missing value ranks where it would be inserted.
      expect(q.rank(i * 2 + 1)).toBe(i + 1);
    }
  });

  it('deletes of missing values return false and leave the queue intact', () => {
    const q = new RankedQueue<number>(byNumber);
    expect(q.delete(1)).toBe(false);
    for (const v of [5, 1, 9, 3, 7]) q.insert(v);
    for (const v of [0, 2, 4, 6, 8, 10, -1, 5.5]) expect(q.delete(v)).toBe(false);
    expect(contents(q)).toEqual([1, 3, 5, 7, 9]);
    expect(q.delete(5)).toBe(true);
    expect(q.delete(5)).toBe(false);
    expect(contents(q)).toEqual([1, 3, 7, 9]);
    expect(q.size).toBe(4);
  });

  it('orders by the key numbers in turn and deletes the entry with an equal key, not the same reference', () => {
    interface Key {
      priority: number;
      seq: number;
    }
    const q = new RankedQueue<Key>((k, out) => {
      out[0] = k.priority;
      out[1] = k.seq;
      out[2] = 0;
    });
    const keys = [
      { priority: 2, seq: 1 },
      { priority: 0, seq: 2 },
      { priority: 1, seq: 3 },
      { priority: 0, seq: 4 },
    ];
    for (const k of keys) q.insert(k);
    expect(contents(q).map((k) => k.seq)).toEqual([2, 4, 3, 1]);
    expect(q.rank({ priority: 1, seq: 3 })).toBe(2);
    expect(q.delete({ priority: 0, seq: 4 })).toBe(true);
    expect(contents(q).map((k) => k.seq)).toEqual([2, 3, 1]);
  });

  it('reuses freed nodes, grows past its first arrays, and never yields a removed value', () => {
    const q = new RankedQueue<{ n: number }>((v, out) => {
      out[0] = v.n;
      out[1] = 0;
      out[2] = 0;
    });
    const removed = new WeakSet<object>();
    // Well past the initial 64 nodes, then churn: every removed value must be gone from the walk.
    const live = Array.from({ length: 1_000 }, (_, n) => ({ n }));
    for (const v of live) q.insert(v);
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 500; i++) {
        const v = q.shift()!;
        removed.add(v);
        q.insert({ n: v.n + 1_000 });
      }
    }
    expect(q.size).toBe(1_000);
    let order = -Infinity;
    q.forEach((v) => {
      expect(removed.has(v)).toBe(false);
      expect(v.n).toBeGreaterThan(order);
      order = v.n;
    });
    // The third key number breaks ties the first two leave.
    const t = new RankedQueue<[number, number, number]>((k, out) => out.set(k));
    for (const k of [[1, 1, 3], [1, 1, 1], [1, 0, 9], [0, 9, 9]] as Array<[number, number, number]>) t.insert(k);
    const drained: number[][] = [];
    for (let k = t.shift(); k !== undefined; k = t.shift()) drained.push(k);
    expect(drained).toEqual([[0, 9, 9], [1, 0, 9], [1, 1, 1], [1, 1, 3]]);
  });

  it('gives its arrays back when a large queue empties, and keeps working after', () => {
    const q = new RankedQueue<number>(byNumber);
    const initial = q.capacity;
    for (let i = 0; i < 10_000; i++) q.insert(i);
    expect(q.capacity).toBeGreaterThanOrEqual(10_000);
    // Half drained: the arrays stay (the nodes in use may sit anywhere in them).
    for (let i = 0; i < 5_000; i++) q.shift();
    expect(q.capacity).toBeGreaterThanOrEqual(10_000);
    for (let i = 5_000; i < 10_000; i++) expect(q.delete(i)).toBe(true);
    expect(q.size).toBe(0);
    expect(q.capacity).toBe(initial);
    for (const v of [3, 1, 2]) q.insert(v);
    expect(contents(q)).toEqual([1, 2, 3]);
    // Churn on a small queue reuses freed nodes: the arrays never grow.
    for (let i = 0; i < 100_000; i++) {
      q.insert(10 + i);
      expect(q.delete(10 + i)).toBe(true);
    }
    expect(q.capacity).toBe(initial);
  });

  it('forEach stops early when the visitor returns false, and clear empties the queue', () => {
    const q = new RankedQueue<number>(byNumber);
    for (let i = 100; i > 0; i--) q.insert(i);
    const seen: number[] = [];
    q.forEach((v) => {
      seen.push(v);
      return seen.length < 3;
    });
    expect(seen).toEqual([1, 2, 3]);
    q.clear();
    expect(q.size).toBe(0);
    expect(contents(q)).toEqual([]);
  });

  it('stays shallow enough for an iterative walk and recursive split on 200,000 sorted inserts', () => {
    // Sorted input is the worst case for an unbalanced tree; the treap's random weights keep it balanced.
    const q = new RankedQueue<number>(byNumber);
    for (let i = 0; i < 200_000; i++) q.insert(i);
    expect(q.size).toBe(200_000);
    expect(q.rank(150_000)).toBe(150_000);
    expect(q.shift()).toBe(0);
    expect(q.delete(199_999)).toBe(true);
    expect(q.size).toBe(199_998);
  });
});
