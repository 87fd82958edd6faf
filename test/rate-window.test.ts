import { describe, it, expect } from 'vitest';
import { RateWindow, WINDOW_MS } from '../src/machines/rate-window.js';

const T = 1_000_000;

describe('RateWindow (sliding 60 s window)', () => {
  it('takes 60 records at t, refuses the 61st until exactly t + 60 s', () => {
    const w = new RateWindow(60);
    for (let i = 0; i < 60; i++) {
      expect(w.fits(1, T)).toBe(true);
      w.add(1, T);
    }
    expect(w.used(T)).toBe(60);
    expect(w.fits(1, T)).toBe(false);
    expect(w.fits(1, T + 30_000)).toBe(false);
    expect(w.fits(1, T + WINDOW_MS - 1)).toBe(false);
    expect(w.nextCapacityAt(1, T)).toBe(T + WINDOW_MS);
    expect(w.nextCapacityAt(1, T + 59_999)).toBe(T + WINDOW_MS);
    expect(w.fits(1, T + WINDOW_MS)).toBe(true);
    expect(w.used(T + WINDOW_MS)).toBe(0);
    expect(w.nextCapacityAt(1, T + WINDOW_MS)).toBe(T + WINDOW_MS);
  });

  it('is a sliding window, not a calendar minute: each record frees its slot 60 s after it was made', () => {
    const w = new RateWindow(3);
    w.add(1, T);
    w.add(1, T + 10_000);
    w.add(1, T + 20_000);
    expect(w.fits(1, T + 59_999)).toBe(false);
    // The oldest record frees one slot at T + 60 s, the next one at T + 70 s.
    expect(w.nextCapacityAt(1, T + 20_000)).toBe(T + 60_000);
    expect(w.nextCapacityAt(2, T + 20_000)).toBe(T + 70_000);
    expect(w.nextCapacityAt(3, T + 20_000)).toBe(T + 80_000);
    expect(w.fits(1, T + 60_000)).toBe(true);
    w.add(1, T + 60_000);
    expect(w.fits(1, T + 60_000)).toBe(false);
    expect(w.nextCapacityAt(1, T + 60_000)).toBe(T + 70_000);
    // Within any 60 s span never more than 3.
    expect(w.used(T + 69_999)).toBe(3);
    expect(w.used(T + 70_000)).toBe(2);
  });

  it('nextCapacityAt returns now when the amount fits already, and skips records that free too little', () => {
    const w = new RateWindow(100);
    expect(w.nextCapacityAt(50, T)).toBe(T);
    w.add(10, T);
    w.add(30, T + 1_000);
    w.add(40, T + 2_000);
    expect(w.nextCapacityAt(20, T + 3_000)).toBe(T + 3_000);
    // 80 used; 50 more needs 30 freed: the first record frees 10 (not enough), the second 30 more.
    expect(w.nextCapacityAt(50, T + 3_000)).toBe(T + 1_000 + WINDOW_MS);
    expect(w.fits(50, T + 1_000 + WINDOW_MS - 1)).toBe(false);
    expect(w.fits(50, T + 1_000 + WINDOW_MS)).toBe(true);
  });

  it('adjust reconciles a reservation with the real amount while the record is in the window', () => {
    const w = new RateWindow(1_000);
    const r = w.add(800, T);
    w.add(100, T + 1_000);
    expect(w.fits(300, T + 2_000)).toBe(false);
    w.adjust(r, 150, T + 2_000);
    expect(w.used(T + 2_000)).toBe(250);
    expect(w.fits(300, T + 2_000)).toBe(true);
    // Growing a reservation counts too.
    w.adjust(r, 900, T + 3_000);
    expect(w.used(T + 3_000)).toBe(1_000);
    expect(w.fits(1, T + 3_000)).toBe(false);
    // The adjusted record leaves the window with its adjusted amount.
    expect(w.used(T + WINDOW_MS)).toBe(100);
    expect(w.used(T + 1_000 + WINDOW_MS)).toBe(0);
  });

  it('adjust of a record that already left the window changes nothing', () => {
    const w = new RateWindow(1_000);
    const r = w.add(500, T);
    w.add(200, T + 30_000);
    w.adjust(r, 50, T + WINDOW_MS + 1);
    expect(w.used(T + WINDOW_MS + 1)).toBe(200);
    expect(w.used(T + 30_000 + WINDOW_MS)).toBe(0);
  });

  it('an amount above the limit fits only into an empty window, then blocks the window for 60 s', () => {
    const w = new RateWindow(1_000);
    expect(w.fits(5_000, T)).toBe(true);
    expect(w.nextCapacityAt(5_000, T)).toBe(T);
    w.add(5_000, T);
    expect(w.fits(1, T + 1)).toBe(false);
    expect(w.fits(5_000, T + 1)).toBe(false);
    expect(w.nextCapacityAt(1, T + 1)).toBe(T + WINDOW_MS);
    expect(w.nextCapacityAt(5_000, T + 1)).toBe(T + WINDOW_MS);

    // Into a non-empty window an oversized amount waits until the window is empty.
    const v = new RateWindow(1_000);
    v.add(10, T);
    v.add(10, T + 5_000);
    expect(v.fits(2_000, T + 6_000)).toBe(false);
    expect(v.nextCapacityAt(2_000, T + 6_000)).toBe(T + 5_000 + WINDOW_MS);
  });

  it('keeps correct totals across compaction of many expired records', () => {
    const w = new RateWindow(10);
    let t = T;
    for (let i = 0; i < 20_000; i++) {
      // One record every 6 s: at most 10 in any 60 s span.
      expect(w.fits(1, t)).toBe(true);
      w.add(1, t);
      expect(w.used(t)).toBeLessThanOrEqual(10);
      t += 6_000;
    }
    expect(w.used(t)).toBe(9);
    expect(w.used(t + WINDOW_MS)).toBe(0);
  });

  it('honours a custom window length', () => {
    const w = new RateWindow(2, 1_000);
    w.add(1, T);
    w.add(1, T);
    expect(w.fits(1, T + 999)).toBe(false);
    expect(w.nextCapacityAt(1, T)).toBe(T + 1_000);
    expect(w.fits(1, T + 1_000)).toBe(true);
  });
});

describe('EventRate', () => {
  it('counts events of the last 60 whole seconds in constant memory', async () => {
    const { EventRate } = await import('../src/machines/rate-window.js');
    const rate = new EventRate();
    const t0 = 1_000_000_000;
    for (let i = 0; i < 100_000; i++) rate.add(t0 + (i % 1000));
    expect(rate.count(t0)).toBe(100_000);
    rate.add(t0 + 30_000);
    expect(rate.count(t0 + 30_000)).toBe(100_001);
    // The first second leaves the window 60 s later; the event at +30 s stays until +90 s.
    expect(rate.count(t0 + 60_000)).toBe(1);
    expect(rate.count(t0 + 90_000)).toBe(0);
  });
});
