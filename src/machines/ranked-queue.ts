/**
 * An ordered set with rank queries: a treap whose nodes carry subtree sizes.
 *
 * The scheduler needs more than a heap: besides insert and pop-min it removes arbitrary entries
 * (timeouts, cancellations) and reports a waiter's position. A size-augmented treap gives all of
 * them in expected O(log n), with no copy of the queue per operation.
 */

export type Compare<T> = (a: T, b: T) => number;

interface TreapNode<T> {
  value: T;
  weight: number;
  size: number;
  left: TreapNode<T> | null;
  right: TreapNode<T> | null;
}

const sizeOf = <T>(n: TreapNode<T> | null): number => (n === null ? 0 : n.size);

function refresh<T>(n: TreapNode<T>): void {
  n.size = 1 + sizeOf(n.left) + sizeOf(n.right);
}

export class RankedQueue<T> {
  private root: TreapNode<T> | null = null;
  // xorshift32: deterministic weights keep runs reproducible (no Math.random in the hot path).
  private seed = 0x9e3779b9;

  constructor(private readonly compare: Compare<T>) {}

  get size(): number {
    return sizeOf(this.root);
  }

  private nextWeight(): number {
    let x = this.seed;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.seed = x >>> 0;
    return this.seed;
  }

  /** Splits into (< value) and (>= value). */
  private split(n: TreapNode<T> | null, value: T): [TreapNode<T> | null, TreapNode<T> | null] {
    if (n === null) return [null, null];
    if (this.compare(n.value, value) < 0) {
      const [l, r] = this.split(n.right, value);
      n.right = l;
      refresh(n);
      return [n, r];
    }
    const [l, r] = this.split(n.left, value);
    n.left = r;
    refresh(n);
    return [l, n];
  }

  private merge(a: TreapNode<T> | null, b: TreapNode<T> | null): TreapNode<T> | null {
    if (a === null) return b;
    if (b === null) return a;
    if (a.weight > b.weight) {
      a.right = this.merge(a.right, b);
      refresh(a);
      return a;
    }
    b.left = this.merge(a, b.left);
    refresh(b);
    return b;
  }

  insert(value: T): void {
    const node: TreapNode<T> = { value, weight: this.nextWeight(), size: 1, left: null, right: null };
    const [l, r] = this.split(this.root, value);
    this.root = this.merge(this.merge(l, node), r);
  }

  /** Removes the entry equal (compare = 0) to value; returns whether one was there. */
  delete(value: T): boolean {
    let parent: TreapNode<T> | null = null;
    let n = this.root;
    const path: TreapNode<T>[] = [];
    while (n !== null) {
      const c = this.compare(value, n.value);
      if (c === 0) break;
      path.push(n);
      parent = n;
      n = c < 0 ? n.left : n.right;
    }
    if (n === null) return false;
    const replacement = this.merge(n.left, n.right);
    if (parent === null) this.root = replacement;
    else if (parent.left === n) parent.left = replacement;
    else parent.right = replacement;
    for (let i = path.length - 1; i >= 0; i--) path[i].size -= 1;
    return true;
  }

  peek(): T | undefined {
    let n = this.root;
    if (n === null) return undefined;
    while (n.left !== null) n = n.left;
    return n.value;
  }

  shift(): T | undefined {
    const first = this.peek();
    if (first !== undefined) this.delete(first);
    return first;
  }

  /** Number of entries ordered before value (its 0-based position if present). */
  rank(value: T): number {
    let n = this.root;
    let rank = 0;
    while (n !== null) {
      const c = this.compare(value, n.value);
      if (c <= 0) n = n.left;
      else {
        rank += sizeOf(n.left) + 1;
        n = n.right;
      }
    }
    return rank;
  }

  /** In-order walk; stops early when visit returns false. Iterative, so deep trees cannot overflow. */
  forEach(visit: (value: T) => boolean | void): void {
    const stack: TreapNode<T>[] = [];
    let n = this.root;
    while (n !== null || stack.length > 0) {
      while (n !== null) {
        stack.push(n);
        n = n.left;
      }
      const top = stack.pop()!;
      if (visit(top.value) === false) return;
      n = top.right;
    }
  }

  clear(): void {
    this.root = null;
  }
}
