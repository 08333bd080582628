/**
 * The loss on held-out rows, without gradients, in total and by position bucket: the mean loss
 * of positions 1–128, 129–256, ... shows whether the late positions of the context were learned
 * (a sequence-length warmup that never reached them would leave those buckets worse).
 *
 * @module
 */

import type { GPT2 } from "../nn/gpt2.ts";
import { Tape } from "../nn/tape.ts";
import { batchOfRows, type RowRange } from "./batches.ts";
import type { TokenizedDataset } from "./token_rows.ts";

/** Positions per bucket of {@linkcode ValidationLosses.byPosition} when none is given. */
export const POSITION_BUCKET = 128;

/** What {@linkcode validationLosses} measured. */
export interface ValidationLosses {
  /** Mean loss per counted position, in nats. */
  loss: number;
  /**
   * Mean loss of the counted positions in each bucket of `bucketSize` positions of a row:
   * `byPosition[k]` covers positions `k·bucketSize + 1` to `(k+1)·bucketSize` (1-based), the
   * last bucket ending at the context. Null where no position of a bucket counted.
   */
  byPosition: (number | null)[];
  /** Positions per bucket. */
  bucketSize: number;
}

/** Settings of {@linkcode validationLosses}. */
export interface ValidationOptions {
  /** Batches of rows to read. Default 4. */
  batches?: number;
  /** Positions per bucket. Default 128. */
  bucketSize?: number;
}

/**
 * The mean loss per counted position over the first `batches` batches of `rows` (in order, so
 * every measurement reads the same tokens), at the full context, without gradients; and the
 * same by position bucket.
 */
export async function validationLosses(
  model: GPT2,
  dataset: TokenizedDataset,
  rows: RowRange,
  batchSize: number,
  { batches = 4, bucketSize = POSITION_BUCKET }: ValidationOptions = {},
): Promise<ValidationLosses> {
  const gpu = model.gpu, T = dataset.meta.contextLength;
  const buckets = Math.ceil(T / bucketSize);
  const sums = new Float64Array(buckets), counts = new Float64Array(buckets);
  for (let b = 0; b < batches && (b + 1) * batchSize <= rows.count; b++) {
    const ids = Array.from({ length: batchSize }, (_, i) => rows.first + b * batchSize + i);
    const batch = batchOfRows(dataset, ids);
    const tape = new Tape(gpu);
    try {
      const loss = await model.loss(tape, { ...batch, batch: batchSize, time: T }, {
        withGrad: false,
      });
      const perPosition = await loss.perPosition.read(); // (B·T), 0 where a position does not count
      for (let i = 0; i < perPosition.length; i++) {
        if (!batch.mask[i]) continue;
        const bucket = Math.floor((i % T) / bucketSize);
        sums[bucket] += perPosition[i];
        counts[bucket]++;
      }
    } finally {
      tape.dispose();
    }
  }
  const total = sums.reduce((s, x) => s + x, 0), counted = counts.reduce((s, x) => s + x, 0);
  return {
    loss: total / Math.max(1, counted),
    byPosition: Array.from(sums, (sum, k) => counts[k] ? sum / counts[k] : null),
    bucketSize,
  };
}

/** The mean loss of {@linkcode validationLosses}, alone. */
export async function validationLoss(
  model: GPT2,
  dataset: TokenizedDataset,
  rows: RowRange,
  batchSize: number,
  options: ValidationOptions = {},
): Promise<number> {
  return (await validationLosses(model, dataset, rows, batchSize, options)).loss;
}
