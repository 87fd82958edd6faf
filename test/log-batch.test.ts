/**
 * Log lines leave together (src/log-batch.ts): one write into the destination when the interval
 * since the first pending line ends, or at once past maxPending characters, in the order written;
 * release() hands them over at once. On a fake clock, so the interval is exact.
 */
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../src/core/clock.js';
import { LogBatch } from '../src/log-batch.js';

function recorder(): { target: { write(text: string): void }; writes: string[] } {
  const writes: string[] = [];
  return { target: { write: (text) => void writes.push(text) }, writes };
}

const INTERVAL = 10;

describe('LogBatch', () => {
  it('writes the lines of an interval once, in order, when the interval ends', () => {
    const clock = new FakeClock();
    const { target, writes } = recorder();
    const batch = new LogBatch(target, { intervalMs: INTERVAL, maxPending: 1 << 20, clock });
    for (let i = 0; i < 100; i++) expect(batch.write(`line ${i}\n`)).toBe(true);
    clock.advance(INTERVAL - 1);
    expect(writes).toEqual([]);
    clock.advance(1);
    expect(writes).toEqual([Array.from({ length: 100 }, (_, i) => `line ${i}\n`).join('')]);
  });

  it('counts the interval from the first pending line, and sets no timer while nothing is pending', () => {
    const clock = new FakeClock();
    const { target, writes } = recorder();
    const batch = new LogBatch(target, { intervalMs: INTERVAL, maxPending: 1 << 20, clock });
    expect(clock.pendingTimers).toBe(0);
    batch.write('a\n');
    clock.advance(6);
    batch.write('b\n');
    expect(clock.pendingTimers).toBe(1);
    clock.advance(4);
    expect(writes).toEqual(['a\nb\n']);
    expect(clock.pendingTimers).toBe(0);
    clock.advance(100);
    expect(writes).toEqual(['a\nb\n']);
    batch.write('c\n');
    clock.advance(INTERVAL);
    expect(writes).toEqual(['a\nb\n', 'c\n']);
  });

  it('hands the lines over at once when maxPending characters wait', () => {
    const clock = new FakeClock();
    const { target, writes } = recorder();
    const batch = new LogBatch(target, { intervalMs: INTERVAL, maxPending: 8, clock });
    batch.write('1234\n');
    expect(writes).toEqual([]);
    batch.write('5678\n');
    expect(writes).toEqual(['1234\n5678\n']);
    expect(clock.pendingTimers).toBe(0);
  });

  it('release() hands the lines over at once, and the interval then has nothing left to write', () => {
    const clock = new FakeClock();
    const { target, writes } = recorder();
    const batch = new LogBatch(target, { intervalMs: INTERVAL, maxPending: 1 << 20, clock });
    batch.write('x\n');
    batch.release();
    expect(writes).toEqual(['x\n']);
    expect(clock.pendingTimers).toBe(0);
    batch.release();
    clock.advance(INTERVAL);
    expect(writes).toEqual(['x\n']);
  });

  it("flush(cb), pino's logger.flush, hands the lines over and then waits for the destination's own flush", async () => {
    const writes: string[] = [];
    const flushed: string[] = [];
    const options = { intervalMs: INTERVAL, maxPending: 1 << 20, clock: new FakeClock() };
    const batch = new LogBatch({ write: (text) => void writes.push(text), flush: (cb) => setImmediate(() => (flushed.push(writes.join('')), cb())) }, options);
    batch.write('y\n');
    await new Promise<void>((resolve) => batch.flush(() => resolve()));
    expect(flushed).toEqual(['y\n']);
    const bare = new LogBatch({ write: (text) => void writes.push(text) }, options);
    bare.write('z\n');
    let called = false;
    bare.flush(() => (called = true));
    expect(called).toBe(true);
    expect(writes).toEqual(['y\n', 'z\n']);
  });
});
