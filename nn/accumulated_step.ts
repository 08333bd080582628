/**
 * One optimizer step over several micro-batches (gradient accumulation): each micro-batch's
 * forward and backward adds to the parameters' gradients, and every position's loss gradient is
 * scaled by 1 / (positions counted in the whole step), so the step equals one on a single batch
 * of all the micro-batches' sequences, its loss the mean over all counted positions. Only one
 * micro-batch's activations are alive at a time.
 *
 * @module
 */

import { countedTargets, meanLoss, type MicroBatch } from "./batch.ts";
import type { GPT2 } from "./gpt2.ts";
import { Tape } from "./tape.ts";

export type { MicroBatch } from "./batch.ts";

/**
 * What a step needs of an optimizer (`AdamW`, or another): one update of the
 * parameters from their gradients with learning rate `lr`, returning a reader of the gradient's
 * global norm before clipping.
 */
export interface StepOptimizer {
  /** Records the update; the returned function reads the norm once the GPU is done. */
  step(lr: number): Promise<() => Promise<number>>;
}

/** What {@linkcode accumulatedStep} measured. */
export interface AccumulatedStepResult {
  /** Mean cross-entropy over the step's counted positions, in nats. */
  loss: number;
  /** The gradient's global L2 norm before clipping. */
  gradNorm: number;
  /** Positions whose loss counted, over all micro-batches. */
  counted: number;
}

/** What {@linkcode accumulateGradients} recorded. */
export interface AccumulatedGradients {
  /** Positions whose loss counted, over all micro-batches. */
  counted: number;
  /** (positions) every micro-batch's per-position losses, in order, on the GPU. */
  losses: GPUBuffer;
  /** Positions in `losses`, counted or not. */
  positions: number;
  /** Reads `losses` back once the GPU is done, and frees the buffer. */
  readLosses: () => Promise<Float32Array>;
}

/**
 * Adds the gradients of the mean loss over all of `batches` to the parameters' gradients (which
 * the caller zeroes), and returns the per-position losses of every micro-batch, in order, once
 * the GPU is done: read back once, not once per micro-batch.
 */
export async function accumulateGradients(
  model: GPT2,
  batches: readonly MicroBatch[],
): Promise<AccumulatedGradients> {
  const gpu = model.gpu;
  const counted = countedTargets(batches);
  const positions = batches.reduce((n, b) => n + b.batch * b.time, 0);
  // (Σ B·T) every micro-batch's per-position losses, copied here as each micro-batch ends.
  const losses = gpu.acquire(positions * 4, undefined, "step.losses");
  let offset = 0;
  try {
    for (const batch of batches) {
      const tape = new Tape(gpu);
      try {
        const { perPosition } = await model.loss(tape, batch, { counted });
        await tape.backward(perPosition);
        const bytes = perPosition.size * 4;
        gpu.encoder.copyBufferToBuffer(perPosition.buffer, 0, losses, offset * 4, bytes);
        offset += perPosition.size;
      } finally {
        tape.dispose();
      }
    }
  } catch (error) {
    gpu.release(losses);
    throw error;
  }
  return {
    counted,
    losses,
    positions,
    readLosses: async () => {
      try {
        return await gpu.readF32(losses, positions);
      } finally {
        gpu.release(losses);
      }
    },
  };
}

/**
 * One AdamW step of `model` with learning rate `lr` on the micro-batches `batches`; waits for
 * the GPU and reads back the loss and the gradient norm. The gradients are zeroed after.
 */
export async function accumulatedStep(
  model: GPT2,
  optimizer: StepOptimizer,
  batches: readonly MicroBatch[],
  lr: number,
): Promise<AccumulatedStepResult> {
  try {
    const { counted, readLosses } = await accumulateGradients(model, batches);
    let readNorm: () => Promise<number>, perPosition: Float32Array;
    try {
      readNorm = await optimizer.step(lr);
    } finally {
      perPosition = await readLosses(); // also frees the losses' buffer
    }
    return { loss: meanLoss(perPosition, counted), gradNorm: await readNorm(), counted };
  } finally {
    model.zeroGrad();
  }
}
