import { describe, expect, it } from 'vitest';
import { ChurnMap } from '../src/machines/churn-map.js';

describe('ChurnMap', () => {
  it('reads and writes like a Map: size, get, has, set, delete', () => {
    const m = new ChurnMap<number>();
    expect(m.size).toBe(0);
    expect(m.get('a')).toBeUndefined();
    expect(m.has('a')).toBe(false);
    expect(m.set('a', 1).set('b', 2).set('a', 3)).toBe(m);
    expect(m.size).toBe(2);
    expect(m.get('a')).toBe(3);
    expect(m.has('b')).toBe(true);
    expect(m.delete('a')).toBe(true);
    expect(m.delete('a')).toBe(false);
    expect(m.size).toBe(1);
    expect(m.get('a')).toBeUndefined();
  });

  it('gives values in insertion order, and the first one, without its padding', () => {
    const m = new ChurnMap<string>();
    expect([...m.values()]).toEqual([]);
    expect(m.first()).toBeUndefined();
    for (const k of ['x', 'y', 'z']) m.set(k, k.toUpperCase());
    m.delete('x');
    m.set('x', 'X2');
    expect([...m.values()]).toEqual(['Y', 'Z', 'X2']);
    expect(m.first()).toBe('Y');
  });

  it('keeps no stale entry through many requests coming and going, and clears to empty', () => {
    const m = new ChurnMap<number>();
    for (let i = 0; i < 10_000; i++) {
      m.set(`r${i}`, i);
      if (i >= 3) m.delete(`r${i - 3}`);
    }
    expect(m.size).toBe(3);
    expect([...m.values()]).toEqual([9_997, 9_998, 9_999]);
    m.clear();
    expect(m.size).toBe(0);
    expect([...m.values()]).toEqual([]);
    m.set('again', 1);
    expect(m.first()).toBe(1);
  });

  it('treats every string as a key of its own, including ones that look like its padding', () => {
    const m = new ChurnMap<number>();
    m.set('padding 0', 1);
    m.set('', 2);
    expect(m.size).toBe(2);
    expect([...m.values()]).toEqual([1, 2]);
  });
});

describe('ChurnMap values', () => {
  it('reuses the slots of deleted entries, so its array grows only to the most entries held at once', () => {
    const m = new ChurnMap<{ n: number }>();
    for (let i = 0; i < 10_000; i++) {
      m.set(`r${i}`, { n: i });
      if (i >= 32) m.delete(`r${i - 32}`);
    }
    expect(m.size).toBe(32);
    expect(m.capacity).toBe(33);
    expect(m.get('r9999')).toEqual({ n: 9_999 });
    expect(m.get('r9967')).toBeUndefined();
    expect([...m.values()].map((v) => v.n)).toEqual(Array.from({ length: 32 }, (_, i) => 9_968 + i));
  });

  it('replaces the value of a key it has, in its place', () => {
    const m = new ChurnMap<string>();
    m.set('a', '1').set('b', '2').set('a', '3');
    expect([...m.values()]).toEqual(['3', '2']);
    expect(m.capacity).toBe(2);
  });

  it('starts over small when a burst empties, and keeps a small array when it empties', () => {
    const m = new ChurnMap<number>();
    for (let i = 0; i < 5_000; i++) m.set(`r${i}`, i);
    expect(m.capacity).toBe(5_000);
    for (let i = 0; i < 5_000; i++) m.delete(`r${i}`);
    expect(m.size).toBe(0);
    expect(m.capacity).toBe(0);
    m.set('x', 1).set('y', 2);
    expect(m.capacity).toBe(2);
    m.delete('x');
    m.delete('y');
    expect(m.capacity).toBe(2);
    m.set('z', 3);
    expect(m.capacity).toBe(2);
    expect([...m.values()]).toEqual([3]);
  });
});
