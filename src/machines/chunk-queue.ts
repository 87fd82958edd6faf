/**
 * A single-consumer async queue of stream chunks: the request actor pushes what the upstream sends,
 * the caller iterates. Ending early (break / return) calls `onCancel`, which cancels the request.
 */
export class ChunkQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private waiting: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | null = null;
  private ended = false;
  private failure: unknown = undefined;
  private pushed = false;

  /** onFirst runs once, when the first chunk arrives (the caller can now commit to a 200 stream). */
  constructor(
    private readonly onCancel: () => void,
    private readonly onFirst: () => void = () => {},
  ) {}

  /** Whether any chunk reached the caller's side: a retry would then repeat content, so none is made. */
  get started(): boolean {
    return this.pushed;
  }

  push(item: T): void {
    if (this.ended) return;
    if (!this.pushed) {
      this.pushed = true;
      this.onFirst();
    }
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      w.resolve({ value: item, done: false });
    } else this.items.push(item);
  }

  end(error?: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.failure = error;
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      if (error === undefined) w.resolve({ value: undefined, done: true });
      else w.reject(error);
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        const item = this.items.shift();
        if (item !== undefined) return Promise.resolve({ value: item, done: false });
        if (this.ended) {
          return this.failure === undefined ? Promise.resolve({ value: undefined, done: true }) : Promise.reject(this.failure);
        }
        return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
      },
      return: () => {
        if (!this.ended) {
          this.ended = true;
          this.onCancel();
        }
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
