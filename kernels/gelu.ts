/**
 * GELU with GPT-2's tanh approximation, elementwise:
 * `gelu(x) = 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))`.
 *
 * Gradient convention: the backward WRITES `dinp = gelu'(inp) · dout` (an activation gradient,
 * and in GPT-2 the GELU input, the MLP's first matmul output, has no other consumer). Passing
 * the same buffer as `dinp` and `dout` computes it in place, saving the (B, T, 4C) buffer.
 *
 * Tensors over one binding are processed in parts through {@linkcode bufferWindow}.
 *
 * @module
 */

import type { Gpu, Kernel } from "./device.ts";
import { runElementwise } from "./_parts.ts";
import type { Floats } from "./types.ts";

/** √(2/π), the tanh approximation's scale. */
const GELU_SCALE = Math.sqrt(2 / Math.PI);
const GELU_CUBIC = 0.044715;

/** Compile-time constants of the GELU kernels. */
export interface GeluConstants extends Record<string, number> {
  /** Invocations per workgroup. */
  workgroupSize: number;
}

const WORKGROUP_SIZE = 256;

// 0.5 · (1 + tanh(u)) is computed as the logistic sigmoid of 2u: in float32 tanh(u) rounds to
// -1 for u below about -9, and 1 + tanh(u) would cancel to 0 where the gradient is still ~1e-6.
// Clamping 2u to ±80 keeps exp finite; the sigmoid is then below 1e-34 or 1 to float32.
/**
 * WGSL of GPT-2's tanh GELU, `gelu(x)`, and its derivative, `geluGrad(x)`; the matmul's GELU
 * epilogue uses it too. `(1 + tanh u) / 2` is computed as the logistic sigmoid of 2u, clamped so
 * that `exp` stays finite.
 */
export const GELU_WGSL = /* wgsl */ `
const SCALE = ${GELU_SCALE};
const CUBIC = ${GELU_CUBIC};
fn halfOnePlusTanh(x: f32) -> f32 {
  let u2 = clamp(2.0 * SCALE * (x + CUBIC * x * x * x), -80.0, 80.0);
  return 1.0 / (1.0 + exp(-u2));
}
fn gelu(x: f32) -> f32 { return x * halfOnePlusTanh(x); }
// d/dx [x · s(x)] with s = (1 + tanh u) / 2 and ds/du = (1 - tanh² u) / 2 = 2s(1 - s).
fn geluGrad(x: f32) -> f32 {
  let s = halfOnePlusTanh(x);
  return s + 2.0 * x * s * (1.0 - s) * SCALE * (1.0 + 3.0 * CUBIC * x * x);
}`;

const INDEX = "let i = (wid.x + wid.y * groups.x) * WG + lid;";

/** WGSL of the forward, one element per invocation. */
export const geluForwardKernel: Kernel<GeluConstants> = {
  name: "gelu_forward",
  bindings: ["write", "read", "uniform"],
  wgsl: ({ workgroupSize }) => /* wgsl */ `
struct Params { n: u32, outOffset: u32, inOffset: u32 }
const WG = ${workgroupSize}u;
${GELU_WGSL}

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(${workgroupSize})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  ${INDEX}
  if (i >= params.n) { return; }
  out[params.outOffset + i] = gelu(inp[params.inOffset + i]);
}
`,
};

/** WGSL of the backward into a separate `dinp`. */
export const geluBackwardKernel: Kernel<GeluConstants> = {
  name: "gelu_backward",
  bindings: ["write", "read", "read", "uniform"],
  wgsl: ({ workgroupSize }) => /* wgsl */ `
struct Params { n: u32, dinpOffset: u32, inOffset: u32, doutOffset: u32 }
const WG = ${workgroupSize}u;
${GELU_WGSL}

@group(0) @binding(0) var<storage, read_write> dinp: array<f32>;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(${workgroupSize})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  ${INDEX}
  if (i >= params.n) { return; }
  dinp[params.dinpOffset + i] = geluGrad(inp[params.inOffset + i]) * dout[params.doutOffset + i];
}
`,
};

/** WGSL of the backward in place: `grad` holds `dout` on entry and `dinp` on exit. */
export const geluBackwardInPlaceKernel: Kernel<GeluConstants> = {
  name: "gelu_backward_in_place",
  bindings: ["write", "read", "uniform"],
  wgsl: ({ workgroupSize }) => /* wgsl */ `
struct Params { n: u32, gradOffset: u32, inOffset: u32 }
const WG = ${workgroupSize}u;
${GELU_WGSL}

@group(0) @binding(0) var<storage, read_write> grad: array<f32>;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(${workgroupSize})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  ${INDEX}
  if (i >= params.n) { return; }
  let g = params.gradOffset + i;
  grad[g] = geluGrad(inp[params.inOffset + i]) * grad[g];
}
`,
};

/**
 * Records `out = gelu(inp)` over `n` elements.
 *
 * @param out (n) output; e.g. (B, T, 4C) in GPT-2's MLP.
 * @param inp (n) input.
 */
export async function geluForward(
  gpu: Gpu,
  out: GPUBuffer,
  inp: GPUBuffer,
  n: number,
): Promise<void> {
  await runElementwise(gpu, geluForwardKernel, { out, inp }, n, WORKGROUP_SIZE);
}

/**
 * Records `dinp = gelu'(inp) · dout` over `n` elements: WRITTEN, not accumulated. `dinp` may be
 * the same buffer as `dout` (in place).
 *
 * @param dinp (n) gradient of the input.
 * @param inp (n) the forward's input.
 * @param dout (n) gradient of the output.
 */
export async function geluBackward(
  gpu: Gpu,
  dinp: GPUBuffer,
  inp: GPUBuffer,
  dout: GPUBuffer,
  n: number,
): Promise<void> {
  if (dinp === dout) {
    await runElementwise(gpu, geluBackwardInPlaceKernel, { dinp, inp }, n, WORKGROUP_SIZE);
  } else {
    await runElementwise(gpu, geluBackwardKernel, { dinp, inp, dout }, n, WORKGROUP_SIZE);
  }
}

/** GPT-2's tanh GELU of one number, in float64: `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`. */
export function geluScalar(x: number): number {
  return 0.5 * x * (1 + Math.tanh(GELU_SCALE * (x + GELU_CUBIC * x * x * x)));
}

/** CPU reference of {@linkcode geluForward}. */
export function geluForwardCpu(out: Floats, inp: Floats): void {
  for (let i = 0; i < inp.length; i++) out[i] = geluScalar(inp[i]);
}

/** CPU reference of {@linkcode geluBackward}: WRITES `dinp = gelu'(inp) · dout`. */
export function geluBackwardCpu(dinp: Floats, inp: Floats, dout: Floats): void {
  for (let i = 0; i < inp.length; i++) {
    const x = inp[i];
    const t = Math.tanh(GELU_SCALE * (x + GELU_CUBIC * x * x * x));
    const local = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU_SCALE * (1 + 3 * GELU_CUBIC * x * x);
    dinp[i] = local * dout[i];
  }
}
