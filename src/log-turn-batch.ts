/**
 * Log lines written during one turn of the event loop, handed to the destination together when the
 * turn ends (setImmediate: after the turn's I/O callbacks). Under load a turn answers many requests,
 * and every write into the destination costs (sonic-boom measures the whole buffer it appends to, and
 * starts an asynchronous write when none is in flight): one write per turn instead of one per line
 * (docs/performance.md). Nothing is held past the turn; release() hands the lines over at once, for
 * a flush or an exit.
 */
export class TurnBatch {
  private pending = '';
  private scheduled = false;

  constructor(private readonly target: { write(text: string): unknown; flush?(cb: (err?: Error | null) => void): void }) {}

  write(line: string): boolean {
    this.pending += line;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.endOfTurn);
    }
    return true;
  }

  /** Hands the lines written so far to the destination now. */
  release(): void {
    const text = this.pending;
    if (text === '') return;
    this.pending = '';
    this.target.write(text);
  }

  /** pino's `logger.flush(cb)`: the lines written so far handed over, then the destination's own flush. */
  flush(cb: (err?: Error | null) => void = () => undefined): void {
    this.release();
    if (this.target.flush === undefined) cb();
    else this.target.flush(cb);
  }

  private readonly endOfTurn = (): void => {
    this.scheduled = false;
    this.release();
  };
}
