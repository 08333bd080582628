/**
 * The key-value cache of generation: every layer's keys and values of the positions each
 * sequence has seen, so that a new token costs one position's work instead of a forward pass
 * over the whole context. `GPT2.forwardCached` fills and reads it.
 *
 * @module
 */

import type { Gpu } from "../kernels/device.ts";
import type { GPT2Config } from "./config.ts";

/**
 * Keys and values of `rows` sequences, per layer `(rows, NH, maxT, HS)` each (the layout of
 * `kernels/attention_decode.ts`), and how many positions each row holds.
 */
export class KvCache {
  /** Per layer, the keys (rows, NH, maxT, HS). */
  readonly keys: GPUBuffer[] = [];
  /** Per layer, the values (rows, NH, maxT, HS). */
  readonly values: GPUBuffer[] = [];
  /** Positions each row holds: its next token goes to position `lengths[row]`. */
  readonly lengths: number[];
  /** Positions a row can hold: the model's context length. */
  readonly maxTime: number;

  /**
   * An empty cache of `rows` sequences for a model of `config`.
   *
   * @throws {RangeError} when one layer's keys for `rows` rows are over the adapter's binding
   *   limit; {@linkcode KvCache.maxRows} says how many fit.
   */
  constructor(readonly gpu: Gpu, readonly config: GPT2Config, readonly rows: number) {
    const fit = KvCache.maxRows(gpu, config);
    if (!(Number.isInteger(rows) && rows >= 1 && rows <= fit)) {
      throw new RangeError(
        `A key-value cache takes 1 to ${fit} rows on this adapter, not ${rows}; ` +
          "generate for fewer sequences at once.",
      );
    }
    this.maxTime = config.contextLength;
    this.lengths = new Array(rows).fill(0);
    const bytes = rows * this.maxTime * config.nEmbd * 4;
    for (let layer = 0; layer < config.nLayer; layer++) {
      this.keys.push(gpu.acquire(bytes, undefined, `cache.k.${layer}`));
      this.values.push(gpu.acquire(bytes, undefined, `cache.v.${layer}`));
    }
  }

  /** The most rows whose cache tensors each fit one binding of `gpu`. */
  static maxRows(gpu: Gpu, config: GPT2Config): number {
    return Math.floor(gpu.maxBinding / (config.contextLength * config.nEmbd * 4));
  }

  /** Forgets what row `row` holds (its next forward starts at position 0). */
  reset(row: number): void {
    this.lengths[row] = 0;
  }

  /** Gives the buffers back to the pool. */
  dispose(): void {
    for (const buffer of [...this.keys, ...this.values]) this.gpu.release(buffer);
    this.keys.length = 0;
    this.values.length = 0;
  }
}
