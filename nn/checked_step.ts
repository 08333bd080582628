/**
 * One optimizer step that a non-finite value cannot get through: the micro-batches' gradients
 * are accumulated and their global norm computed, both read back, and the update is recorded
 * only when the loss and the norm are finite. A diverging run (too high a learning rate, a bad
 * batch) so stops with the weights and the optimizer's moments still as the last good step left
 * them, instead of writing NaN into every parameter.
 *
 * The norm is the one the update clips by (passed to the optimizer, not computed twice), and the
 * update is recorded after the readback, so it runs while the CPU prepares the next batch: the
 * check costs one small readback per step.
 *
 * @module
 */

import { globalNorm } from "../kernels/grad_norm.ts";
import { type AccumulatedStepResult, accumulateGradients } from "./accumulated_step.ts";
import { meanLoss, type MicroBatch } from "./batch.ts";
import type { GPT2 } from "./gpt2.ts";

/** An optimizer that clips by a global gradient norm it is given (`AdamW`, `MuonAdamW`). */
export interface NormClippedOptimizer {
  /** Records one update with learning rate `lr`, clipping by the norm in `gradNorm` (1 float). */
  step(lr: number, gradNorm: GPUBuffer): Promise<unknown>;
}

/** The values a step checks before it updates the weights. */
export type CheckedValue = "loss" | "gradient norm";

/** Thrown by {@linkcode checkedStep} when the loss or the gradient norm is NaN or infinite. */
export class NonFiniteStepError extends Error {
  /** Which value was not finite, its value, and the step's finite loss when the norm was not. */
  constructor(readonly which: CheckedValue, readonly value: number, readonly loss: number) {
    super(`The ${which} is ${value}; the step was not applied.`);
    this.name = "NonFiniteStepError";
  }
}

/**
 * One optimizer step of `model` with learning rate `lr` on `batches`, applied only when the
 * loss and the gradient's global norm are finite; the gradients are zeroed after, either way.
 *
 * @throws {NonFiniteStepError} before any weight or moment changed, when the loss or the
 *   gradient norm is NaN or infinite.
 */
export async function checkedStep(
  model: GPT2,
  optimizer: NormClippedOptimizer,
  batches: readonly MicroBatch[],
  lr: number,
): Promise<AccumulatedStepResult> {
  const gpu = model.gpu;
  try {
    const { counted, readLosses } = await accumulateGradients(model, batches);
    const normBuffer = gpu.acquire(4, undefined, "step.grad_norm");
    try {
      let perPosition: Float32Array;
      try {
        const grads = [...model.params.values()].map((p) => ({ buffer: p.grad, count: p.size }));
        await globalNorm(gpu, normBuffer, grads);
      } finally {
        perPosition = await readLosses(); // waits for the GPU; also frees the losses' buffer
      }
      const gradNorm = (await gpu.readF32(normBuffer, 1))[0];
      const loss = meanLoss(perPosition, counted);
      if (!Number.isFinite(loss)) throw new NonFiniteStepError("loss", loss, loss);
      if (!Number.isFinite(gradNorm)) throw new NonFiniteStepError("gradient norm", gradNorm, loss);
      await optimizer.step(lr, normBuffer);
      return { loss, gradNorm, counted };
    } finally {
      gpu.release(normBuffer); // reused only after this batch of work is submitted
    }
  } finally {
    model.zeroGrad();
  }
}
