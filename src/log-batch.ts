/**
 * Log lines held for a short interval and handed to the destination together. Every handing-over
 * costs: the asynchronous destination (sonic-boom) starts a write when none is in flight, and each
 * asynchronous write is a round trip through libuv's thread pool (a thread woken, then the event
 * loop woken by its answer), whatever its size. Handed over once per turn of the event loop, that was
 * one write per turn, most of the access log's remaining cost under load; once per interval, it is at
 * most one per interval at any load (docs/performance.md, "The access line without pino's generic path").
 *
 * A line waits at most `intervalMs` (one timer for all pending lines, none when nothing is pending),
 * or less when `maxPending` characters are waiting. release() hands the lines over at once, for a
 * flush or an exit.
 */
import { systemClock, type Clock, type TimerHandle } from './core/clock.js';

export interface LogBatchOptions {
  /** Longest a line waits before it is handed over. */
  intervalMs: number;
  /** Characters pending at which they are handed over at once. */
  maxPending: number;
  clock?: Clock;
}

export class LogBatch {
  private pending = '';
  private timer: TimerHandle | undefined = undefined;
  private readonly clock: Clock;

  constructor(
    private readonly target: { write(text: string): unknown; flush?(cb: (err?: Error | null) => void): void },
    private readonly options: LogBatchOptions,
  ) {
    this.clock = options.clock ?? systemClock;
  }

  write(line: string): boolean {
    this.pending += line;
    if (this.pending.length >= this.options.maxPending) this.release();
    else if (this.timer === undefined) this.timer = this.clock.setTimeout(this.due, this.options.intervalMs);
    return true;
  }

  /** Hands the lines written so far to the destination now. */
  release(): void {
    if (this.timer !== undefined) {
      this.clock.clearTimeout(this.timer);
      this.timer = undefined;
    }
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

  private readonly due = (): void => {
    this.timer = undefined;
    this.release();
  };
}
