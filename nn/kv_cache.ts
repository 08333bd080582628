/**
 * The key-value cache of generation: every layer's keys and values of the positions each
 * sequence has seen, so that a new token costs one position's work instead of a forward pass
 * over the whole context. `GPT2.forwardCached` fills and reads it.
 *
 * @module
 */

import { attentionForward } from "../kernels/attention.ts";
import {
  attentionDecode,
  type DecodeShape,
  type KvCacheBuffers,
  kvCacheWrite,
} from "../kernels/attention_decode.ts";
import { mergeHeadsForward, splitHeadsForward } from "../kernels/attention_layout.ts";
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
  /** Positions a row can hold: at most the model's context length. */
  readonly maxTime: number;

  /**
   * An empty cache of `rows` sequences of up to `maxTime` positions (default: the context
   * length) for a model of `config`.
   *
   * @throws {RangeError} when one layer's keys for `rows` rows are over the adapter's binding
   *   limit; {@linkcode KvCache.maxRows} says how many fit.
   */
  constructor(
    readonly gpu: Gpu,
    readonly config: GPT2Config,
    readonly rows: number,
    maxTime: number = config.contextLength,
  ) {
    if (!(Number.isInteger(maxTime) && maxTime >= 1 && maxTime <= config.contextLength)) {
      throw new RangeError(
        `A cache row holds 1 to ${config.contextLength} positions (the context), not ${maxTime}.`,
      );
    }
    const fit = KvCache.maxRows(gpu, config, maxTime);
    if (!(Number.isInteger(rows) && rows >= 1 && rows <= fit)) {
      throw new RangeError(
        `A key-value cache takes 1 to ${fit} rows on this adapter, not ${rows}; ` +
          "generate for fewer sequences at once.",
      );
    }
    this.maxTime = maxTime;
    this.lengths = new Array(rows).fill(0);
    const bytes = rows * maxTime * config.nEmbd * 4;
    for (let layer = 0; layer < config.nLayer; layer++) {
      this.keys.push(gpu.acquire(bytes, undefined, `cache.k.${layer}`));
      this.values.push(gpu.acquire(bytes, undefined, `cache.v.${layer}`));
    }
  }

  /** The most rows of `maxTime` positions whose cache tensors each fit one binding of `gpu`. */
  static maxRows(gpu: Gpu, config: GPT2Config, maxTime: number = config.contextLength): number {
    return Math.floor(gpu.maxBinding / (maxTime * config.nEmbd * 4));
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

/**
 * Records one layer's attention of a cached step: the step's keys and values from `qkv`
 * (R, Tq, 3C) appended to the layer's cache, and `y` (R, Tq, C) the attention of its queries
 * over the cache. A step from position 0 in every row (a prefill, or a full row read again)
 * needs nothing from the cache, so its queries go through the fused causal attention of
 * training (heads split, attended, merged: each key serves several queries in registers,
 * 7x faster at 1000 positions on lavapipe than one query per invocation); later steps use
 * `attentionDecode` over the cache.
 *
 * @param buffers the step's `qkv` and `slots`, the layer's caches, and the output `y`
 * @param prefill every step row starts at position 0
 */
export async function cachedSelfAttention(
  gpu: Gpu,
  buffers: KvCacheBuffers & {
    /** Output (R, Tq, C), heads merged, written. */
    y: GPUBuffer;
  },
  shape: DecodeShape,
  prefill: boolean,
): Promise<void> {
  await kvCacheWrite(gpu, buffers, shape);
  if (!prefill) return await attentionDecode(gpu, buffers, shape);
  const { y, qkv } = buffers;
  const { rows: R, time: T, channels: C, heads: NH } = shape;
  const n = R * T * C;
  const [q, k, v, o] = [0, 1, 2, 3].map(() => gpu.acquire(n * 4, undefined, "prefill"));
  const lse = gpu.acquire(R * NH * T * 4, undefined, "prefill.lse");
  await splitHeadsForward(gpu, q, k, v, qkv, R, T, C, NH); // (R, NH, T, HS) each
  await attentionForward(gpu, { o, lse, q, k, v }, R, NH, T, C / NH);
  await mergeHeadsForward(gpu, y, o, R, T, C, NH); // (R, T, C)
  for (const buffer of [q, k, v, o, lse]) gpu.release(buffer);
}
