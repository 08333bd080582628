/**
 * A small seeded random number generator, so that runs repeat exactly under a seed: weight
 * initialization, batch order and sampling all draw from it. Its whole state is one 32-bit
 * number, which checkpoints save.
 *
 * @module
 */

/** mulberry32: a fast 32-bit generator, good enough for initialization and shuffling. */
export class Random {
  #state: number;

  /** A generator seeded with `seed` as an unsigned 32-bit integer (`seed >>> 0`). */
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** The generator's state, to save and restore with {@linkcode Random.fromState}. */
  get state(): number {
    return this.#state;
  }

  /** A generator that continues from a saved state. */
  static fromState(state: number): Random {
    return new Random(state);
  }

  /** A uniform number in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** A whole number in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** A standard normal number (Box-Muller). */
  normal(): number {
    const u = 1 - this.next(); // in (0, 1], so the log is finite
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }

  /** The numbers 0 .. n-1 in a random order (Fisher-Yates). */
  permutation(n: number): Uint32Array {
    const order = new Uint32Array(n);
    for (let i = 0; i < n; i++) order[i] = i;
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [order[i], order[j]] = [order[j], order[i]];
    }
    return order;
  }
}
