/**
 * GELU with GPT-2's tanh approximation, elementwise:
 * `gelu(x) = 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))`.
 *
 * Gradient convention: the backward WRITES `dinp = gelu'(inp) · dout` (an activation gradient,
 * and in GPT-2 the GELU input, the MLP's first matmul output, has no other consumer). Passing
 * the same buffer as `dinp` and `dout` computes it in place, saving the (B, T, 4C) buffer.
 *
 * Tensors over one binding are processed in parts through {@linkcode bufferWindow}; the launch
 * shape is the elementwise kernels' (`elementwiseShape` in `_parts.ts`): GELU, with more work per
 * float than an add, measured the same best shape on a CPU adapter (8 invocations of 64 vec4s:
 * 1024×3072 forward 3.7 -> 2.5-2.9 ms against 64 invocations of 4).
 *
 * @module
 */

import type { Gpu, GpuFloats, Kernel } from "./device.ts";
import { type ElementwiseConstants, elementwiseKernel, runElementwise } from "./_parts.ts";
import type { Floats } from "./types.ts";

/** √(2/π), the tanh approximation's scale. */
const GELU_SCALE = Math.sqrt(2 / Math.PI);
const GELU_CUBIC = 0.044715;

/**
 * WGSL of GPT-2's tanh GELU, `gelu(x)`, and its derivative, `geluGrad(x)`, for `x` of type `T`
 * (`f32` or `vec4f`).
 *
 * `(1 + tanh u) / 2` is the logistic sigmoid of 2u, `1 / (1 + exp(-2u))`: one exp2 and one
 * division, where a tanh costs two exps and a division, and `1 + tanh(u)` would cancel to 0 in
 * float32 for u below about -9, where the gradient is still ~1e-6. The exponent
 * `-2u·log2(e) = x·(A + A·CUBIC·x²)` folds every constant into one fma and a multiply; it is
 * clamped to ±120 so that exp2 stays finite (the sigmoid is then below 1e-36, or 1, in float32).
 */
export function geluWgsl(T: string): string {
  return /* wgsl */ `
const GELU_A = ${-2 * GELU_SCALE * Math.LOG2E};
const GELU_AC = ${-2 * GELU_SCALE * Math.LOG2E * GELU_CUBIC};
const GELU_B = ${2 * GELU_SCALE};
const GELU_BC3 = ${2 * GELU_SCALE * 3 * GELU_CUBIC};
// exp(-2u), u = √(2/π)·(x + CUBIC·x³).
fn geluExpMinus2u(x: ${T}) -> ${T} {
  return exp2(clamp(x * fma(x * x, ${T}(GELU_AC), ${T}(GELU_A)), ${T}(-120.0), ${T}(120.0)));
}
fn gelu(x: ${T}) -> ${T} { return x / (1.0 + geluExpMinus2u(x)); }
// d/dx [x · s(x)] with s = (1 + tanh u) / 2 and ds/du = (1 - tanh² u) / 2 = 2s(1 - s):
// s + x · 2s(1 - s) · u' = s · (1 + (1 - s) · x · 2√(2/π)(1 + 3·CUBIC·x²)).
fn geluGrad(x: ${T}) -> ${T} {
  let s = 1.0 / (1.0 + geluExpMinus2u(x));
  return s * (1.0 + (1.0 - s) * x * fma(x * x, ${T}(GELU_BC3), ${T}(GELU_B)));
}`;
}

/** {@linkcode geluWgsl} for `f32`; the matmul's GELU epilogue uses it. */
export const GELU_WGSL: string = geluWgsl("f32");

/** WGSL of the forward, `out = gelu(inp)`. */
export const geluForwardKernel: Kernel<ElementwiseConstants> = elementwiseKernel(
  "gelu_forward",
  [{ name: "out", access: "write" }, { name: "inp", access: "read" }],
  (at) => `${at("out")} = gelu(${at("inp")});`,
  geluWgsl,
);

/** WGSL of the backward into a separate `dinp`. */
export const geluBackwardKernel: Kernel<ElementwiseConstants> = elementwiseKernel(
  "gelu_backward",
  [{ name: "dinp", access: "write" }, { name: "inp", access: "read" }, {
    name: "dout",
    access: "read",
  }],
  (at) => `${at("dinp")} = geluGrad(${at("inp")}) * ${at("dout")};`,
  geluWgsl,
);

/** WGSL of the backward in place: `grad` holds `dout` on entry and `dinp` on exit. */
export const geluBackwardInPlaceKernel: Kernel<ElementwiseConstants> = elementwiseKernel(
  "gelu_backward_in_place",
  [{ name: "grad", access: "write" }, { name: "inp", access: "read" }],
  (at) => `${at("grad")} = geluGrad(${at("inp")}) * ${at("grad")};`,
  geluWgsl,
);

/**
 * Records `out = gelu(inp)` over `n` elements.
 *
 * @param out (n) output; e.g. (B, T, 4C) in GPT-2's MLP.
 * @param inp (n) input.
 */
export async function geluForward(
  gpu: Gpu,
  out: GpuFloats,
  inp: GpuFloats,
  n: number,
): Promise<void> {
  await runElementwise(gpu, geluForwardKernel, { out, inp }, n);
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
  dinp: GpuFloats,
  inp: GpuFloats,
  dout: GpuFloats,
  n: number,
): Promise<void> {
  if (dinp === dout) {
    await runElementwise(gpu, geluBackwardInPlaceKernel, { grad: dinp, inp }, n);
  } else {
    await runElementwise(gpu, geluBackwardKernel, { dinp, inp, dout }, n);
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
