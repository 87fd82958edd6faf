/**
 * `request.position`: where each waiter stands and when it should be served, as it changes. Coalesced:
 * each group has at most ONE timer, which reads the group's first waiters from its store (the same
 * snapshot as /queue/status) every POSITION_INTERVAL_MS while an event-stream client is connected
 * (Router.watchPositions) and somebody waits, and publishes an event for a waiter only when its position or its estimated grant
 * time moved. No timer per waiting request, and nothing at all while nobody listens.
 */
import type { Clock, TimerHandle } from './core/clock.js';
import type { GroupSnapshot } from './machines/scheduler-store.js';

/** Fastest a waiter's position is reported again. */
export const POSITION_INTERVAL_MS = 250;
/** Waiters per group followed (the first in line); those further back get their position as they move up. */
export const POSITION_WAITERS = 1_000;
/** An estimate that moved by less than this is not news. */
const ETA_SLACK_MS = 1_000;

export interface PositionEvent {
  type: 'request.position';
  id: string;
  model: string;
  priority: number;
  tenant: string;
  position: number;
  /** Estimated ms until it is granted (grant-estimate.ts), null when unknown. */
  etaMs: number | null;
}

interface Reported {
  position: number;
  /** Estimated grant time (clock ms), null when unknown. */
  etaAt: number | null;
}

/** The position events of one model group. */
export class PositionReporter {
  private timer: TimerHandle | undefined;
  private reported = new Map<string, Reported>();
  private stopped = false;

  constructor(
    private readonly model: string,
    private readonly clock: Clock,
    private readonly snapshot: (now: number, maxWaiters: number) => Promise<GroupSnapshot>,
    private readonly listening: () => boolean,
    private readonly publish: (event: PositionEvent) => void,
  ) {}

  /** Somebody joined the queue: report positions from the next tick on (a no-op while a tick is due). */
  wake(): void {
    if (this.timer !== undefined || this.stopped || !this.listening()) return;
    this.timer = this.clock.setTimeout(() => void this.tick(), POSITION_INTERVAL_MS);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private async tick(): Promise<void> {
    let snap: GroupSnapshot;
    try {
      snap = await this.snapshot(this.clock.now(), POSITION_WAITERS);
    } catch {
      // The store is unreachable: try again at the next tick.
      this.timer = undefined;
      if (!this.stopped) this.wake();
      return;
    }
    this.timer = undefined;
    if (this.stopped) return;
    const now = this.clock.now();
    const next = new Map<string, Reported>();
    for (const w of snap.waiters) {
      const etaAt = w.etaMs === null ? null : now + w.etaMs;
      const last = this.reported.get(w.id);
      const moved =
        last === undefined || last.position !== w.position || (last.etaAt === null) !== (etaAt === null) || (etaAt !== null && Math.abs(etaAt - last.etaAt!) >= ETA_SLACK_MS);
      if (moved) {
        this.publish({ type: 'request.position', id: w.id, model: this.model, priority: w.priority, tenant: w.tenant, position: w.position, etaMs: w.etaMs });
        next.set(w.id, { position: w.position, etaAt });
      } else {
        next.set(w.id, last);
      }
    }
    this.reported = next;
    if (snap.waiting > 0) this.wake();
  }
}
