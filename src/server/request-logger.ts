/**
 * `request.log` made only when something logs through it. fastify gives every request a child of the
 * server's logger (with the request's `reqId`); making one is pino's whole child set-up (its bindings
 * serialized, its level methods set), and with the access line written without one
 * (access-log.ts) most requests never log anything else: the child was a large share of the access
 * log's cost (docs/performance.md). This stands in for it and makes the real child, with the same
 * bindings and options, on the first line written at an enabled level or the first change of level.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { Bindings, ChildLoggerOptions, LogFn } from 'pino';

type Level = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';

/** The server's logger as fastify builds it: pino, which says whether a level is enabled. */
type ParentLogger = FastifyBaseLogger & { isLevelEnabled(level: string): boolean };

export class RequestLogger implements FastifyBaseLogger {
  private made: FastifyBaseLogger | undefined;

  constructor(
    private readonly parent: ParentLogger,
    private readonly bindings: Bindings,
  ) {}

  /** Whether the real child exists (for tests). */
  get materialized(): boolean {
    return this.made !== undefined;
  }

  get level(): string {
    return this.made === undefined ? this.parent.level : this.made.level;
  }

  set level(level: string) {
    this.logger().level = level;
  }

  fatal(...args: Parameters<LogFn>): void {
    this.write('fatal', args);
  }
  error(...args: Parameters<LogFn>): void {
    this.write('error', args);
  }
  warn(...args: Parameters<LogFn>): void {
    this.write('warn', args);
  }
  info(...args: Parameters<LogFn>): void {
    this.write('info', args);
  }
  debug(...args: Parameters<LogFn>): void {
    this.write('debug', args);
  }
  trace(...args: Parameters<LogFn>): void {
    this.write('trace', args);
  }
  silent(): void {}

  child(bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger {
    return this.logger().child(bindings, options);
  }

  private write(level: Level, args: Parameters<LogFn>): void {
    const made = this.made;
    if (made !== undefined) return made[level](...args);
    // A line below the level would be dropped by the child too: no child for it.
    if (!this.parent.isLevelEnabled(level)) return;
    this.logger()[level](...args);
  }

  private logger(): FastifyBaseLogger {
    return (this.made ??= this.parent.child(this.bindings));
  }
}

/**
 * fastify's `childLoggerFactory`: a RequestLogger when the route asks for nothing of its own, the
 * real child at once when it sets a level or serializers (no route here does), or when the logger
 * cannot say which levels are enabled (fastify's null logger, with `logger: false`, whose children are
 * itself).
 */
export function requestLoggerFactory(logger: FastifyBaseLogger, bindings: Bindings, options: ChildLoggerOptions): FastifyBaseLogger {
  const lazy = options.level === undefined && options.serializers === undefined && typeof (logger as Partial<ParentLogger>).isLevelEnabled === 'function';
  return lazy ? new RequestLogger(logger as ParentLogger, bindings) : logger.child(bindings, options);
}
