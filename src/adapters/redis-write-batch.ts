/**
 * Write batching for one command connection: holds the connection's writes until the end of this turn of
 * the event loop, so the commands issued meanwhile (by any store of the instance) leave in one socket
 * write: on a busy gateway the socket writes, each waking Redis, were the largest single cost per
 * request. A long turn (a burst of replies handled at once) sends what it has every MAX_HOLD_MS, so
 * Redis works on those while this process makes the rest. Replies, timeouts and errors stay per command.
 *
 * Only a single-node client is held. A Cluster picks each command's node inside ioredis (by key slot,
 * again after a MOVED or ASK redirect), after the caller has returned, so there is no one socket to hold
 * at call time; holding every master's socket would also hold nodes the turn never writes to. Its
 * commands are sent as ioredis sends them.
 */
import type { Writable } from 'node:stream';
import type { RedisClient } from './redis-client.js';

/** Longest a command waits for the end of the turn (ms of this process's own work) before it is sent. */
const MAX_HOLD_MS = 1;

export class WriteBatch {
  /** The socket held in this turn (a reconnect replaces the client's socket), and since when. */
  private held: Writable | null = null;
  private since = 0;
  private readonly release = () => {
    const stream = this.held;
    this.held = null;
    stream?.uncork();
  };

  constructor(private readonly client: RedisClient) {}

  /** Call before issuing a command: its write waits for the end of this turn (or MAX_HOLD_MS). */
  hold(): void {
    // ioredis's socket of a single-node client (not part of its typed API); a Cluster has none.
    const stream = (this.client as unknown as { stream?: Writable }).stream;
    if (stream === undefined || typeof stream.cork !== 'function') return;
    if (this.held !== stream) {
      if (this.held !== null) this.held.uncork();
      else process.nextTick(this.release);
      this.held = stream;
      this.since = performance.now();
      stream.cork();
    } else if (performance.now() - this.since >= MAX_HOLD_MS) {
      stream.uncork();
      stream.cork();
      this.since = performance.now();
    }
  }
}
