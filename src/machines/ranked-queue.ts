/**
 * An ordered set with rank queries: a treap whose nodes carry subtree sizes.
 *
 * The scheduler needs more than a heap: besides insert and pop-min it removes arbitrary entries
 * (timeouts, cancellations) and reports a waiter's position. A size-augmented treap gives all of
 * them in expected O(log n), with no copy of the queue per operation.
 *
 * The nodes live in two typed arrays, indexed by number: one for the links (left, right, subtree
 * size, weight) and one for each value's sort key, copied in. A walk from the root reads those two
 * contiguous arrays and never the values themselves. With one object per node and the key read
 * through the value, every level of a walk was two cache misses once the waiters were spread over a
 * large heap, and a grant at 100k waiting cost several times what it cost at 1k (docs/performance.md,
 * "A queue that stays in cache at 100k waiting"). The arrays grow by doubling (an amortised copy,
 * never one per operation); freed nodes are reused, and a queue that empties starts again from its
 * first nodes, giving its memory back when a burst made the arrays large.
 */

/** Writes the numbers `value` is ordered by into `out[0..2]`, compared in turn, lower first (0 when unused). */
export type RankKey<T> = (value: T, out: Float64Array) => void;

/** No node: the index of an empty subtree. */
const NIL = -1;
const INITIAL_CAPACITY = 64;
/** Capacity (nodes) above which an emptied queue goes back to fresh arrays of the initial size. */
const SHRINK_ABOVE = 4_096;
// A node's slots in `links`: LINKS per node.
const LEFT = 0;
const RIGHT = 1;
const SIZE = 2;
const WEIGHT = 3;
const LINKS = 4;
const KEYS = 3;

export class RankedQueue<T> {
  private links = new Int32Array(INITIAL_CAPACITY * LINKS);
  private keys = new Float64Array(INITIAL_CAPACITY * KEYS);
  private values: Array<T | undefined> = [];
  private root = NIL;
  /** Nodes freed by deletes, reused before the arrays grow: a stack linked through their LEFT slots. */
  private freeTop = NIL;
  /** Nodes ever handed out (the high-water mark of the arrays). */
  private used = 0;
  // xorshift32: deterministic weights keep runs reproducible (no Math.random in the hot path).
  private seed = 0x9e3779b9;
  /** The key being looked for, and the two halves a split returns (fields, so no tuple per call). */
  private readonly probe = new Float64Array(KEYS);
  private splitLeft = NIL;
  private splitRight = NIL;
  private readonly path: number[] = [];

  constructor(private readonly keyOf: RankKey<T>) {}

  /** Nodes the arrays hold now (used and free). */
  get capacity(): number {
    return this.keys.length / KEYS;
  }

  get size(): number {
    return this.root === NIL ? 0 : this.links[this.root * LINKS + SIZE];
  }

  private nextWeight(): number {
    let x = this.seed;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.seed = x >>> 0;
    return x | 0;
  }

  private left(n: number): number {
    return this.links[n * LINKS + LEFT];
  }

  private right(n: number): number {
    return this.links[n * LINKS + RIGHT];
  }

  private sizeOf(n: number): number {
    return n === NIL ? 0 : this.links[n * LINKS + SIZE];
  }

  private refresh(n: number): void {
    const l = this.links;
    const at = n * LINKS;
    l[at + SIZE] = 1 + this.sizeOf(l[at + LEFT]) + this.sizeOf(l[at + RIGHT]);
  }

  /** Node n's key against the probe: negative when n orders first. */
  private compareToProbe(n: number): number {
    const k = this.keys;
    const p = this.probe;
    const at = n * KEYS;
    return k[at] - p[0] || k[at + 1] - p[1] || k[at + 2] - p[2];
  }

  /** A node holding value with the probe's key. */
  private allocate(value: T): number {
    let n = this.freeTop;
    if (n !== NIL) this.freeTop = this.left(n);
    else {
      if (this.used * LINKS === this.links.length) {
        const links = new Int32Array(this.links.length * 2);
        links.set(this.links);
        this.links = links;
        const keys = new Float64Array(this.keys.length * 2);
        keys.set(this.keys);
        this.keys = keys;
      }
      n = this.used++;
    }
    const l = this.links;
    const at = n * LINKS;
    l[at + LEFT] = NIL;
    l[at + RIGHT] = NIL;
    l[at + SIZE] = 1;
    l[at + WEIGHT] = this.nextWeight();
    const k = this.keys;
    const p = this.probe;
    k[n * KEYS] = p[0];
    k[n * KEYS + 1] = p[1];
    k[n * KEYS + 2] = p[2];
    this.values[n] = value;
    return n;
  }

  private release(n: number): void {
    this.values[n] = undefined; // the queue must not keep a removed value alive
    if (this.root === NIL) {
      // Empty: every node is free, so start again from node 0 (and small arrays after a burst).
      this.freeTop = NIL;
      this.used = 0;
      if (this.capacity > SHRINK_ABOVE) this.clear();
      return;
    }
    this.links[n * LINKS + LEFT] = this.freeTop;
    this.freeTop = n;
  }

  /** Splits subtree n into (< probe) → splitLeft and (>= probe) → splitRight. */
  private split(n: number): void {
    if (n === NIL) {
      this.splitLeft = NIL;
      this.splitRight = NIL;
      return;
    }
    if (this.compareToProbe(n) < 0) {
      this.split(this.right(n));
      this.links[n * LINKS + RIGHT] = this.splitLeft;
      this.refresh(n);
      this.splitLeft = n;
    } else {
      this.split(this.left(n));
      this.links[n * LINKS + LEFT] = this.splitRight;
      this.refresh(n);
      this.splitRight = n;
    }
  }

  private merge(a: number, b: number): number {
    if (a === NIL) return b;
    if (b === NIL) return a;
    if (this.links[a * LINKS + WEIGHT] > this.links[b * LINKS + WEIGHT]) {
      this.links[a * LINKS + RIGHT] = this.merge(this.right(a), b);
      this.refresh(a);
      return a;
    }
    this.links[b * LINKS + LEFT] = this.merge(a, this.left(b));
    this.refresh(b);
    return b;
  }

  insert(value: T): void {
    this.keyOf(value, this.probe);
    const node = this.allocate(value);
    if (this.root === NIL) {
      this.root = node;
      return;
    }
    this.split(this.root);
    const right = this.splitRight;
    this.root = this.merge(this.merge(this.splitLeft, node), right);
  }

  /** Unlinks node n, whose ancestors are `path` (root first; empty: n is the root), and frees it. */
  private unlink(n: number): void {
    const replacement = this.merge(this.left(n), this.right(n));
    const path = this.path;
    if (path.length === 0) this.root = replacement;
    else {
      const parent = path[path.length - 1];
      const at = parent * LINKS;
      if (this.links[at + LEFT] === n) this.links[at + LEFT] = replacement;
      else this.links[at + RIGHT] = replacement;
      for (let i = path.length - 1; i >= 0; i--) this.links[path[i] * LINKS + SIZE] -= 1;
      path.length = 0;
    }
    this.release(n);
  }

  /** Removes an entry whose key equals value's; returns whether one was there. */
  delete(value: T): boolean {
    this.keyOf(value, this.probe);
    const path = this.path;
    path.length = 0;
    let n = this.root;
    while (n !== NIL) {
      const c = this.compareToProbe(n);
      if (c === 0) break;
      path.push(n);
      n = c > 0 ? this.left(n) : this.right(n);
    }
    if (n === NIL) {
      path.length = 0;
      return false;
    }
    this.unlink(n);
    return true;
  }

  peek(): T | undefined {
    let n = this.root;
    if (n === NIL) return undefined;
    for (let l = this.left(n); l !== NIL; l = this.left(n)) n = l;
    return this.values[n];
  }

  /** The entry ordered last (the worst waiter: whom a better arrival displaces from a full queue). */
  peekLast(): T | undefined {
    let n = this.root;
    if (n === NIL) return undefined;
    for (let r = this.right(n); r !== NIL; r = this.right(n)) n = r;
    return this.values[n];
  }

  shift(): T | undefined {
    let n = this.root;
    if (n === NIL) return undefined;
    const path = this.path;
    path.length = 0;
    for (let l = this.left(n); l !== NIL; l = this.left(n)) {
      path.push(n);
      n = l;
    }
    const first = this.values[n];
    this.unlink(n);
    return first;
  }

  /** Number of entries ordered before value (its 0-based position if present). */
  rank(value: T): number {
    this.keyOf(value, this.probe);
    let n = this.root;
    let rank = 0;
    while (n !== NIL) {
      if (this.compareToProbe(n) >= 0) n = this.left(n);
      else {
        rank += this.sizeOf(this.left(n)) + 1;
        n = this.right(n);
      }
    }
    return rank;
  }

  /** In-order walk; stops early when visit returns false. Iterative, so deep trees cannot overflow. */
  forEach(visit: (value: T) => boolean | void): void {
    const stack: number[] = [];
    let n = this.root;
    while (n !== NIL || stack.length > 0) {
      while (n !== NIL) {
        stack.push(n);
        n = this.left(n);
      }
      const top = stack.pop()!;
      if (visit(this.values[top] as T) === false) return;
      n = this.right(top);
    }
  }

  clear(): void {
    this.root = NIL;
    this.values = [];
    this.freeTop = NIL;
    this.used = 0;
    this.links = new Int32Array(INITIAL_CAPACITY * LINKS);
    this.keys = new Float64Array(INITIAL_CAPACITY * KEYS);
  }
}
