/**
 * One optimizer step that a non-finite value cannot get through, recorded without waiting for
 * the GPU. The micro-batches' gradients are accumulated and their global norm computed; a small
 * kernel turns the norm into NaN when any loss is not finite (`kernels/finite_check.ts`); the
 * optimizers' update kernels skip a step whose norm is not finite. So a diverging run (too high a
 * learning rate, a bad batch) leaves the weights and the optimizer's moments as the last good
 * step left them, and the CPU learns of it from the loss and norm it reads back afterwards.
 *
 * Because nothing in the step waits for a readback, a trainer can record the next step while
 * the GPU still runs this one ({@linkcode recordCheckedStep}), and the GPU never idles while the
 * CPU prepares a batch and encodes its kernels. {@linkcode checkedStep} is the same step, waited
 * for.
 *
 * @module
 */

import { poisonNormUnlessFinite } from "../kernels/finite_check.ts";
import { globalNorm } from "../kernels/grad_norm.ts";
import {
  type AccumulatedGradients,
  type AccumulatedStepResult,
  accumulateGradients,
} from "./accumulated_step.ts";
import { meanLoss, type MicroBatch } from "./batch.ts";
import type { GPT2 } from "./gpt2.ts";

/**
 * An optimizer that clips by a global gradient norm it is given (`AdamW`, `MuonAdamW`), and
 * leaves every parameter and moment unchanged when that norm is NaN or infinite.
 */
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

/** A step recorded and submitted to the GPU. */
export interface RecordedStep {
  /**
   * The step's loss, gradient norm and counted positions, once the GPU has run it; rejects with
   * {@linkcode NonFiniteStepError} when the step was not applied.
   */
  finished: Promise<AccumulatedStepResult>;
}

/**
 * Records one optimizer step of `model` with learning rate `lr` on `batches`, applied on the GPU
 * only when the loss and the gradient's global norm are finite; the gradients are zeroed after,
 * either way. Returns once the work is submitted, before the GPU has run it.
 */
export async function recordCheckedStep(
  model: GPT2,
  optimizer: NormClippedOptimizer,
  batches: readonly MicroBatch[],
  lr: number,
): Promise<RecordedStep> {
  const gpu = model.gpu;
  let accumulated: AccumulatedGradients;
  const norm = gpu.acquire(4, undefined, "step.grad_norm");
  try {
    accumulated = await accumulateGradients(model, batches);
    try {
      const grads = [...model.params.values()].map((p) => ({
        buffer: p.gradFloats,
        count: p.size,
      }));
      gpu.profilePhase = "optimizer";
      await globalNorm(gpu, norm, grads);
      await poisonNormUnlessFinite(gpu, norm, accumulated.losses, accumulated.positions);
      await optimizer.step(lr, norm);
    } catch (error) {
      gpu.release(accumulated.losses);
      throw error;
    }
  } catch (error) {
    gpu.release(norm);
    throw error;
  } finally {
    model.zeroGrad();
  }
  // Both reads are submitted now; neither is waited for here.
  const { counted, readLosses } = accumulated;
  const perPositionRead = readLosses(); // also frees the losses' buffer
  const normRead = gpu.readF32(norm, 1).finally(() => gpu.release(norm));
  const finished = (async () => {
    const [perPosition, [gradNorm]] = await Promise.all([perPositionRead, normRead]);
    const loss = meanLoss(perPosition, counted);
    if (!Number.isFinite(loss)) throw new NonFiniteStepError("loss", loss, loss);
    if (!Number.isFinite(gradNorm)) throw new NonFiniteStepError("gradient norm", gradNorm, loss);
    return { loss, gradNorm, counted };
  })();
  finished.catch(() => {}); // a caller that stops early must not crash on an unread rejection
  return { finished };
}

/**
 * One optimizer step of `model` with learning rate `lr` on `batches`, applied only when the
 * loss and the gradient's global norm are finite; the gradients are zeroed after, either way.
 * {@linkcode recordCheckedStep}, waited for.
 *
 * @throws {NonFiniteStepError} when the loss or the gradient norm is NaN or infinite: no weight
 *   or moment changed.
 */
export async function checkedStep(
  model: GPT2,
  optimizer: NormClippedOptimizer,
  batches: readonly MicroBatch[],
  lr: number,
): Promise<AccumulatedStepResult> {
  return await (await recordCheckedStep(model, optimizer, batches, lr)).finished;
}
