/**
 * An open-addressing hash table from a pair of non-negative int32 ids to an
 * int32 value (a merge rank). Encoding looks up every adjacent symbol pair of
 * every new word; a Map keyed by `left * 2^21 + right` would box most keys as
 * doubles, this table stays in integer arithmetic on typed arrays.
 *
 * @module
 */

/** Fixed-capacity map from `(left, right)` to a value; sized for `expected` entries. */
export class PairTable {
  readonly #lefts: Int32Array;
  readonly #rights: Int32Array;
  readonly #values: Int32Array;
  readonly #mask: number;

  /** Allocates room for `expected` pairs at a load factor of at most one half. */
  constructor(expected: number) {
    let capacity = 16;
    while (capacity < expected * 2) capacity *= 2;
    this.#lefts = new Int32Array(capacity).fill(-1);
    this.#rights = new Int32Array(capacity);
    this.#values = new Int32Array(capacity);
    this.#mask = capacity - 1;
  }

  #slot(left: number, right: number): number {
    let slot = (Math.imul(left, 0x9e3779b1) ^ Math.imul(right, 0x85ebca6b)) >>> 0;
    slot = (slot ^ (slot >>> 15)) & this.#mask;
    while (this.#lefts[slot] !== -1) {
      if (this.#lefts[slot] === left && this.#rights[slot] === right) return slot;
      slot = (slot + 1) & this.#mask;
    }
    return slot;
  }

  /** Sets the value of a pair, replacing any earlier one. */
  set(left: number, right: number, value: number): void {
    const slot = this.#slot(left, right);
    this.#lefts[slot] = left;
    this.#rights[slot] = right;
    this.#values[slot] = value;
  }

  /** The value of a pair, or -1 when absent. */
  get(left: number, right: number): number {
    const slot = this.#slot(left, right);
    return this.#lefts[slot] === -1 ? -1 : this.#values[slot];
  }
}
