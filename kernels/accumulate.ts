/**
 * Accumulate, `dst[i] += src[i]`: how the autograd tape adds a gradient that a kernel WROTE
 * into a gradient that already holds other consumers' contributions.
 *
 * Tensors over one binding are processed in parts through {@linkcode bufferWindow}.
 *
 * @module
 */

import type { Gpu, Kernel } from "./device.ts";
import { runElementwise } from "./_parts.ts";

/** Compile-time constants of {@linkcode accumulateKernel}. */
export interface AccumulateConstants extends Record<string, number> {
  /** Invocations per workgroup. */
  workgroupSize: number;
}

/** WGSL of the accumulate, one element per invocation. */
export const accumulateKernel: Kernel<AccumulateConstants> = {
  name: "accumulate",
  bindings: ["write", "read", "uniform"],
  wgsl: ({ workgroupSize: wg }) => /* wgsl */ `
struct Params { n: u32, dstOffset: u32, srcOffset: u32 }

@group(0) @binding(0) var<storage, read_write> dst: array<f32>;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * groups.x) * ${wg}u + lid;
  if (i >= params.n) { return; }
  dst[params.dstOffset + i] += src[params.srcOffset + i];
}
`,
};

const WORKGROUP_SIZE = 256;

/**
 * Records `dst += src` over `n` float32 elements.
 *
 * @param dst (n) accumulated into.
 * @param src (n) added; must be a different buffer.
 */
export async function accumulate(
  gpu: Gpu,
  dst: GPUBuffer,
  src: GPUBuffer,
  n: number,
): Promise<void> {
  if (dst === src) throw new Error("accumulate() needs two different buffers; double src instead.");
  await runElementwise(gpu, accumulateKernel, { dst, src }, n, WORKGROUP_SIZE);
}

/** CPU reference of {@linkcode accumulate}. */
export function accumulateCpu(dst: Float32Array, src: Float32Array): void {
  for (let i = 0; i < dst.length; i++) dst[i] += src[i];
}
