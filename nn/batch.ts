/**
 * The seam between a batch of token ids on the CPU and the model's loss on the GPU: the batch
 * goes up into buffers its tape owns (freed with the tape, so no caller releases anything), the
 * positions that count are counted once, and a loss's mean is taken in one place.
 *
 *     const tape = new Tape(gpu);
 *     const loss = await model.loss(tape, batch); // logits, loss = model(X, Y)
 *     await tape.backward(loss.perPosition);
 *     console.log(await loss.mean());
 *     tape.dispose();
 *
 * @module
 */

import { countedPositions } from "../kernels/cross_entropy.ts";
import type { LossTargets, TokenBatch } from "./ops.ts";
import type { Tape } from "./tape.ts";
import type { Tensor } from "./tensor.ts";

/** One batch of next-token sequences on the CPU. */
export interface MicroBatch {
  /** (B, T) input ids. */
  inputs: Int32Array;
  /** (B, T) the token each position must predict; a negative id does not count. */
  targets: Int32Array;
  /** (B, T) 0 where a position does not count in the loss; absent or null when all count. */
  mask?: Uint32Array | null;
  /** Sequences, B. */
  batch: number;
  /** Positions per sequence, T. */
  time: number;
}

/** What {@linkcode GPT2.loss} computed on one batch. */
export interface BatchLoss {
  /** (B·T) the loss of each position, 0 where it does not count; freed with the tape. */
  perPosition: Tensor;
  /** Positions whose loss counts: the mean's denominator (and the gradient's scale). */
  counted: number;
  /** Waits for the GPU and returns the mean loss over the counted positions, in nats. */
  mean(): Promise<number>;
}

/** The positions of `batches` whose loss counts: a target that is not negative, not masked. */
export function countedTargets(batches: readonly MicroBatch[]): number {
  return batches.reduce((n, b) => n + countedPositions(b.targets, b.mask), 0);
}

/**
 * The mean of per-position losses (0 where a position does not count) over `counted`
 * positions; 0 when none counts. Summed in order, in float64.
 */
export function meanLoss(perPosition: Float32Array, counted: number): number {
  return perPosition.reduce((s, l) => s + l, 0) / Math.max(1, counted);
}

/** `ids` (B, T) on the GPU, in a buffer `tape` frees; the input of {@linkcode GPT2.forward}. */
export function uploadTokens(tape: Tape, ids: Int32Array, batch: number, time: number): TokenBatch {
  if (ids.length !== batch * time) {
    throw new RangeError(
      `A batch of ${batch}×${time} tokens needs ${batch * time} ids, got ${ids.length}.`,
    );
  }
  return { ids, buffer: upload(tape, ids, "batch.ids"), batch, time };
}

/**
 * A batch's inputs, targets and mask on the GPU, in buffers `tape` frees, with the positions that
 * count: `counted` when given (a step of several micro-batches averages over all of theirs),
 * else this batch's own.
 */
export function uploadBatch(
  tape: Tape,
  batch: MicroBatch,
  counted = countedTargets([batch]),
): { tokens: TokenBatch; targets: LossTargets } {
  const tokens = uploadTokens(tape, batch.inputs, batch.batch, batch.time);
  if (
    batch.targets.length !== batch.inputs.length ||
    (batch.mask && batch.mask.length !== batch.inputs.length)
  ) {
    throw new RangeError(
      `A batch's targets (${batch.targets.length}) and mask (${batch.mask?.length ?? "none"}) ` +
        `must have one entry per input (${batch.inputs.length}).`,
    );
  }
  const targets = upload(tape, batch.targets, "batch.targets");
  const mask = batch.mask ? upload(tape, batch.mask, "batch.mask") : null;
  return { tokens, targets: { targets, mask, counted } };
}

/** `data` in a buffer the tape owns (the one allocation and write `Gpu.upload` would make). */
function upload(tape: Tape, data: Int32Array | Uint32Array, name: string): GPUBuffer {
  const buffer = tape.scratch(data.length, name);
  tape.gpu.writeNew(buffer, data);
  return buffer;
}
