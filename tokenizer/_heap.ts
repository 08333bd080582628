/**
 * A binary heap ordered by a caller-supplied `before` relation: the element
 * for which `before(x, y)` holds against every other comes out first. Used as
 * the trainer's priority queue of pair merges.
 *
 * @module
 */

/** Array-backed binary heap; `push` and `pop` are O(log n). */
export class BinaryHeap<T> {
  readonly #items: T[] = [];
  readonly #before: (a: T, b: T) => boolean;

  /** `before(a, b)` is true when `a` must be popped before `b`. */
  constructor(before: (a: T, b: T) => boolean) {
    this.#before = before;
  }

  /** Number of elements held. */
  get size(): number {
    return this.#items.length;
  }

  /** Adds an element. */
  push(item: T): void {
    const items = this.#items;
    let i = items.length;
    items.push(item);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.#before(item, items[parent])) break;
      items[i] = items[parent];
      i = parent;
    }
    items[i] = item;
  }

  /** Removes and returns the first element, or undefined when empty. */
  pop(): T | undefined {
    const items = this.#items;
    if (items.length === 0) return undefined;
    const top = items[0];
    const last = items.pop()!;
    const n = items.length;
    if (n > 0) {
      let i = 0;
      while (true) {
        const left = 2 * i + 1;
        if (left >= n) break;
        const right = left + 1;
        const child = right < n && this.#before(items[right], items[left]) ? right : left;
        if (!this.#before(items[child], last)) break;
        items[i] = items[child];
        i = child;
      }
      items[i] = last;
    }
    return top;
  }
}
