/**
 * A Map for entries that come and go one per request (live requests by id, waiters by id, grants'
 * reservations), built so that neither V8 cost of such churn is paid.
 *
 * 1. The table. V8 (Node 20) reallocates a Map's table through a call into its runtime when a
 *    delete leaves it less than half full and when deleted slots fill it. A gateway whose requests
 *    each end within one turn of the event loop takes such a Map from empty to one entry and back on
 *    every request, paying that call each time (docs/performance.md, "Maps that keep their table"). PADDING entries under keys no caller can pass (symbols) keep the
 *    table at 128 slots: never under half full, and refilled by deleted slots once per ~60 requests.
 * 2. The young generation. When a Map's table is replaced, the old table keeps its entries. Once the
 *    Map has lived long enough to be in the old generation, that dead old table still points at the
 *    values that were in it, and a minor collection counts every such pointer as live: the values
 *    survive, get copied, then promoted, and only a full collection frees them. With one request
 *    object per value, a request that lasted a few milliseconds stayed in memory until the next full
 *    collection, and minor collections promoted and paused several times more than with the values
 *    kept as below (docs/performance.md, "No request kept for the young generation by a dead table"). So the Map holds only the keys and slot numbers (a dead table
 *    keeps a few bytes of key alive, not a request), and the values sit in an array whose slot is
 *    cleared on delete and reused.
 */
const PADDING = 64;
const PAD_KEYS: readonly symbol[] = Array.from({ length: PADDING }, (_, i) => Symbol(`padding ${i}`));
/** The slot number the padding entries hold (no slot). */
const NO_SLOT = -1;
/** An emptied map whose slot array grew past this starts over small (a burst's arrays are not kept). */
const KEEP_SLOTS = 4_096;

export class ChurnMap<V> {
  /** Key → slot in `slots`; the padding keys → NO_SLOT. */
  private readonly index = new Map<string | symbol, number>();
  private slots: (V | undefined)[] = [];
  /** Slots cleared by delete, reused before the array grows. */
  private free: number[] = [];

  constructor() {
    for (const key of PAD_KEYS) this.index.set(key, NO_SLOT);
  }

  get size(): number {
    return this.index.size - PADDING;
  }

  get(key: string): V | undefined {
    const slot = this.index.get(key);
    return slot === undefined ? undefined : this.slots[slot];
  }

  has(key: string): boolean {
    return this.index.has(key);
  }

  set(key: string, value: V): this {
    const slot = this.index.get(key);
    if (slot !== undefined) {
      this.slots[slot] = value;
      return this;
    }
    const fresh = this.free.length > 0 ? this.free.pop()! : this.slots.length;
    this.slots[fresh] = value;
    this.index.set(key, fresh);
    return this;
  }

  delete(key: string): boolean {
    const slot = this.index.get(key);
    if (slot === undefined) return false;
    this.index.delete(key);
    if (this.index.size === PADDING && this.slots.length > KEEP_SLOTS) {
      this.slots = [];
      this.free = [];
    } else {
      this.slots[slot] = undefined;
      this.free.push(slot);
    }
    return true;
  }

  /** Length of the slot array (for tests: it grows to the most entries held at once, and shrinks when emptied). */
  get capacity(): number {
    return this.slots.length;
  }

  /** Values in insertion order. */
  *values(): IterableIterator<V> {
    for (const [key, slot] of this.index) if (typeof key === 'string') yield this.slots[slot] as V;
  }

  /** The first value in insertion order, or undefined when empty. */
  first(): V | undefined {
    return this.values().next().value;
  }

  clear(): void {
    for (const key of [...this.index.keys()]) if (typeof key === 'string') this.delete(key);
  }
}
