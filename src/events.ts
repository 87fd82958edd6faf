/**
 * Queue events as the actors emit them (XState `emit`), stamped with a time and a global sequence, and
 * fanned out to subscribers (the WebSocket stream, metrics, the debugger). Publishing with no
 * subscriber costs one size check.
 */
import type { RequestEmitted } from './machines/request-machine.js';
import type { SchedulerEmitted } from './machines/scheduler-machine.js';
import type { PositionEvent } from './position-events.js';

/** What the actors emit, and the router's coalesced position reports. */
export type ActorEmitted = RequestEmitted | SchedulerEmitted | PositionEvent;
export type QueueEvent = ActorEmitted & { seq: number; at: number };
export type QueueEventType = QueueEvent['type'];

export type QueueEventListener = (event: QueueEvent) => void;

export class EventBus {
  private readonly listeners = new Set<QueueEventListener>();
  private seq = 0;

  constructor(private readonly now: () => number) {}

  /** Sequence number of the last event published. */
  get lastSeq(): number {
    return this.seq;
  }

  get hasSubscribers(): boolean {
    return this.listeners.size > 0;
  }

  subscribe(listener: QueueEventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Stamps `event` in place (each emitted event is a fresh object only the bus holds: no copy per event). */
  publish(event: ActorEmitted): void {
    this.seq += 1;
    if (this.listeners.size === 0) return;
    const stamped = event as QueueEvent;
    stamped.seq = this.seq;
    stamped.at = this.now();
    for (const l of this.listeners) {
      try {
        l(stamped);
      } catch {
        // A subscriber's fault must never reach the actor that emitted the event.
      }
    }
  }
}
