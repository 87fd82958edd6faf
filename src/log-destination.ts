/**
 * Where the gateway's log lines go: an asynchronous pino destination (sonic-boom), so serving a
 * request never waits for its access-log line to be written. Lines reach it together, at most
 * LOG_BATCH.intervalMs late (log-batch.ts), and are queued in memory while one write is in flight and leave
 * together in the next, so under load the log costs a write per batch, not per line; a synchronous
 * destination made every request wait for a write(2) of its own (docs/performance.md has the cost
 * measured both ways).
 *
 * What is queued is lost if the process ends before it is written, so every way out waits for it:
 * the drain path (gateway.close, SIGTERM/SIGINT in the CLI) calls flush(), a crash goes through
 * exitAfterCrash(), and on `process.exit` what is left is written synchronously.
 */
import pino, { type DestinationStream } from 'pino';
import { LogBatch } from './log-batch.js';

/**
 * How long a line may wait before it is handed to the destination with the others (log-batch.ts), and
 * how many characters may wait.
 */
const LOG_BATCH = { intervalMs: 10, maxPending: 256 * 1024 } as const;

export interface LogDestination {
  /** What fastify's `logger.stream` takes. */
  readonly stream: DestinationStream;
  /** Resolves once every line written so far has reached the file or pipe (or after timeoutMs, having written the rest synchronously). */
  flush(timeoutMs?: number): Promise<void>;
}

/** `dest`: a file descriptor (1 is stdout, what the CLI uses) or a path ('/dev/null' for a sink). */
export function createLogDestination(dest: number | string = 1): LogDestination {
  // minLength 1 writes each line as soon as no write is in flight, as 0 would, and makes flush(cb)
  // wait for the write in flight and the queue behind it (at 0, flush calls back at once).
  const destination = pino.destination({ dest, sync: false, minLength: 1 });
  const batch = new LogBatch(destination, LOG_BATCH);
  // pino writes its destination's queue on exit; the batch's lines are not in it yet.
  process.once('exit', () => {
    try {
      batch.release();
      destination.flushSync();
    } catch {
      // Already closed, or the reader is gone: nothing more can be written.
    }
  });
  return {
    stream: batch,
    flush: (timeoutMs = 2_000) =>
      new Promise<void>((resolve) => {
        batch.release();
        const finish = () => {
          clearTimeout(timer);
          resolve();
        };
        // A pipe nobody reads would hold the flush for ever: past the timeout, write the rest now.
        const timer = setTimeout(() => {
          try {
            destination.flushSync();
          } catch {
            // Already closed, or the reader is gone: nothing more can be written.
          }
          finish();
        }, timeoutMs);
        try {
          // Its callback's error is fsync's on a pipe or /dev/null, after the lines were written.
          destination.flush(() => finish());
        } catch {
          finish();
        }
      }),
  };
}

let crashing = false;
/** How long a crash waits for its last lines to be written before it exits anyway. */
const CRASH_FLUSH_TIMEOUT_MS = 10_000;

/**
 * For an uncaught exception (or an unhandled rejection, which Node raises as one): logs it at fatal
 * after the process's last lines, waits until they are all written, then exits 1. The error also goes
 * to stderr, as Node would print it. A second crash while flushing changes nothing: the first exits.
 */
export function exitAfterCrash(error: unknown, log: { fatal(obj: object, msg: string): void } | undefined, destination: LogDestination): void {
  if (crashing) return;
  crashing = true;
  process.stderr.write(`triage: uncaught exception: ${(error as Error)?.stack ?? String(error)}\n`);
  try {
    log?.fatal({ err: error }, 'uncaught exception: exiting');
  } catch {
    // A logger that throws must not keep the process alive.
  }
  // Longer than the drain path's 2 s: past its timeout the rest is written synchronously, and a write
  // still in flight on a slow disk would then land after it, out of order (seen under heavy load as an
  // access line after the fatal one). A crashing process can wait; only a pipe nobody reads holds it.
  void destination.flush(CRASH_FLUSH_TIMEOUT_MS).finally(() => process.exit(1));
}
