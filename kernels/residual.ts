/**
 * The residual connection, elementwise: `out = a + b` (GPT-2's `x + attn(ln(x))`).
 *
 * Gradient convention (llm.c): the backward ACCUMULATES `dout` into both inputs' gradients,
 * `da += dout` and `db += dout`: in GPT-2 the residual stream's gradient also receives the
 * branch's layernorm backward, which accumulates into the same buffer. `da` and `db` must be
 * different buffers. The autograd tape's `add` (nn/ops.ts) needs no backward kernel: it passes
 * the output's gradient buffer on to both inputs (`Tape.passGrad`), as llm.c keeps one gradient
 * buffer for the residual stream; this kernel is for graphs built without the tape.
 *
 * Tensors over one binding are processed in parts through {@linkcode bufferWindow}.
 *
 * @module
 */

import type { Gpu, GpuFloats, Kernel } from "./device.ts";
import { type ElementwiseConstants, elementwiseKernel, runElementwise } from "./_parts.ts";
import type { Floats } from "./types.ts";

/** WGSL of the forward, `out = a + b`. */
export const residualForwardKernel: Kernel<ElementwiseConstants> = elementwiseKernel(
  "residual_forward",
  [{ name: "out", access: "write" }, { name: "a", access: "read" }, { name: "b", access: "read" }],
  (at) => `${at("out")} = ${at("a")} + ${at("b")};`,
);

/** WGSL of the backward: `da += dout; db += dout`. */
export const residualBackwardKernel: Kernel<ElementwiseConstants> = elementwiseKernel(
  "residual_backward",
  [{ name: "da", access: "write" }, { name: "db", access: "write" }, {
    name: "dout",
    access: "read",
  }],
  (at) => `let g = ${at("dout")}; ${at("da")} += g; ${at("db")} += g;`,
);

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
  await runElementwise(gpu, residualForwardKernel, { out, a, b }, n);
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
  da: GpuFloats,
  db: GpuFloats,
  dout: GPUBuffer,
  n: number,
): Promise<void> {
  if (da === db) {
    throw new Error(
      "The residual backward needs two different buffers for da and db; to add 2·dout into " +
        "one buffer, call it with a scratch buffer for db.",
    );
  }
  await runElementwise(gpu, residualBackwardKernel, { da, db, dout }, n);
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
