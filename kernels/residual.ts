/**
 * The residual connection, elementwise: `out = a + b` (GPT-2's `x + attn(ln(x))`).
 *
 * Gradient convention (llm.c): the backward ACCUMULATES `dout` into both inputs' gradients,
 * `da += dout` and `db += dout`: in GPT-2 the residual stream's gradient also receives the
 * branch's layernorm backward, which accumulates into the same buffer. `da` and `db` must be
 * different buffers.
 *
 * Tensors over one binding are processed in parts through {@linkcode bufferWindow}.
 *
 * @module
 */

import type { Gpu, Kernel } from "./device.ts";
import { runElementwise } from "./_parts.ts";
import type { Floats } from "./types.ts";

/** Compile-time constants of the residual kernels. */
export interface ResidualConstants extends Record<string, number> {
  /** Invocations per workgroup. */
  workgroupSize: number;
}

const WORKGROUP_SIZE = 256;

/** WGSL of the forward, one element per invocation. */
export const residualForwardKernel: Kernel<ResidualConstants> = {
  name: "residual_forward",
  bindings: ["write", "read", "read", "uniform"],
  wgsl: ({ workgroupSize: wg }) => /* wgsl */ `
struct Params { n: u32, outOffset: u32, aOffset: u32, bOffset: u32 }

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * groups.x) * ${wg}u + lid;
  if (i >= params.n) { return; }
  out[params.outOffset + i] = a[params.aOffset + i] + b[params.bOffset + i];
}
`,
};

/** WGSL of the backward: `da += dout; db += dout`. */
export const residualBackwardKernel: Kernel<ResidualConstants> = {
  name: "residual_backward",
  bindings: ["write", "write", "read", "uniform"],
  wgsl: ({ workgroupSize: wg }) => /* wgsl */ `
struct Params { n: u32, daOffset: u32, dbOffset: u32, doutOffset: u32 }

@group(0) @binding(0) var<storage, read_write> da: array<f32>;
@group(0) @binding(1) var<storage, read_write> db: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * groups.x) * ${wg}u + lid;
  if (i >= params.n) { return; }
  let g = dout[params.doutOffset + i];
  da[params.daOffset + i] += g;
  db[params.dbOffset + i] += g;
}
`,
};

/**
 * Records `out = a + b` over `n` elements (WRITTEN).
 *
 * @param out (n) e.g. (B, T, C) residual stream after a block branch.
 * @param a (n) residual stream before.
 * @param b (n) branch output.
 */
export async function residualForward(
  gpu: Gpu,
  out: GPUBuffer,
  a: GPUBuffer,
  b: GPUBuffer,
  n: number,
): Promise<void> {
  await runElementwise(gpu, residualForwardKernel, { out, a, b }, n, WORKGROUP_SIZE);
}

/**
 * Records `da += dout; db += dout` over `n` elements (ACCUMULATED).
 *
 * @param da (n) gradient of the residual stream, accumulated.
 * @param db (n) gradient of the branch output, accumulated; a different buffer from `da`.
 * @param dout (n) gradient of the sum.
 */
export async function residualBackward(
  gpu: Gpu,
  da: GPUBuffer,
  db: GPUBuffer,
  dout: GPUBuffer,
  n: number,
): Promise<void> {
  if (da === db) {
    throw new Error(
      "The residual backward needs two different buffers for da and db; to add 2·dout into " +
        "one buffer, call it with a scratch buffer for db.",
    );
  }
  await runElementwise(gpu, residualBackwardKernel, { da, db, dout }, n, WORKGROUP_SIZE);
}

/** CPU reference of {@linkcode residualForward}: WRITES `out = a + b`. */
export function residualForwardCpu(out: Floats, a: Floats, b: Floats): void {
  for (let i = 0; i < out.length; i++) out[i] = a[i] + b[i];
}

/** CPU reference of {@linkcode residualBackward}: ACCUMULATES `da += dout; db += dout`. */
export function residualBackwardCpu(da: Floats, db: Floats, dout: Floats): void {
  for (let i = 0; i < dout.length; i++) {
    da[i] += dout[i];
    db[i] += dout[i];
  }
}
