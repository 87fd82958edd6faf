/**
 * A SchedulerStore wrapper that records what the store decided, in the order this process saw it:
 * arrivals (with the store's arrival sequence), grants (local pumps and, for a shared store, grants
 * another instance made for our waiters), waiters leaving (expiry, removal) and releases. The
 * limit and order checks of bench/measure.ts run on these records.
 *
 * The in-memory store decides synchronously, so its calls are made through its synchronous core and
 * recorded in the same instant: the records are then in exact decision order. A shared store's
 * arrivals are recorded when Redis confirmed them, its grants when their result was seen.
 */
import { MemoryStore } from '../src/machines/memory-store.js';
import type { EnqueueResult, Grant, PumpResult, ReleaseOutcome, SchedulerStore, StoreListener, WaiterEntry } from '../src/machines/scheduler-store.js';
import { hrNow } from './hr-clock.js';

export type StoreRecord =
  | { op: 'arrive'; model: string; id: string; priority: number; seq: number; hr: number }
  | {
      op: 'grant';
      model: string;
      id: string;
      deployment: string;
      tokens: number;
      /** The grant time the store reported (its clock). */
      at: number;
      /** The store's decision number (NaN/null when unknown). */
      decision: number;
      /** When the call that made the decision was sent (hrNow); NaN/null for grants made by another instance. */
      notBefore: number;
      /** When this process saw the grant (hrNow). */
      hr: number;
      remote: boolean;
    }
  | { op: 'leave'; model: string; id: string; hr: number }
  | { op: 'release'; model: string; id: string; deployment: string; at: number; hr: number };

/**
 * A shared store names its grants `<request id>/<decision number>` or `<request id>/<server ms>.<decision
 * number>` (the number being its global pump-call counter); a local store counts its own pumps.
 */
export function decisionOf(grant: Pick<Grant, 'grantId'>, fallback: number): number {
  const slash = grant.grantId.lastIndexOf('/');
  if (slash < 0) return fallback;
  const tail = grant.grantId.slice(slash + 1);
  const n = Number(tail.slice(tail.lastIndexOf('.') + 1));
  return tail !== '' && Number.isInteger(n) ? n : fallback;
}

export class LoggingStore implements SchedulerStore {
  private pumps = 0;

  constructor(
    private readonly inner: SchedulerStore,
    private readonly model: string,
    readonly records: StoreRecord[],
  ) {}

  get shared(): boolean {
    return this.inner.shared;
  }

  async enqueue(entry: WaiterEntry, now: number): Promise<EnqueueResult> {
    const decision = ++this.pumps;
    const sentAt = hrNow();
    const result = this.inner instanceof MemoryStore ? this.inner.enqueueNow(entry, now) : await this.inner.enqueue(entry, now);
    if (result.accepted) {
      this.records.push({ op: 'arrive', model: this.model, id: entry.id, priority: entry.priority, seq: result.seq, hr: hrNow() });
      // A store that grants in the same step as the enqueue (Redis) reports that step's result here.
      if (result.pumped) this.logPump(result.pumped, decision, sentAt);
    }
    return result;
  }

  remove(id: string, now: number): Promise<boolean> {
    // Recorded before the call: a leave of a request that was not waiting changes nothing in the checks.
    this.records.push({ op: 'leave', model: this.model, id, hr: hrNow() });
    return this.inner.remove(id, now);
  }

  private logGrants(grants: Grant[], remote: boolean, decision: number, notBefore: number): void {
    const hr = hrNow();
    for (const g of grants) {
      this.records.push({ op: 'grant', model: this.model, id: g.requestId, deployment: g.deploymentId, tokens: g.tokens, at: g.grantedAt, decision: decisionOf(g, decision), notBefore, hr, remote });
    }
  }

  private logPump(result: PumpResult, decision: number, sentAt: number): void {
    this.logGrants(result.grants, false, decision, sentAt);
    const hr = hrNow();
    for (const id of result.expired) this.records.push({ op: 'leave', model: this.model, id, hr });
  }

  async pump(now: number) {
    const decision = ++this.pumps;
    const sentAt = hrNow();
    const result: PumpResult = this.inner instanceof MemoryStore ? this.inner.pumpNow(now) : await this.inner.pump(now);
    this.logPump(result, decision, sentAt);
    return result;
  }

  async release(grant: Grant, outcome: ReleaseOutcome, now: number, options?: { pump?: boolean }) {
    this.records.push({ op: 'release', model: this.model, id: grant.requestId, deployment: grant.deploymentId, at: now, hr: hrNow() });
    const decision = ++this.pumps;
    const sentAt = hrNow();
    const result = await this.inner.release(grant, outcome, now, options);
    if (result.pumped) this.logPump(result.pumped, decision, sentAt);
    return result;
  }

  position(id: string) {
    return this.inner.position(id);
  }

  snapshot(now: number, maxWaiters?: number) {
    return this.inner.snapshot(now, maxWaiters);
  }

  retryAfterSeconds(now: number) {
    return this.inner.retryAfterSeconds(now);
  }

  setListener(listener: StoreListener): void {
    this.inner.setListener({
      changed: () => listener.changed(),
      remote: (result) => {
        this.logGrants(result.grants, true, NaN, NaN);
        const hr = hrNow();
        for (const id of result.expired) this.records.push({ op: 'leave', model: this.model, id, hr });
        listener.remote(result);
      },
    });
  }

  close() {
    return this.inner.close();
  }
}

/** A record from another process moved onto the runner's time base (NaN travels through IPC as null). */
export function shiftRecord(r: StoreRecord, offsetMs: number): StoreRecord {
  const shifted = { ...r, hr: r.hr + offsetMs };
  if (shifted.op === 'grant') {
    shifted.notBefore = typeof shifted.notBefore === 'number' && Number.isFinite(shifted.notBefore) ? shifted.notBefore + offsetMs : NaN;
    shifted.decision = typeof shifted.decision === 'number' ? shifted.decision : NaN;
  }
  return shifted;
}
