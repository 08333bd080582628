/**
 * Training batches from a tokenized dataset: rows in a shuffled order that is fixed by the seed
 * and the epoch, so a run resumed from a checkpoint sees exactly the batches it would have seen.
 *
 * A row of T tokens gives T inputs and the T next tokens as targets; the last target (past the
 * row), every target inside the row's `<pad>` tail, and (for instruction tuning) every target the
 * dataset's loss mask leaves out, such as the prompt's tokens, are masked out of the loss.
 *
 * @module
 */

import { Random } from "../nn/random.ts";
import type { TokenizedDataset } from "./token_rows.ts";

/** One batch of B rows of T positions. */
export interface Batch {
  /** (B, T) input token ids. */
  inputs: Int32Array;
  /** (B, T) the token each position must predict. */
  targets: Int32Array;
  /** (B, T) 1 where the target counts in the loss, 0 for padding and row ends. */
  mask: Uint32Array;
}

/**
 * A batch laid out as `sequences` sequences of `length` positions: the same arrays as a
 * {@linkcode Batch}, read with another shape.
 */
export interface ShapedBatch extends Batch {
  /** Sequences in the batch, the model's B. */
  batch: number;
  /** Positions per sequence, the model's T. */
  time: number;
}

/**
 * The batch of `rows` rows of `rowLength` positions cut into sequences of `length` positions
 * (which must divide `rowLength`): `rows · rowLength / length` sequences. Because a batch is
 * stored row-major, cutting is a change of shape, not a copy: sequence `r · (rowLength/length) +
 * c` is positions `[c·length, (c+1)·length)` of row r, and the target of a sequence's last
 * position stays the row's next token. Each sequence starts without the context before it.
 */
export function cutSequences(batch: Batch, rowLength: number, length: number): ShapedBatch {
  if (rowLength % length !== 0) {
    throw new RangeError(`Rows of ${rowLength} tokens cannot be cut into sequences of ${length}.`);
  }
  return { ...batch, batch: batch.inputs.length / length, time: length };
}

/** The batches' rows one after the other: a batch of all their rows. */
export function concatBatches(batches: readonly Batch[]): Batch {
  if (batches.length === 1) return batches[0];
  const join = <A extends Int32Array | Uint32Array>(arrays: A[], out: A): A => {
    let offset = 0;
    for (const array of arrays) {
      out.set(array, offset);
      offset += array.length;
    }
    return out;
  };
  const size = batches.reduce((n, b) => n + b.inputs.length, 0);
  return {
    inputs: join(batches.map((b) => b.inputs), new Int32Array(size)),
    targets: join(batches.map((b) => b.targets), new Int32Array(size)),
    mask: join(batches.map((b) => b.mask), new Uint32Array(size)),
  };
}

/** Rows `[first, first + count)` of a batch of rows of `rowLength` positions, without a copy. */
export function rowsOfBatch(batch: Batch, rowLength: number, first: number, count: number): Batch {
  const [from, to] = [first * rowLength, (first + count) * rowLength];
  return {
    inputs: batch.inputs.subarray(from, to),
    targets: batch.targets.subarray(from, to),
    mask: batch.mask.subarray(from, to),
  };
}

/** Where a {@linkcode BatchSampler} is, saved in checkpoints. */
export interface SamplerState {
  /** Passes over the dataset completed; the shuffled order is a function of seed and epoch. */
  epoch: number;
  /** Rows of this epoch already served. */
  position: number;
}

/** A contiguous run of a dataset's rows, `[first, first + count)`. */
export interface RowRange {
  /** The first row. */
  first: number;
  /** How many rows. */
  count: number;
}

/**
 * Splits a dataset's rows into a training range and a held-out validation range: the last
 * `fraction` of the rows (at least one batch of them when there is any), so the two never share
 * a row.
 */
export function splitRows(
  rows: number,
  fraction: number,
  batchSize: number,
): { train: RowRange; validation: RowRange | null } {
  const held = fraction > 0 ? Math.max(batchSize, Math.round(rows * fraction)) : 0;
  if (held === 0 || rows - held < batchSize) {
    return { train: { first: 0, count: rows }, validation: null };
  }
  return {
    train: { first: 0, count: rows - held },
    validation: { first: rows - held, count: held },
  };
}

/**
 * The batch made of `rows` (their indices in the dataset): inputs, next-token targets, and the
 * mask of the targets that count.
 */
export function batchOfRows(dataset: TokenizedDataset, rows: ArrayLike<number>): Batch {
  const { meta, tokens, lengths, lossMask } = dataset;
  const B = rows.length, T = meta.contextLength;
  const batch: Batch = {
    inputs: new Int32Array(B * T),
    targets: new Int32Array(B * T),
    mask: new Uint32Array(B * T),
  };
  for (let b = 0; b < B; b++) {
    const row = rows[b];
    const ids = tokens.subarray(row * T, (row + 1) * T);
    const length = lengths[row];
    for (let t = 0; t < T; t++) {
      batch.inputs[b * T + t] = ids[t];
      // Position t learns token t + 1, if the row has one and the loss mask keeps it.
      const hasTarget = t + 1 < length && (!lossMask || lossMask[row * T + t + 1] === 1);
      batch.targets[b * T + t] = hasTarget ? ids[t + 1] : meta.padId;
      batch.mask[b * T + t] = hasTarget ? 1 : 0;
    }
  }
  return batch;
}

/** Serves batches of rows, reshuffled each epoch under a seed. */
export class BatchSampler {
  readonly #dataset: TokenizedDataset;
  readonly #batchSize: number;
  readonly #seed: number;
  readonly #rows: RowRange;
  #order: Uint32Array;
  #state: SamplerState;

  /**
   * A sampler over `dataset` (or the `rows` of it), starting at `state` (the beginning by
   * default).
   *
   * @param batchSize rows per batch, B; at most the rows sampled.
   * @param seed with the epoch, fixes each epoch's order of rows.
   * @param state where to start: a saved {@linkcode BatchSampler.state} to resume a run.
   * @param rows the rows to sample from; all by default.
   * @throws {Error} when there are fewer rows than one batch.
   */
  constructor(
    dataset: TokenizedDataset,
    batchSize: number,
    seed: number,
    state: SamplerState = { epoch: 0, position: 0 },
    rows: RowRange = { first: 0, count: dataset.meta.rows },
  ) {
    if (rows.count < batchSize) {
      throw new Error(
        `The dataset has ${rows.count} rows to train on, fewer than a batch of ${batchSize}; ` +
          "lower --batch-size (or --grad-accum) or tokenize more text.",
      );
    }
    this.#dataset = dataset;
    this.#batchSize = batchSize;
    this.#seed = seed;
    this.#rows = rows;
    this.#state = { ...state };
    this.#order = this.#orderOf(state.epoch);
  }

  /** The position to save in a checkpoint. */
  get state(): SamplerState {
    return { ...this.#state };
  }

  #orderOf(epoch: number): Uint32Array {
    const order = new Random(this.#seed * 1000003 + epoch).permutation(this.#rows.count);
    for (let i = 0; i < order.length; i++) order[i] += this.#rows.first;
    return order;
  }

  /**
   * The rows of the next batch (their indices in the dataset): `count` rows, the batch size by
   * default and at most it; a new epoch (and a new order) starts when too few rows are left.
   */
  nextRows(count: number = this.#batchSize): Uint32Array {
    const B = count;
    if (B > this.#batchSize) {
      throw new RangeError(`A sampler of batches of ${this.#batchSize} was asked for ${B} rows.`);
    }
    if (this.#state.position + B > this.#rows.count) {
      this.#state = { epoch: this.#state.epoch + 1, position: 0 };
      this.#order = this.#orderOf(this.#state.epoch);
    }
    const rows = this.#order.slice(this.#state.position, this.#state.position + B);
    this.#state.position += B;
    return rows;
  }

  /** The next batch; see {@linkcode BatchSampler.nextRows}. */
  next(): Batch {
    return batchOfRows(this.#dataset, this.nextRows());
  }
}
