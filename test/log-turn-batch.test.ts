/**
 * A turn's log lines leave together (src/log-turn-batch.ts): one write into the destination at the
 * end of the turn, in the order written, and release() hands them over at once.
 */
import { describe, expect, it } from 'vitest';
import { TurnBatch } from '../src/log-turn-batch.js';

const endOfTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

function recorder(): { target: { write(text: string): void }; writes: string[] } {
  const writes: string[] = [];
  return { target: { write: (text) => void writes.push(text) }, writes };
}

describe('TurnBatch', () => {
  it("writes a turn's lines once, in order, when the turn ends", async () => {
    const { target, writes } = recorder();
    const batch = new TurnBatch(target);
    for (let i = 0; i < 100; i++) expect(batch.write(`line ${i}\n`)).toBe(true);
    expect(writes).toEqual([]);
    await endOfTurn();
    expect(writes).toEqual([Array.from({ length: 100 }, (_, i) => `line ${i}\n`).join('')]);
  });

  it('writes each turn apart, and nothing for a turn with no line', async () => {
    const { target, writes } = recorder();
    const batch = new TurnBatch(target);
    batch.write('a\n');
    await endOfTurn();
    await endOfTurn();
    batch.write('b\n');
    batch.write('c\n');
    await endOfTurn();
    expect(writes).toEqual(['a\n', 'b\nc\n']);
  });

  it('release() hands the lines over at once, and the end of the turn then has nothing left to write', async () => {
    const { target, writes } = recorder();
    const batch = new TurnBatch(target);
    batch.write('x\n');
    batch.release();
    expect(writes).toEqual(['x\n']);
    batch.release();
    await endOfTurn();
    expect(writes).toEqual(['x\n']);
  });

  it("flush(cb), pino's logger.flush, hands the lines over and then waits for the destination's own flush", async () => {
    const writes: string[] = [];
    const flushed: string[] = [];
    const batch = new TurnBatch({ write: (text) => void writes.push(text), flush: (cb) => setImmediate(() => (flushed.push(writes.join('')), cb())) });
    batch.write('y\n');
    await new Promise<void>((resolve) => batch.flush(() => resolve()));
    expect(flushed).toEqual(['y\n']);
    const bare = new TurnBatch({ write: (text) => void writes.push(text) });
    bare.write('z\n');
    let called = false;
    bare.flush(() => (called = true));
    expect(called).toBe(true);
    expect(writes).toEqual(['y\n', 'z\n']);
  });
});
