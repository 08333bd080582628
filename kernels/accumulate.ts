/**
 * Accumulate, `dst[i] += src[i]`: how the autograd tape adds a gradient that a kernel WROTE
 * into a gradient that already holds other consumers' contributions.
 *
 * Tensors over one binding are processed in parts through {@linkcode bufferWindow}.
 *
 * @module
 */

import type { Gpu, GpuFloats, Kernel } from "./device.ts";
import { type ElementwiseConstants, elementwiseKernel, runElementwise } from "./_parts.ts";

/** WGSL of the accumulate, `dst += src`. */
export const accumulateKernel: Kernel<ElementwiseConstants> = elementwiseKernel(
  "accumulate",
  [{ name: "dst", access: "write" }, { name: "src", access: "read" }],
  (at) => `${at("dst")} += ${at("src")};`,
);

/**
 * Records `dst += src` over `n` float32 elements.
 *
 * @param dst (n) accumulated into.
 * @param src (n) added; must be a different buffer.
 */
export async function accumulate(
  gpu: Gpu,
  dst: GpuFloats,
  src: GPUBuffer,
  n: number,
): Promise<void> {
  if (dst === src) throw new Error("accumulate() needs two different buffers; double src instead.");
  await runElementwise(gpu, accumulateKernel, { dst, src }, n);
}

/** CPU reference of {@linkcode accumulate}. */
export function accumulateCpu(dst: Float32Array, src: Float32Array): void {
  for (let i = 0; i < dst.length; i++) dst[i] += src[i];
}
