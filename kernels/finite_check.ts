/**
 * A training step's divergence check, on the GPU: when any of the step's per-position losses is
 * NaN or infinite, its gradient norm is overwritten with NaN. The optimizers' update kernels skip
 * a step whose norm is not finite (`kernels/adamw.ts`, `kernels/muon.ts`), so one value on the
 * GPU carries both checks, and a step's update can be recorded before the CPU has read its loss
 * back: the GPU does not wait for the CPU between steps (`nn/checked_step.ts`).
 *
 * One workgroup per window of the losses: a step has at most a few tens of thousands of
 * positions, and this runs once a step.
 *
 * @module
 */

import { bufferWindow, type Gpu, type Kernel, uniforms } from "./device.ts";
import { assertFits, head, rowParts } from "./_parts.ts";
import { IS_FINITE_WGSL, workgroupSumWgsl } from "./_wgsl.ts";
import type { Floats } from "./types.ts";

/** Compile-time constants of {@linkcode poisonNormKernel}. */
export interface FiniteCheckConstants extends Record<string, number> {
  /** Invocations per workgroup (a power of two). */
  workgroupSize: number;
}

const WORKGROUP_SIZE = 64;

/** WGSL of the check: `norm[0] = NaN` when any of the `n` losses is not finite. */
export const poisonNormKernel: Kernel<FiniteCheckConstants> = {
  name: "poison_norm",
  bindings: ["write", "read", "uniform"],
  wgsl: ({ workgroupSize: wg }) => /* wgsl */ `
struct Params { n: u32, offset: u32 }

@group(0) @binding(0) var<storage, read_write> norm: array<f32>;  // (1)
@group(0) @binding(1) var<storage, read> losses: array<f32>;      // (offset + n)
@group(0) @binding(2) var<uniform> params: Params;
${IS_FINITE_WGSL}
${workgroupSumWgsl(wg)}

@compute @workgroup_size(${wg})
fn main(@builtin(local_invocation_index) lid: u32) {
  var bad = 0.0;  // a count, summed as a float by the shared tree
  for (var i = lid; i < params.n; i += ${wg}u) {
    bad += select(0.0, 1.0, !isFinite(losses[params.offset + i]));
  }
  let total = workgroupSum(lid, bad);
  if (lid == 0u && total > 0.0) { norm[0] = bitcast<f32>(0x7fc00000u); }
}
`,
};

/**
 * Records `norm[0] = NaN` when any of the first `n` floats of `losses` is NaN or infinite.
 *
 * @param norm (1) the step's global gradient norm, from `globalNorm`; overwritten on divergence.
 * @param losses (n) the step's per-position losses.
 */
export async function poisonNormUnlessFinite(
  gpu: Gpu,
  norm: GPUBuffer,
  losses: GPUBuffer,
  n: number,
): Promise<void> {
  assertFits("norm", norm, 1);
  assertFits("losses", losses, n);
  for (const part of rowParts(gpu, n, 1, 64)) {
    const window = bufferWindow(gpu, losses, part.first, part.count);
    const params = gpu.uniform(uniforms({ n: part.count, offset: window.elementOffset }));
    await gpu.run(
      poisonNormKernel,
      { workgroupSize: WORKGROUP_SIZE },
      [head(norm, 1), window.binding, params],
      [1, 1, 1],
    );
  }
}

/** CPU reference of {@linkcode poisonNormUnlessFinite}: the norm, or NaN. */
export function poisonNormUnlessFiniteCpu(norm: number, losses: Floats): number {
  return Array.prototype.every.call(losses, Number.isFinite) ? norm : NaN;
}
