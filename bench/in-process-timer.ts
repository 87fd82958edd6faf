/**
 * Times each request inside a server process, from Node's `request` event (headers parsed) to the
 * response's `finish` (its last byte handed to the kernel). The fixed-rate scenario reports it next
 * to what the load generator sees. The difference between the two is the kernel, the scheduler and
 * the generator, which on a shared VM can be most of a p99, and also the time a request waits in its
 * socket while the server's event loop is busy (a collection, another request): that wait is the
 * server's, but it ends before the `request` event, so this timer cannot see it.
 */
import type { Server } from 'node:http';
import { summarize, type Summary } from './measure.js';

export class InProcessTimer {
  private samples: number[] = [];

  /** Starts timing every request `server` receives (its listener runs before the app's own). */
  attach(server: Server): void {
    server.prependListener('request', (_req, res) => {
      const started = performance.now();
      res.once('finish', () => this.samples.push(performance.now() - started));
    });
  }

  /** Summary of the requests finished since the last call (ms), and a fresh start. */
  take(): Summary {
    const summary = summarize(this.samples);
    this.samples = [];
    return summary;
  }
}
